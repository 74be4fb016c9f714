"""Resume states: optimizer state, loop counters and every rank's RNG states, one file per checkpointed step.

``RUN/checkpoints/step-N.resume.pt`` is written after ``step-N.safetensors`` and is the commit point of step N: a
step is *complete* once both files are in place (each written atomically). ``RUN/resume.pt`` is a hard link to the
newest complete one. ``--resume`` takes the newest complete step whose files all read back (weights checked
against their checksum); a step whose files are missing or damaged is skipped with a warning, and a run with no
complete step starts again from step 0 (a kill during the very first checkpoint costs that checkpoint, never the
run directory).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import torch

from videopool.core.files import atomic_write, deferred_write_errors
from videopool.models import checkpoint as ckpt

RESUME_FILE = re.compile(r"^step-(\d+)\.resume\.pt$")


def step_weights_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "checkpoints", f"step-{step:06d}.safetensors")


def step_resume_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "checkpoints", f"step-{step:06d}.resume.pt")


def save_resume(path: str, state: dict[str, Any]) -> None:
    with atomic_write(path, "wb") as handle, deferred_write_errors(handle) as writable:
        torch.save(state, writable)


def load_resume(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cannot resume: {path!r} does not exist (was the run started with this --out?)")
    # Our own file: optimizer tensors plus python/numpy RNG tuples, hence weights_only=False.
    return torch.load(path, map_location="cpu", weights_only=False)


def has_checkpoint(run_dir: str) -> bool:
    """Whether ``run_dir`` holds (part of) a training run's checkpoints."""
    return (os.path.exists(os.path.join(run_dir, "last.safetensors"))
            or bool(ckpt.step_checkpoints(os.path.join(run_dir, "checkpoints"))))


def newest_step_on_disk(run_dir: str) -> int:
    """The newest step whose weights and resume state are both in ``run_dir/checkpoints`` (-1: none)."""
    folder = os.path.join(run_dir, "checkpoints")
    try:
        names = set(os.listdir(folder))
    except OSError:
        return -1
    steps = [int(m[1]) for name in names if (m := RESUME_FILE.match(name))
             and os.path.basename(step_weights_path(run_dir, int(m[1]))) in names]
    return max(steps, default=-1)


def _candidates(run_dir: str) -> list[tuple[int, str, str]]:
    """``(step, resume file, weights file)`` newest first: the per-step states, else a 0.2-layout ``resume.pt``."""
    folder = os.path.join(run_dir, "checkpoints")
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    steps = sorted((int(m[1]) for name in names if (m := RESUME_FILE.match(name))), reverse=True)
    found = [(step, step_resume_path(run_dir, step), step_weights_path(run_dir, step)) for step in steps]
    legacy = os.path.join(run_dir, "resume.pt")
    if not found and os.path.isfile(legacy):
        found.append((-1, legacy, ""))  # step read from the file
    return found


def newest_complete_state(run_dir: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], str] | None:
    """``(resume state, verified weights, weights path)`` of the newest complete step of ``run_dir``; None when no
    step is complete. Incomplete or damaged steps are skipped with a warning naming them."""
    for step, resume_path, weights_path in _candidates(run_dir):
        try:
            state = load_resume(resume_path)
            saved_step = int(state["state"]["step"])
            if step >= 0 and saved_step != step:
                raise ValueError(f"it holds the state of step {saved_step}")
            if not weights_path:  # 0.2 layout: last.safetensors, or the step file when the kill came between them
                last = os.path.join(run_dir, "last.safetensors")
                weights_path = (last if os.path.isfile(last) and ckpt.read_info(last).get("step") == saved_step
                                else step_weights_path(run_dir, saved_step))
            info = ckpt.read_info(weights_path)
            if info.get("step") != saved_step:
                raise ValueError(f"{weights_path} holds step {info.get('step')}, not {saved_step}")
            weights = ckpt.read_weights(weights_path)
        except Exception as err:  # a damaged file fails in many ways (unpickling, safetensors, checksum)
            warnings.warn(f"resume: skipping {resume_path} ({err}); trying an older checkpoint", stacklevel=2)
            continue
        return state, weights, weights_path
    return None


# --- the data position, across a change of world size ------------------------------------------------------------

def data_pass(world_size: int, workers: int, resumed_split: bool) -> dict[str, Any]:
    """What decides how an epoch's videos are dealt to readers: a saved position can be continued batch by batch
    only by a pass with the same value (``resumed_split``: the pass itself was a re-dealt rest of an epoch)."""
    return {"world_size": int(world_size), "workers": int(workers), "resumed_split": bool(resumed_split)}


def position_payload(state_batches_done: int, pass_info: dict[str, Any], ids_per_rank: list[list[str]],
                     ids_before: frozenset[str] | None) -> dict[str, Any]:
    """The resume-state entries that locate the data: the pass, and mid-epoch every video id trained on in this
    epoch by all ranks (a few bytes per video; nothing at an epoch boundary)."""
    payload: dict[str, Any] = {"data_pass": pass_info}
    if state_batches_done > 0:
        ids = set(ids_before or ())
        for rank_ids in ids_per_rank:
            ids.update(rank_ids)
        payload["epoch_ids"] = sorted(ids)
    return payload


def resume_exclusion(resume_state: dict[str, Any] | None, current_pass: dict[str, Any]) -> frozenset[str] | None:
    """The ids to leave out of the resumed epoch, or None when it continues by skipping the saved batch count.

    Skipping batches reproduces the uninterrupted run exactly but only under the same split; otherwise (another
    world size or worker count, or a pass that was itself re-dealt) the rest of the epoch is every video not in
    the saved ``epoch_ids``. A state without them (written before they existed) resumes by the batch count."""
    if resume_state is None or int(resume_state["state"].get("batches_done_in_epoch", 0)) == 0:
        return None
    saved = resume_state.get("data_pass")
    if saved is None or "epoch_ids" not in resume_state or saved == current_pass:
        return None
    return frozenset(resume_state["epoch_ids"])
