"""No work is ever lost or stuck (docs/reliability.md, section 1), on the tiny data set of tests/tiny_run.py:
validation errors after the checkpoint, a full disk at every kind of write of a run, the best link's order, the
run directory's lock, checksummed checkpoints and the logs after a resume. Real kills: tests/training/test_kills.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess

import pytest
import torch

from tests.faults import full_disk, temporaries
from tests.tiny_run import MODEL_FLAGS, NUM_CLASSES, TRAIN_FLAGS, resume_tiny, train_glob, train_tiny, validate_glob
from videopool.cli.main import main
from videopool.core.files import DiskFullError
from videopool.models import checkpoint as ckpt
from videopool.training import build_config
from videopool.training import loop
from videopool.training.resume import newest_complete_state
from videopool.training.run_lock import RunLock, RunLockedError
from videopool.training.run_log import RunLogger, read_metrics


def _settings(tiny_data, **extra):
    # dropout: the weights depend on the RNG stream, which every resume must restore; checkpoints at steps 2, 4, 6
    # (TRAIN_SETTINGS), validation at the end of epoch 1 (step 4) and at the end of the run (step 6)
    return {"num_classes": NUM_CLASSES, "hidden.dropout": 0.3, "val_data": [validate_glob(tiny_data)],
            "max_steps": 6, "bn_recompute_batches": 2, **extra}


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The uninterrupted run of :func:`_settings`."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train_tiny(tiny_data, out, **_settings(tiny_data))
    return out


def _assert_same_run(run, reference) -> None:
    """``run`` ended where the uninterrupted ``reference`` did: same weights, each step logged once."""
    a = ckpt.read_weights(str(reference / "last.safetensors"))
    b = ckpt.read_weights(str(run / "last.safetensors"))
    assert ckpt.read_info(str(run / "last.safetensors"))["step"] == 6
    assert all(torch.equal(a[name], b[name]) for name in a)
    records = read_metrics(str(run))
    keys = [(r["kind"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))
    assert [r["gap"] for r in records if r["kind"] == "val"] == \
        [r["gap"] for r in read_metrics(str(reference)) if r["kind"] == "val"]
    assert temporaries(str(run), str(run / "checkpoints")) == []


# --- an error during validation never costs the epoch --------------------------------------------------------------


def test_an_out_of_memory_error_in_validation_keeps_the_epoch(tiny_data, tmp_path, monkeypatch, reference):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "evaluate", out_of_memory)
    run = tmp_path / "run"
    with pytest.raises(loop.ValidationFailedError) as raised:
        train_tiny(tiny_data, run, **_settings(tiny_data))
    message = str(raised.value)
    assert message.startswith("validation at step 4 failed: OutOfMemoryError: CUDA out of memory")
    assert f"videopool train --out {run} --resume" in message
    assert isinstance(raised.value.cause, torch.cuda.OutOfMemoryError)
    # the epoch is on disk, complete, and marked as not validated yet
    state, _, path = newest_complete_state(str(run))
    assert state["state"]["step"] == 4 and state["state"]["epoch"] == 1 and state["state"]["pending_validation"]
    assert path == str(run / "checkpoints" / "step-000004.safetensors")
    assert ckpt.read_info(str(run / "last.safetensors"))["step"] == 4
    assert not os.path.exists(run / ".lock")

    monkeypatch.undo()
    summary = resume_tiny(run)  # validates step 4 first, then trains steps 5-6
    assert summary["step"] == 6
    _assert_same_run(run, reference)


def test_a_corrupt_validation_shard_is_an_error_that_says_resume(tiny_data, tmp_path, monkeypatch, capsys, reference):
    val = tmp_path / "val"
    val.mkdir()
    for name in ("validate-0.tfrecord", "validate-1.tfrecord"):
        shutil.copy(tiny_data / name, val / name)
    good = (val / "validate-1.tfrecord").read_bytes()
    validate = loop.Trainer.validate

    def corrupt_then_validate(self):  # the shard goes bad during training (after the checks at the start)
        damaged = bytearray(good)
        damaged[len(damaged) // 2] ^= 0xFF
        (val / "validate-1.tfrecord").write_bytes(bytes(damaged))
        return validate(self)

    monkeypatch.setattr(loop.Trainer, "validate", corrupt_then_validate)
    run = tmp_path / "run"
    flags = [*MODEL_FLAGS, "--train-data", train_glob(tiny_data), "--val-data", str(val / "validate-*.tfrecord"),
             *TRAIN_FLAGS, "--num-classes", str(NUM_CLASSES), "--max-steps", "6", "--set", "hidden.dropout=0.3",
             "--set", "bn_recompute_batches=2"]
    assert main(["train", *flags, "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("videopool train: error: validation at step 4 failed: RecordError: ")
    assert "validate-1.tfrecord" in err and f"videopool train --out {run} --resume" in err and "\n" not in err
    assert ckpt.read_info(str(run / "last.safetensors"))["step"] == 4

    monkeypatch.undo()
    (val / "validate-1.tfrecord").write_bytes(good)  # the user fixes the shard
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert f"trained 6 steps (24 videos) -> {run}" in capsys.readouterr().out
    records = read_metrics(str(run))
    assert [r["step"] for r in records if r["kind"] == "val"] == [4, 6]
    assert ckpt.read_info(str(run / "last.safetensors"))["step"] == 6


# --- a full disk anywhere: one message, the previous checkpoint intact, --resume continues -------------------------


def _link_fails(monkeypatch, source_suffix: str, target_name: str) -> None:
    link = os.link

    def failing_link(source, target, *args, **kwargs):
        if os.fspath(source).endswith(source_suffix) and f".{target_name}." in os.path.basename(os.fspath(target)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", failing_link)


def _fsync_fails(monkeypatch, name: str) -> None:
    fsync = os.fsync

    def failing_fsync(fd):
        if f".{name}." in os.path.basename(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)


def _config_write_fails(monkeypatch) -> None:
    save_yaml = loop.save_yaml

    def failing_save_yaml(config, path, extra=None):
        save_yaml(config, path, extra)
        with open(path, "r+") as f:  # the disk filled up after the first bytes
            f.truncate(10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(loop, "save_yaml", failing_save_yaml)


def _log_line_fails(monkeypatch, step: int) -> None:
    log = RunLogger.log

    def failing_log(self, kind, at_step, values):
        if at_step == step and self.file is not None:
            file = self.file
            file.write('{"kind": "train", "st')  # the disk fills up in the middle of the line

            class Full:
                def write(self, data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            self.file = Full()
            try:
                return log(self, kind, at_step, values)
            finally:
                self.file = file
        return log(self, kind, at_step, values)

    monkeypatch.setattr(RunLogger, "log", failing_log)


RESUME = "; free some space and continue with `videopool train --out {run} --resume`"
STEP_2_INTACT = "previous checkpoint at step 2 is intact ({run}/checkpoints/step-000002.safetensors)" + RESUME
STEP_4_INTACT = "previous checkpoint at step 4 is intact ({run}/checkpoints/step-000004.safetensors)" + RESUME
NOTHING_YET = "no checkpoint had been written yet" + RESUME + " (it starts again from step 0)"
NO_CONFIG = "no checkpoint had been written yet; free some space and start the run again"
DISK_FULL_CASES = {
    # case: (fault, the file named, what the message says is intact)
    "step weights, mid-file": (lambda mp: full_disk(mp, "*/checkpoints/step-000004.safetensors", 1000),
                               "checkpoints/step-000004.safetensors", STEP_2_INTACT),
    "step resume state, mid-file": (lambda mp: full_disk(mp, "*/checkpoints/step-000004.resume.pt", 300),
                                    "checkpoints/step-000004.resume.pt", STEP_2_INTACT),
    "the very first resume state": (lambda mp: full_disk(mp, "*/checkpoints/step-000002.resume.pt", 0),
                                    "checkpoints/step-000002.resume.pt", NOTHING_YET),
    "resume state fsync": (lambda mp: _fsync_fails(mp, "step-000004.resume.pt"),
                           "checkpoints/step-000004.resume.pt", STEP_2_INTACT),
    "last link": (lambda mp: _link_fails(mp, "step-000004.safetensors", "last.safetensors"), "last.safetensors",
                  STEP_4_INTACT),
    "best link": (lambda mp: _link_fails(mp, "step-000004.safetensors", "best.safetensors"), "best.safetensors",
                  STEP_4_INTACT),
    "config.yaml": (_config_write_fails, "config.yaml", NO_CONFIG),
    # step 5: the first step of epoch 1, logged (log_every 10 logs an epoch's first step)
    "metrics.jsonl line": (lambda mp: _log_line_fails(mp, 5), "metrics.jsonl", STEP_4_INTACT),
}


@pytest.mark.parametrize("case", list(DISK_FULL_CASES))
def test_a_full_disk_is_one_message_and_resume_continues(case, tiny_data, tmp_path, monkeypatch, reference):
    if case == "resume state fsync" and not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    fault, named, intact = DISK_FULL_CASES[case]
    run = tmp_path / "run"
    fault(monkeypatch)
    with pytest.raises(DiskFullError) as raised:
        train_tiny(tiny_data, run, **_settings(tiny_data))
    assert str(raised.value) == f"disk full while writing {run / named}; {intact.format(run=run)}"
    assert temporaries(str(run), str(run / "checkpoints")) == []  # no truncated file anywhere
    assert not os.path.exists(run / ".lock")
    monkeypatch.undo()
    if named == "config.yaml":  # nothing was trained: a fresh start is allowed and --resume has no config to read
        assert not os.path.exists(run / "config.yaml")
        train_tiny(tiny_data, run, **_settings(tiny_data))
    else:
        with pytest.raises(ValueError, match="pass --resume"):  # the directory is a run ...
            build_config("gated_netvlad_256_small", None, {}, str(run))
        resume_tiny(run)  # ... that --resume continues
    _assert_same_run(run, reference)


def test_a_full_disk_in_training_is_one_line_and_exit_code_1(tiny_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    full_disk(monkeypatch, "*/checkpoints/step-000004.safetensors", 1000)
    code = main(["train", *MODEL_FLAGS, "--train-data", train_glob(tiny_data), "--out", str(run), *TRAIN_FLAGS,
                 "--num-classes", str(NUM_CLASSES), "--max-steps", "6"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err == (f"videopool train: error: disk full while writing {run}/checkpoints/step-000004.safetensors;"
                            f" previous checkpoint at step 2 is intact ({run}/checkpoints/step-000002.safetensors); "
                            f"free some space and continue with `videopool train --out {run} --resume`\n")


# --- best is linked before the state that records it ----------------------------------------------------------------


class _Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing in videopool catches it."""


def test_no_kill_leaves_best_older_than_the_recorded_best(tiny_data, tmp_path, monkeypatch):
    # validation at steps 2 and 4; a high learning rate so that step 4 validates better and best moves to it
    settings = {"num_classes": NUM_CLASSES, "val_data": [validate_glob(tiny_data)], "max_steps": 4, "eval_every": 2,
                "learning_rate": 3e-3, "bn_recompute_batches": 0}
    train_tiny(tiny_data, tmp_path / "full", **settings)
    gaps = {r["step"]: r["gap"] for r in read_metrics(str(tmp_path / "full")) if r["kind"] == "val"}
    assert gaps[4] > gaps[2]

    replace = os.replace
    kills = 0
    for kill_at in range(1, 40):  # a kill before each rename of the run, in turn
        count = [0]

        def killing_replace(source, target, *args, **kwargs):
            count[0] += 1
            if count[0] == kill_at:
                raise _Killed
            return replace(source, target, *args, **kwargs)

        run = tmp_path / f"run-{kill_at}"
        monkeypatch.setattr(os, "replace", killing_replace)
        try:
            train_tiny(tiny_data, run, **settings)
        except _Killed:
            kills += 1
        else:
            break  # past the last rename
        finally:
            monkeypatch.setattr(os, "replace", replace)
        found = newest_complete_state(str(run))
        if found is None or found[0]["state"]["best_step"] < 0:
            continue
        recorded = found[0]["state"]
        best = ckpt.read_info(str(run / "best.safetensors"))["step"]
        assert best >= recorded["best_step"] and gaps[best] >= recorded["best_gap"], kill_at
    assert kills >= 10 and kill_at > kills  # every rename of a whole run was a kill point, then it ran through


def test_resume_repairs_a_best_link_older_than_the_recorded_best(tiny_data, tmp_path):
    # a run directory written before best was linked first: best -> step 2, the state records step 4 as best
    settings = {"num_classes": NUM_CLASSES, "val_data": [validate_glob(tiny_data)], "max_steps": 4, "eval_every": 2,
                "learning_rate": 3e-3, "bn_recompute_batches": 0}
    run = tmp_path / "run"
    train_tiny(tiny_data, run, **settings)
    assert ckpt.read_info(str(run / "best.safetensors"))["step"] == 4
    os.unlink(run / "best.safetensors")
    os.link(run / "checkpoints" / "step-000002.safetensors", run / "best.safetensors")
    resume_tiny(run)
    assert ckpt.read_info(str(run / "best.safetensors"))["step"] == 4


# --- checksums ------------------------------------------------------------------------------------------------------


def _flip_a_weight_byte(path) -> None:
    data = bytearray(open(path, "rb").read())
    data[-5] ^= 0x01
    with open(path, "r+b") as f:  # in place: last.safetensors and the step file are the same inode
        f.write(data)


def test_a_corrupt_checkpoint_names_the_file_and_the_previous_step(tiny_data, tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)  # copies: last.safetensors is no longer the step file's inode here
    for path in (run / "checkpoints" / "step-000006.safetensors", run / "last.safetensors"):
        _flip_a_weight_byte(path)
        with pytest.raises(ckpt.CheckpointCorruptError) as raised:
            ckpt.load_model(str(path))
        assert str(raised.value).startswith(f"checkpoint {str(path)!r} is corrupt: its tensors do not match the "
                                            "checksum stored in it")
        assert str(raised.value).endswith(f"use the previous step checkpoint {run}/checkpoints/step-000004.safetensors"
                                          " (step 4)")
    ckpt.read_info(str(run / "last.safetensors"))  # the metadata still reads


def test_resume_skips_a_corrupt_newest_step(tiny_data, tmp_path, reference):
    # killed after step 5 (nothing saved after step 4), and step 4's weights went bad on disk: resume from step 2
    settings = _settings(tiny_data)
    run = tmp_path / "run"
    train_tiny(tiny_data, run, **{**settings, "max_steps": 5})
    for step in (5,):
        for suffix in ("safetensors", "resume.pt"):
            path = run / "checkpoints" / f"step-{step:06d}.{suffix}"
            if path.exists():
                path.unlink()
    _flip_a_weight_byte(run / "checkpoints" / "step-000004.safetensors")
    with pytest.warns(UserWarning, match=r"skipping .*step-000004\.resume\.pt .*is corrupt"):
        resume_tiny(run, max_steps=6)
    _assert_same_run(run, reference)


# --- one process per run directory ----------------------------------------------------------------------------------


def _hold_lock_in_child(run) -> tuple[int, int]:
    """A child process that takes the lock of ``run`` and sleeps: ``(pid, fd to read 'ok' from)``."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            RunLock(str(run)).acquire()
            os.write(ready_write, b"ok")
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_write)
    assert os.read(ready_read, 2) == b"ok"
    os.close(ready_read)
    return pid, 0


def test_a_second_process_refuses_and_a_dead_holder_is_taken_over(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    pid, _ = _hold_lock_in_child(run)
    try:
        with pytest.raises(RunLockedError) as raised:
            train_tiny(tiny_data, run, num_classes=NUM_CLASSES, max_steps=2)
        assert str(raised.value) == (f"{str(run)!r} is in use: process {pid} on host {socket.gethostname()} is "
                                     f"training into it (lock file {run}/.lock); wait for it to finish or choose "
                                     "another --out")
        capsys.readouterr()
        assert main(["train", *MODEL_FLAGS, "--train-data", train_glob(tiny_data), "--out", str(run), *TRAIN_FLAGS,
                     "--num-classes", str(NUM_CLASSES), "--max-steps", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"videopool train: error: {str(run)!r} is in use: process {pid}") and err.count("\n") == 1
        assert not os.path.exists(run / "last.safetensors")  # nothing was written into the other process's run
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert open(run / ".lock").read().split() == [str(pid), socket.gethostname()]  # left by the killed holder
    with pytest.warns(UserWarning, match=f"taking over the lock of process {pid} on host"):
        train_tiny(tiny_data, run, num_classes=NUM_CLASSES, max_steps=2)
    assert not os.path.exists(run / ".lock")


def test_without_flock_the_lock_file_and_its_pid_decide(tmp_path, monkeypatch):
    monkeypatch.setattr(RunLock, "_flock", lambda self, fd: None)  # a file system without flock
    lock = RunLock(str(tmp_path)).acquire()
    assert open(tmp_path / ".lock").read() == f"{os.getpid()} {socket.gethostname()}\n"
    lock.release()
    assert not os.path.exists(tmp_path / ".lock")
    holder = subprocess.Popen(["sleep", "60"])
    try:
        with open(tmp_path / ".lock", "w") as f:
            f.write(f"{holder.pid} {socket.gethostname()}\n")
        with pytest.raises(RunLockedError, match=f"process {holder.pid} on host"):
            RunLock(str(tmp_path)).acquire()  # the holder is alive
    finally:
        holder.kill()
        holder.wait()
    with pytest.warns(UserWarning, match=f"taking over the lock of process {holder.pid}"):
        RunLock(str(tmp_path)).acquire().release()  # now it is dead
    with open(tmp_path / ".lock", "w") as f:
        f.write(f"{2**22 + 12345} {socket.gethostname()}\n")  # a pid above Linux's maximum: dead
    with pytest.warns(UserWarning, match="taking over the lock of process"):
        RunLock(str(tmp_path)).acquire().release()
    with open(tmp_path / ".lock", "w") as f:
        f.write("1 another-host\n")  # cannot be checked from here: refused
    with pytest.raises(RunLockedError, match="process 1 on host another-host"):
        RunLock(str(tmp_path)).acquire()


def test_leftover_temporaries_of_a_killed_run_are_removed_at_the_next_start(tiny_data, tmp_path):
    run = tmp_path / "run"
    train_tiny(tiny_data, run, num_classes=NUM_CLASSES, max_steps=2)
    leftovers = [run / "checkpoints" / f".step-000004.safetensors.{os.getpid()}.abcd1234.tmp",
                 run / f".resume.pt.{2**22 + 1}.zz99zz99.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    resume_tiny(run, max_steps=4)
    assert not any(path.exists() for path in leftovers)
    assert temporaries(str(run), str(run / "checkpoints")) == []


# --- the logs after a resume ----------------------------------------------------------------------------------------


def test_the_logs_are_cut_back_to_the_state_a_run_resumes_from(tmp_path):
    records = [{"kind": "train", "step": s, "time": 1.0 + s, "loss": 1.0 / s} for s in range(1, 7)]
    records.insert(4, {"kind": "val", "step": 4, "time": 4.5, "gap": 0.5})
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write('{"kind": "train", "st')  # killed mid-line
    logger = RunLogger(str(tmp_path), start_step=4, validated=False)  # resumes at 4, whose validation is redone
    logger.log("val", 4, {"gap": 0.5})
    logger.log("train", 5, {"loss": 0.2})
    logger.close()
    assert [(r["kind"], r["step"]) for r in read_metrics(str(tmp_path))] == [
        ("train", 1), ("train", 2), ("train", 3), ("train", 4), ("val", 4), ("train", 5)]
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train/loss")] == [1, 2, 3, 4, 5]
    assert [e.step for e in accumulator.Scalars("val/gap")] == [4]
    assert accumulator.Scalars("train/loss")[0].wall_time == pytest.approx(2.0)  # replayed with its own time
