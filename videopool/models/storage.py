"""Compact checkpoints: a model's weights stored as fp32, bf16, fp16 or 8-bit, under an optional byte budget.

The second YouTube-8M challenge capped a submission at 1 GB; Tang et al., "Non-local NetVLAD Encoding for Video
Classification" (arXiv 1810.00207) §3.4 fit six models into a 995 MB graph by storing the weights in bfloat16,
and the 2018 winner used 8-bit quantisation. This module writes any model (single, mixture, ensemble: any
``nn.Module`` whose ``state_dict`` goes through :func:`videopool.models.checkpoint.save_weights`) in one of
:data:`STORAGE_MODES`; :func:`videopool.models.checkpoint.read_weights` (and so ``load_model`` and
``load_weights_into``) turns every stored form back into fp32 tensors, so a compact checkpoint is used like any
other one.

What is compacted: the model's floating-point *parameters*. Buffers (batch-norm running statistics and counts,
constants) stay as they are in fp32, whatever the mode.

* ``fp32``: as training writes them (4 bytes per value).
* ``bf16`` / ``fp16``: every parameter rounded to nearest (2 bytes). bf16 keeps fp32's range with 8 significant
  bits (relative error <= 2^-9); fp16 has 11 significant bits but overflows beyond 65,504, which is refused.
* ``int8``: parameters with at least ``min_elements`` (default :data:`MIN_QUANTIZED_ELEMENTS` = 65,536) values, the
  large matrices that hold nearly all the bytes, are quantised per row with an affine map. A tensor of shape
  ``[d_0, ..., d_k]`` is viewed as ``R = d_0 ... d_{k-1}`` rows of ``d_k`` values; row ``r`` keeps
  ``offset_r = min_r``, ``scale_r = (max_r - min_r) / 255`` and codes ``q = round((x - offset_r) / scale_r)`` in
  ``[0, 255]`` (uint8), and is read back as ``x' = offset_r + q · scale_r``, so ``|x' - x| <= scale_r / 2``. The
  codes are stored under the tensor's own name (dtype U8, same shape), ``NAME@scale`` and ``NAME@offset`` as fp32
  ``[R]``. Smaller parameters stay fp32 (they are a few hundred KB).

The mode is recorded in the checkpoint's metadata (``info["storage"]``: ``mode``, and for int8 ``scheme``,
``min_elements`` and the ``quantized`` names). The file stays a plain safetensors file with its checksum.

File sizes are computed exactly before anything is written (:func:`checkpoint_bytes`, from shapes only: a model
on the ``meta`` device works), which is what the budget check of :func:`save_model` uses.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import torch
from torch import nn

from videopool.core.errors import UserError
from videopool.core.files import atomic_write
from videopool.models.checkpoint import METADATA_KEY, _json_default, safetensors_size, write_safetensors

STORAGE_MODES = ("fp32", "bf16", "fp16", "int8")
MIN_QUANTIZED_ELEMENTS = 65_536
INT8_SCHEME = "affine-per-row-uint8"
SCALE_SUFFIX, OFFSET_SUFFIX = "@scale", "@offset"
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
_FP16_MAX = torch.finfo(torch.float16).max
_CHUNK_ELEMENTS = 2**24  # rows are quantised in chunks of about this many values, to bound the temporaries


class ModelTooLargeError(UserError):
    """The model would not fit the byte budget in the requested storage mode."""


def parameter_names(model: nn.Module) -> set[str]:
    """The state-dict names of ``model``'s parameters (tied ones under every name); everything else is a buffer."""
    return {name for name, _ in model.named_parameters(remove_duplicate=False)}


def encode_state(state: Mapping[str, torch.Tensor], mode: str, parameters: set[str],
                 min_elements: int = MIN_QUANTIZED_ELEMENTS) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors to store, storage metadata)`` of ``state`` in ``mode``; ``parameters`` are the names that may be
    compacted (:func:`parameter_names`). Tensors on the ``meta`` device are encoded by shape only."""
    if mode not in STORAGE_MODES:
        raise UserError(f"storage mode {mode!r} is not one of {', '.join(STORAGE_MODES)}")
    tensors: dict[str, torch.Tensor] = {}
    quantized = []
    for name, tensor in state.items():
        tensor = tensor.detach()
        if tensor.device.type != "meta":
            tensor = tensor.cpu()
        if not tensor.is_floating_point():
            tensors[name] = tensor.contiguous()
            continue
        tensor = tensor.float()
        if name in parameters and mode != "fp32":
            _check_finite(name, tensor, mode)
        if name not in parameters or mode == "fp32":
            tensors[name] = tensor.contiguous()
        elif mode in _HALF:
            tensors[name] = tensor.to(_HALF[mode]).contiguous()
        elif tensor.numel() >= min_elements and tensor.dim() >= 1:
            codes, scale, offset = quantize_rows(tensor)
            tensors[name], tensors[name + SCALE_SUFFIX], tensors[name + OFFSET_SUFFIX] = codes, scale, offset
            quantized.append(name)
        else:
            tensors[name] = tensor.contiguous()
    storage: dict[str, Any] = {"mode": mode}
    if mode == "int8":
        storage.update(scheme=INT8_SCHEME, min_elements=min_elements, quantized=sorted(quantized))
    return tensors, storage


def _check_finite(name: str, tensor: torch.Tensor, mode: str) -> None:
    """Refuse weights that the mode would silently turn into other numbers (or that are no numbers already)."""
    if tensor.device.type == "meta":
        return
    if not bool(torch.isfinite(tensor).all()):
        raise UserError(f"parameter {name!r} holds NaN or infinite values; this model cannot be stored "
                        f"(use a checkpoint from before the run diverged)")
    if mode == "fp16" and tensor.numel() and float(tensor.abs().max()) > _FP16_MAX:
        raise UserError(f"parameter {name!r} has values up to {float(tensor.abs().max()):.4g}, beyond float16's "
                        f"range ({_FP16_MAX:g}); use --storage bf16 (fp32's range) or int8")


def quantize_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row affine uint8 codes of ``tensor`` (see the module docstring): ``(codes [same shape] uint8,
    scale [R] fp32, offset [R] fp32)``; a constant row gets scale 0 and is read back exactly."""
    rows = tensor.reshape(-1, tensor.shape[-1]) if tensor.dim() > 1 else tensor.reshape(1, -1)
    if tensor.device.type == "meta":
        count = rows.shape[0]
        return (torch.empty(tensor.shape, dtype=torch.uint8, device="meta"),
                torch.empty(count, device="meta"), torch.empty(count, device="meta"))
    low, high = rows.aminmax(dim=1)
    scale = (high - low) / 255
    step = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.empty(rows.shape, dtype=torch.uint8)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], chunk):
        part = slice(start, start + chunk)
        scaled = (rows[part] - low[part, None]) / step[part, None]
        codes[part] = scaled.round_().clamp_(0, 255).to(torch.uint8)
    return codes.reshape(tensor.shape), scale.contiguous(), low.contiguous()


def dequantize_rows(codes: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``offset_r + q · scale_r`` in fp32, the inverse of :func:`quantize_rows` up to half a step per value."""
    rows = codes.reshape(scale.shape[0], -1).float()
    return rows.mul_(scale[:, None]).add_(offset[:, None]).reshape(codes.shape)


def decode_state(tensors: dict[str, torch.Tensor], metadata: Mapping[str, str], path: str) -> dict[str, torch.Tensor]:
    """The fp32 state dict of a checkpoint's stored ``tensors``, given the file's safetensors ``metadata``.
    A checkpoint without a storage record (every one that training writes) is returned as stored."""
    try:
        storage = json.loads(metadata[METADATA_KEY]).get("storage") if METADATA_KEY in metadata else None
    except (ValueError, AttributeError):
        storage = None  # metadata that is no videopool JSON: read_info reports it where it matters
    if not storage:
        return tensors
    mode = storage.get("mode") if isinstance(storage, dict) else None
    if mode not in STORAGE_MODES:
        raise ValueError(f"checkpoint {path!r} was stored in storage mode {mode!r}, which this version of videopool "
                         f"cannot read (it reads {', '.join(STORAGE_MODES)})")
    quantized = set(storage.get("quantized", ())) if mode == "int8" else set()
    state = {}
    for name, tensor in tensors.items():
        if name.endswith((SCALE_SUFFIX, OFFSET_SUFFIX)) and name.rsplit("@", 1)[0] in quantized:
            continue
        if name in quantized:
            scale, offset = tensors.get(name + SCALE_SUFFIX), tensors.get(name + OFFSET_SUFFIX)
            rows = tensor.numel() // tensor.shape[-1] if tensor.dim() > 1 else 1
            if (tensor.dtype != torch.uint8 or scale is None or offset is None
                    or scale.shape != (rows,) or offset.shape != (rows,)):
                raise ValueError(f"checkpoint {path!r} lists {name!r} as 8-bit but does not hold its uint8 codes "
                                 f"with {rows} scales and offsets; the file is damaged")
            state[name] = dequantize_rows(tensor, scale.float(), offset.float())
        else:
            state[name] = tensor.float() if tensor.is_floating_point() else tensor
    return state


def _prepare(model: nn.Module, info: Mapping[str, Any], mode: str, min_elements: int,
             meta: bool) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, Any]]:
    state = model.state_dict()
    if meta:
        state = {name: tensor.to("meta") for name, tensor in state.items()}
    tensors, storage = encode_state(state, mode, parameter_names(model), min_elements)
    # The file a model was loaded from (load_model's "path") is kept as where this one was stored from.
    written = {**{k: v for k, v in info.items() if k != "path"}, "storage": storage}
    if "path" in info:
        written["stored_from"] = info["path"]
    return tensors, {METADATA_KEY: json.dumps(written, default=_json_default)}, written


def checkpoint_bytes(model: nn.Module, info: Mapping[str, Any], mode: str,
                     min_elements: int = MIN_QUANTIZED_ELEMENTS) -> int:
    """The exact size of the file :func:`save_model` writes for ``model`` with metadata ``info`` in ``mode``,
    computed from shapes alone (``model`` may live on the ``meta`` device)."""
    tensors, metadata, _ = _prepare(model, info, mode, min_elements, meta=True)
    return safetensors_size(tensors, metadata)


def sizes_by_mode(model: nn.Module, info: Mapping[str, Any],
                  min_elements: int = MIN_QUANTIZED_ELEMENTS) -> dict[str, int]:
    """:func:`checkpoint_bytes` of every storage mode."""
    return {mode: checkpoint_bytes(model, info, mode, min_elements) for mode in STORAGE_MODES}


def check_budget(what: str, size: int, max_bytes: int | None, sizes: Mapping[str, int]) -> None:
    """Raise :class:`ModelTooLargeError` when ``size`` bytes (of ``what``) exceed ``max_bytes``, saying by how much
    and which storage modes of a checkpoint (``sizes``, from :func:`sizes_by_mode`) would fit."""
    if max_bytes is None or size <= max_bytes:
        return
    fitting = [f"--storage {mode} ({sizes[mode]:,} bytes)" for mode in STORAGE_MODES
               if mode in sizes and sizes[mode] <= max_bytes]
    smallest = min(sizes, key=sizes.get) if sizes else None
    advice = (f"a checkpoint with {' or '.join(fitting)} fits" if fitting
              else f"no storage mode fits: the smallest, {smallest}, is {sizes[smallest]:,} bytes" if smallest
              else "nothing smaller is available")
    raise ModelTooLargeError(f"{what} would be {size:,} bytes, {size - max_bytes:,} over --max-model-bytes "
                             f"{max_bytes:,}; nothing was written; {advice}")


def save_model(path: str, model: nn.Module, info: Mapping[str, Any], mode: str = "fp32", *,
               max_bytes: int | None = None, min_elements: int = MIN_QUANTIZED_ELEMENTS) -> dict[str, Any]:
    """Write ``model``'s weights in storage ``mode`` with metadata ``info`` (``model_config``, ``num_classes``...,
    as in every checkpoint) to ``path`` atomically, refusing (:class:`ModelTooLargeError`, before anything is
    written) when the file would exceed ``max_bytes``. Returns the metadata written plus ``bytes``."""
    if mode not in STORAGE_MODES:
        raise UserError(f"storage mode {mode!r} is not one of {', '.join(STORAGE_MODES)}")
    if max_bytes is not None:
        sizes = sizes_by_mode(model, info, min_elements)
        check_budget(f"the {mode} checkpoint", sizes[mode], max_bytes, sizes)
    tensors, metadata, written = _prepare(model, info, mode, min_elements, meta=False)
    with atomic_write(path, "wb") as handle:
        write_safetensors(handle, tensors, metadata)
    return {**written, "bytes": safetensors_size(tensors, metadata)}
