"""The resume file ``RUN/resume.pt``: optimizer state, loop counters and every rank's RNG states."""

from __future__ import annotations

import os
from typing import Any

import torch

from videopool.core.files import atomic_path


def save_resume(path: str, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cannot resume: {path!r} does not exist (was the run started with this --out?)")
    # Our own file: optimizer tensors plus python/numpy RNG tuples, hence weights_only=False.
    return torch.load(path, map_location="cpu", weights_only=False)
