"""Resume after real kills (SIGKILL in a forked child, docs/reliability.md section 1) reproduces the uninterrupted
run: the same batches at every step, the same weights at every step, the same validation results, each step
logged once in metrics.jsonl and TensorBoard, no temporary file left, the stale lock taken over each time.

The kills land at random (seeded) points of every kind: after a training step, in the middle of writing a step's
weights or its resume state (the very first resume state included), just before an atomic rename, before a link
of last/best/resume.pt, in the middle of a metrics.jsonl line, and during validation."""

from __future__ import annotations

import os
import random

import pytest
import torch

from tests.faults import kill_self, run_in_child, temporaries
from tests.tiny_run import NUM_CLASSES, resume_tiny, train_tiny, validate_glob
from videopool.core import files
from videopool.models import checkpoint as ckpt
from videopool.training import loop
from videopool.training.run_log import RunLogger, read_metrics

MAX_STEPS = 16  # 4 epochs of 4 steps (16 videos, batch 4)
KINDS = ("step", "weights", "resume", "rename", "link", "log", "validation")


def _settings(tiny_data):
    # dropout: the weights depend on torch's RNG stream, which a resume must restore exactly; a checkpoint at every
    # step and validation at every epoch end (where the RNG stream crosses into the next epoch's iterator)
    return {"num_classes": NUM_CLASSES, "hidden.dropout": 0.3, "val_data": [validate_glob(tiny_data)],
            "max_steps": MAX_STEPS, "checkpoint_every": 1, "keep_checkpoints": 0, "eval_every": 0, "log_every": 1,
            "bn_recompute_batches": 2}


def _record_steps(record_path: str) -> None:
    """Append ``step id,id,...`` for every training step taken (in this process)."""
    original = loop.Trainer.train_step

    def train_step(self, batch):
        loss = original(self, batch)
        fd = os.open(record_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{self.state.step} {','.join(batch.ids)}\n".encode())
        os.close(fd)
        return loss

    loop.Trainer.train_step = train_step


def _arm(kind: str, nth: int) -> None:
    """In the child: SIGKILL at the ``nth`` event of ``kind``."""
    count = [0]

    def hit(event: str) -> bool:
        if event == kind:
            count[0] += 1
            return count[0] == nth
        return False

    step = loop.Trainer.train_step

    def train_step(self, batch):
        loss = step(self, batch)
        if hit("step"):
            kill_self()
        return loss

    loop.Trainer.train_step = train_step

    class KilledMidWrite:
        def __init__(self, handle):
            self.handle, self.writes = handle, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 2:  # the header (or first chunk) is out: half of the next chunk, then the kill
                self.handle.write(data[: max(1, len(data) // 2)])
                self.handle.flush()
                kill_self()
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    open_temporary = files._open_temporary

    def open_killable(tmp, mode, final_path, **open_args):
        handle = open_temporary(tmp, mode, final_path, **open_args)
        in_checkpoints = os.path.basename(os.path.dirname(final_path)) == "checkpoints"
        if in_checkpoints and final_path.endswith(".safetensors") and hit("weights"):
            return KilledMidWrite(handle)
        if in_checkpoints and final_path.endswith(".resume.pt") and hit("resume"):
            return KilledMidWrite(handle)
        return handle

    files._open_temporary = open_killable

    replace = os.replace

    def killable_replace(src, dst, *args, **kwargs):
        if files._TEMPORARY.match(os.path.basename(os.fspath(src))) and hit("rename"):
            kill_self()
        return replace(src, dst, *args, **kwargs)

    os.replace = killable_replace

    link = os.link

    def killable_link(src, dst, *args, **kwargs):
        if hit("link"):
            kill_self()
        return link(src, dst, *args, **kwargs)

    os.link = killable_link

    log = RunLogger.log

    def killable_log(self, kind_, step_, values):
        if self.file is not None and hit("log"):
            self.file.write('{"kind": "' + kind_ + '", "step": ')  # half a line
            self.file.flush()
            kill_self()
        return log(self, kind_, step_, values)

    RunLogger.log = killable_log

    evaluate = loop.evaluate

    def killable_evaluate(model, loader, **kwargs):
        def batches():
            for index, batch in enumerate(loader):
                if index == 1 and hit("validation"):
                    kill_self()
                yield batch

        return evaluate(model, batches(), **kwargs)

    loop.evaluate = killable_evaluate


def _steps(record_path: str) -> dict[int, list[list[str]]]:
    found: dict[int, list[list[str]]] = {}
    with open(record_path) as f:
        for line in f:
            step, ids = line.split()
            found.setdefault(int(step), []).append(ids.split(","))
    return found


def _schedule(count: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    kinds = ["resume"]  # first: a kill in the middle of the very first resume state
    while len(kinds) < count:
        kinds += rng.sample(KINDS, len(KINDS))
    return [(kind, 1 if i == 0 or kind == "validation" else rng.randint(1, 3)) for i, kind in enumerate(kinds[:count])]


def test_twelve_random_kills_give_the_uninterrupted_run(tiny_data, tmp_path):
    settings = _settings(tiny_data)
    reference, run = tmp_path / "reference", tmp_path / "run"
    errors = str(tmp_path / "errors.txt")
    # every module the run imports lazily (TensorBoard, ...) is imported here once, not again in every child
    train_tiny(tiny_data, tmp_path / "warm-up", **{**settings, "max_steps": 1})

    def uninterrupted():
        _record_steps(str(tmp_path / "reference.txt"))
        train_tiny(tiny_data, reference, **settings)

    assert run_in_child(uninterrupted, errors) == "ok", open(errors).read()

    schedule = _schedule(12, seed=2024)
    kills = []
    for index, (kind, nth) in enumerate(schedule):
        def killed(kind=kind, nth=nth, first=index == 0):
            _record_steps(str(tmp_path / "run.txt"))
            _arm(kind, nth)
            if first:
                train_tiny(tiny_data, run, **settings)
            else:
                resume_tiny(run)

        outcome = run_in_child(killed, errors)
        assert outcome != "error", open(errors).read()
        assert outcome == "killed", f"the run finished before kill {index + 1} ({kind} #{nth}): {kills}"
        kills.append((kind, nth))
        if index == 0:  # killed inside the first checkpoint: no complete state, yet the directory resumes
            assert not os.path.exists(run / "resume.pt") and not os.path.exists(run / "last.safetensors")
    assert len(kills) >= 10 and {kind for kind, _ in kills} == set(KINDS)

    def finish():
        _record_steps(str(tmp_path / "run.txt"))
        resume_tiny(run)

    assert run_in_child(finish, errors) == "ok", open(errors).read()

    # the same batches at every step, in every attempt of it
    expected, attempts = _steps(str(tmp_path / "reference.txt")), _steps(str(tmp_path / "run.txt"))
    assert sorted(expected) == sorted(attempts) == list(range(1, MAX_STEPS + 1))
    retrained = 0
    for step, ids in expected.items():
        assert all(attempt == ids[0] for attempt in attempts[step]), step
        retrained += len(attempts[step]) - 1
    assert retrained > 0  # the kills did cost steps that the resumes trained again

    # the same weights at every step
    for step in range(1, MAX_STEPS + 1):
        a = ckpt.read_weights(str(reference / "checkpoints" / f"step-{step:06d}.safetensors"))
        b = ckpt.read_weights(str(run / "checkpoints" / f"step-{step:06d}.safetensors"))
        assert all(torch.equal(a[name], b[name]) for name in a), step
    for name in ("last", "best"):
        assert ckpt.read_info(str(run / f"{name}.safetensors"))["step"] == \
            ckpt.read_info(str(reference / f"{name}.safetensors"))["step"]

    # each step logged once; the same validation results
    records = read_metrics(str(run))
    keys = [(r["kind"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))
    val = {r["step"]: r for r in records if r["kind"] == "val"}
    val_expected = {r["step"]: r for r in read_metrics(str(reference)) if r["kind"] == "val"}
    assert sorted(val) == sorted(val_expected) == [4, 8, 12, 16]
    for step, r in val.items():
        assert r["gap"] == val_expected[step]["gap"] and r["loss"] == val_expected[step]["loss"]
    assert {r["step"] for r in records if r["kind"] == "train"} == set(range(1, MAX_STEPS + 1))
    _assert_tensorboard_matches(str(run), records)

    assert temporaries(str(run), str(run / "checkpoints")) == []
    assert not os.path.exists(run / ".lock")


def _assert_tensorboard_matches(run_dir: str, records: list[dict]) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(os.path.join(run_dir, "tb"), size_guidance={"scalars": 0})
    accumulator.Reload()
    for kind, key in (("train", "loss"), ("val", "gap")):
        steps = [event.step for event in accumulator.Scalars(f"{kind}/{key}")]
        assert steps == [r["step"] for r in records if r["kind"] == kind], kind
