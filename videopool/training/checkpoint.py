"""Checkpoints: safetensors weights with the full run config inside, plus a resume file.

Run directory::

    RUN/config.yaml                      resolved training + model config
    RUN/checkpoints/step-000100.safetensors
    RUN/last.safetensors                 latest weights
    RUN/best.safetensors                 best validation GAP so far
    RUN/resume.pt                        optimizer, step, examples seen, RNG states, data position
    RUN/metrics.jsonl, RUN/tb/           logs

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a crash never leaves a half-written checkpoint under the final name.
Weights are stored as fp32 whatever the training precision. The safetensors metadata
key ``"videopool"`` holds JSON: ``model_config``, ``train_config``, ``num_classes``,
``feature_names``, ``step``, ``examples_seen``, ``metrics``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

METADATA_KEY = "videopool"


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success move it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(path: str, state_dict: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Write ``state_dict`` (floating tensors as fp32) and ``info`` (JSON) atomically."""
    tensors = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        tensors[name] = tensor.contiguous().clone() if tensor.data_ptr() in _seen_ptrs(tensors) else tensor.contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(info, default=_json_default)})


def _seen_ptrs(tensors: dict[str, torch.Tensor]) -> set[int]:
    # safetensors refuses tensors sharing storage; clone the second occurrence.
    return {t.data_ptr() for t in tensors.values()}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")


def read_info(path: str) -> dict[str, Any]:
    """The JSON metadata of a videopool checkpoint."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path!r} is not a readable safetensors file: {err}") from None
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path!r} has no videopool metadata; it was not written by videopool")
    return json.loads(metadata[METADATA_KEY])


def read_weights(path: str) -> dict[str, torch.Tensor]:
    with safe_open(path, framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def check_model_config(path: str, expected: dict[str, Any], found: dict[str, Any]) -> None:
    """Raise a ValueError listing the differing keys when two model configs disagree."""
    if expected == found:
        return
    keys = sorted(set(expected) | set(found))
    diffs = [f"{k}: checkpoint={found.get(k, '<missing>')!r} model={expected.get(k, '<missing>')!r}"
             for k in keys if expected.get(k, "<missing>") != found.get(k, "<missing>")]
    raise ValueError(f"checkpoint {path!r} was saved from a different model configuration:\n  "
                     + "\n  ".join(diffs))


def load_weights_into(model: torch.nn.Module, path: str) -> dict[str, Any]:
    """Load ``path`` into ``model`` after checking that its config matches; returns the info."""
    info = read_info(path)
    config = getattr(model, "config", None)
    if config is not None and "model_config" in info:
        check_model_config(path, _config_dict(config), info["model_config"])
    state = read_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path!r} does not fit this model: {err}") from None
    return info


def _config_dict(config: Any) -> dict[str, Any]:
    # JSON round trip so tuples compare equal to the lists stored in the checkpoint.
    return json.loads(json.dumps(config.to_dict(), default=_json_default))


# --- resume state -------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(path: str, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cannot resume: {path!r} does not exist (was the run started with this --out?)")
    # Our own file: optimizer tensors plus python/numpy RNG tuples.
    return torch.load(path, map_location="cpu", weights_only=False)


def find_checkpoint(path: str) -> str:
    """A checkpoint file from a run directory (best, then last) or the file itself."""
    if os.path.isdir(path):
        for name in ("best.safetensors", "last.safetensors"):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(f"run directory {path!r} holds no best.safetensors or last.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    return path
