"""Model checkpoints: safetensors weights with the full model (and run) configuration inside.

Run directory (the layout and the order of writes are described in docs/training.md)::

    RUN/config.yaml                              resolved training + model config
    RUN/checkpoints/step-000100.safetensors      weights of step 100
    RUN/checkpoints/step-000100.resume.pt        optimizer and loop state of step 100 (videopool.training.resume)
    RUN/last.safetensors                         latest complete step (hard link)
    RUN/best.safetensors                         best validation GAP so far (hard link)
    RUN/resume.pt                                latest complete resume state (hard link)
    RUN/metrics.jsonl, RUN/tb/                   logs
    RUN/.lock                                    pid and host of the process training into RUN

Every file is written to a temporary name in the same folder, fsynced and moved into place with
``os.replace``, so a crash never leaves a half-written checkpoint under the final name.
Training stores its weights as fp32 whatever its precision (``videopool export --storage bf16|fp16|int8`` writes
compact copies, :mod:`videopool.models.storage`, which :func:`read_weights` returns as fp32). The safetensors metadata
key ``"videopool"`` holds JSON: ``model_config``, ``train_config``, ``num_classes``,
``feature_names``, ``step``, ``examples_seen``, ``epoch``, ``metrics``; the key ``"videopool_sha256"`` holds the
SHA-256 of the tensor data (every byte after the header), checked by :func:`read_weights`: a checkpoint whose
bytes changed after it was written is a :class:`CheckpointCorruptError` naming the file and the previous step
checkpoint of its run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from typing import Any, BinaryIO

import numpy as np
import torch
from safetensors import safe_open

from videopool.core.files import atomic_write

METADATA_KEY = "videopool"
CHECKSUM_KEY = "videopool_sha256"
STEP_FILE = re.compile(r"^step-(\d+)\.safetensors$")

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}
_PLACEHOLDER = "0" * 64  # the checksum's place in the header, filled in once the data is written
_CHUNK = 16 * 2**20


class CheckpointCorruptError(ValueError):
    """A checkpoint's tensor data does not match the checksum stored in it."""


def save_weights(path: str, state_dict: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Write ``state_dict`` (floating tensors as fp32) and ``info`` (JSON) atomically, with the checksum of the
    tensor data in the metadata."""
    tensors = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        tensors[name] = tensor.contiguous()
    metadata = {METADATA_KEY: json.dumps(info, default=_json_default)}
    with atomic_write(path, "wb") as handle:
        write_safetensors(handle, tensors, metadata)


def write_safetensors(handle: BinaryIO, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Stream ``tensors`` to ``handle`` in the safetensors format (no copy of the whole file in memory) and return
    the SHA-256 of the data section, which is also stored in the metadata under :data:`CHECKSUM_KEY`.

    Tensors are laid out by decreasing element size, then name, after a header padded to 8 bytes, so each one is
    aligned to its element size (as the safetensors library does)."""
    order, header, checksum_at = _safetensors_layout(tensors, metadata)
    start = handle.tell()
    handle.write(struct.pack("<Q", len(header)) + header)
    digest = hashlib.sha256()
    for name in order:
        data = _tensor_bytes(tensors[name])
        digest.update(data)
        handle.write(data)
    checksum = digest.hexdigest()
    end = handle.tell()
    handle.seek(start + checksum_at)
    handle.write(checksum.encode())
    handle.seek(end)
    return checksum


def safetensors_size(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    """The exact size in bytes of the file :func:`write_safetensors` writes; only shapes and dtypes are read, so
    tensors on the ``meta`` device give the size of a model that was never materialised."""
    _, header, _ = _safetensors_layout(tensors, metadata)
    return 8 + len(header) + sum(t.numel() * t.element_size() for t in tensors.values())


def _safetensors_layout(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[list[str], bytes, int]:
    """``(tensor order, header bytes, offset of the checksum placeholder in the file)``."""
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    entries, offset = {}, 0
    for name in order:
        tensor = tensors[name]
        if tensor.dtype not in _DTYPES:
            raise TypeError(f"cannot store tensor {name!r} of dtype {tensor.dtype} in a checkpoint")
        size = tensor.numel() * tensor.element_size()
        entries[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    # The checksum comes first in the header so that its position is known before the rest is serialised.
    prefix = '{"__metadata__":{' + json.dumps(CHECKSUM_KEY) + ":"
    others = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    header = (prefix + json.dumps(_PLACEHOLDER) + "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in others.items())
              + "}" + "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in entries.items()) + "}").encode()
    header += b" " * (-(8 + len(header)) % 8)
    return order, header, 8 + len(prefix.encode()) + 1  # + 1: the opening quote of the placeholder


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def data_checksum(path: str) -> str:
    """SHA-256 of a safetensors file's data section (every byte after the header)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + header_size)
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: str) -> None:
    """Raise :class:`CheckpointCorruptError` when the checksum stored in ``path`` does not match its data.
    Checkpoints written before checksums existed (no :data:`CHECKSUM_KEY`) pass."""
    stored = _read_metadata(path).get(CHECKSUM_KEY)
    if stored is None:
        return
    found = data_checksum(path)
    if found != stored:
        raise CheckpointCorruptError(
            f"checkpoint {path!r} is corrupt: its tensors do not match the checksum stored in it "
            f"(sha256 {found[:12]}... instead of {stored[:12]}...); "
            + (previous_checkpoint_hint(path) or "it cannot be used"))


def step_checkpoints(folder: str) -> list[tuple[int, str]]:
    """``(step, path)`` of the ``step-N.safetensors`` files in ``folder``, oldest first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = [(int(m[1]), os.path.join(folder, name)) for name in names if (m := STEP_FILE.match(name))]
    return sorted(found)


def previous_checkpoint_hint(path: str) -> str:
    """Where to go instead of the bad checkpoint ``path``: the newest step checkpoint of its run before it
    ("" when ``path`` is not in a run directory)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if os.path.basename(folder) != "checkpoints":
        folder = os.path.join(folder, "checkpoints")
    if not os.path.isdir(folder):
        return ""
    match = STEP_FILE.match(os.path.basename(path))
    step = int(match[1]) if match else None
    if step is None:
        try:
            step = int(json.loads(_read_metadata(path, hint=False)[METADATA_KEY])["step"])
        except (ValueError, TypeError, KeyError, FileNotFoundError):
            pass
    earlier = [(s, p) for s, p in step_checkpoints(folder) if (step is None or s < step) and not _same_file(p, path)]
    if not earlier:
        return "no earlier step checkpoint is kept in its run directory"
    s, p = earlier[-1]
    return f"use the previous step checkpoint {p} (step {s})"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")


def _read_metadata(path: str, hint: bool = True) -> dict[str, str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with safe_open(path, framework="pt") as f:
            return f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        where = previous_checkpoint_hint(path) if hint else ""
        raise ValueError(f"{path!r} is not a readable safetensors file: {err}" + (f"; {where}" if where else "")) from None


def read_info(path: str) -> dict[str, Any]:
    """The JSON metadata of a videopool checkpoint."""
    metadata = _read_metadata(path)
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path!r} has no videopool metadata; it was not written by videopool")
    return json.loads(metadata[METADATA_KEY])


def read_weights(path: str, verify: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, after checking them against the stored checksum (``verify``); floating tensors
    come back as fp32 whatever the storage mode the file was written with."""
    if verify:
        verify_checksum(path)
    with safe_open(path, framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
        metadata = f.metadata() or {}
    # A compact checkpoint (bf16 / fp16 / int8, videopool.models.storage) is dequantised to fp32 here, so every
    # reader sees the same tensors as from an fp32 one. storage.py writes through this module, hence the late import.
    from videopool.models.storage import decode_state

    return decode_state(tensors, metadata, path)


def check_model_config(path: str, expected: dict[str, Any], found: dict[str, Any]) -> None:
    """Raise a ValueError listing the differing keys when two model configs disagree."""
    if expected == found:
        return
    keys = sorted(set(expected) | set(found))
    diffs = [f"{k}: checkpoint={found.get(k, '<missing>')!r} model={expected.get(k, '<missing>')!r}"
             for k in keys if expected.get(k, "<missing>") != found.get(k, "<missing>")]
    raise ValueError(f"checkpoint {path!r} was saved from a different model configuration:\n  "
                     + "\n  ".join(diffs))


def load_weights_into(model: torch.nn.Module, path: str,
                      state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Load ``path`` into ``model`` after checking that its config matches; returns the info. ``state``: the
    tensors of ``path`` when the caller has read (and verified) them already."""
    info = read_info(path)
    config = getattr(model, "config", None)
    if config is not None and "model_config" in info:
        check_model_config(path, _config_dict(config), _with_current_defaults(config, info["model_config"]))
    state = read_weights(path) if state is None else state
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path!r} does not fit this model: {err}") from None
    return info


def _with_current_defaults(config: Any, stored: dict[str, Any]) -> dict[str, Any]:
    """``stored`` as today's config class reads it: a checkpoint written before a field existed gets that
    field's default (which reproduces the old behaviour), so it still matches a model built from it."""
    try:
        return _config_dict(type(config).from_dict(stored, "checkpoint model config"))
    except (AttributeError, TypeError, ValueError):
        return stored  # not a videopool config class, or a config this version cannot read: compare as stored


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
