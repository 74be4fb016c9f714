"""Model checkpoints: safetensors weights with the full model (and run) configuration inside.

Run directory::

    RUN/config.yaml                      resolved training + model config
    RUN/checkpoints/step-000100.safetensors
    RUN/last.safetensors                 latest weights
    RUN/best.safetensors                 best validation GAP so far
    RUN/resume.pt                        optimizer and loop state (videopool.training.resume)
    RUN/metrics.jsonl, RUN/tb/           logs

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a crash never leaves a half-written checkpoint under the final name.
Weights are stored as fp32 whatever the training precision. The safetensors metadata
key ``"videopool"`` holds JSON: ``model_config``, ``train_config``, ``num_classes``,
``feature_names``, ``step``, ``examples_seen``, ``metrics``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from videopool.core.files import atomic_path

METADATA_KEY = "videopool"


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


def load_model(checkpoint_or_run_dir: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (or a run directory's best/last) and load its weights.

    Returns ``(model in eval mode, info)`` where ``info`` is the checkpoint's metadata
    (``model_config``, ``train_config``, ``num_classes``, ``step``...) plus ``path``.
    """
    from videopool.models.registry import model_from_config_dict

    path = find_checkpoint(checkpoint_or_run_dir)
    info = read_info(path)
    if "model_config" not in info:
        raise ValueError(f"checkpoint {path!r} stores no model_config; cannot rebuild the model")
    model = model_from_config_dict(info["model_config"])
    load_weights_into(model, path)
    info["path"] = path
    return model.to(device).eval(), info
