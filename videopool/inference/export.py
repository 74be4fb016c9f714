"""Export a trained model as a self-contained ``torch.export`` program (``.pt2``).

The program needs neither videopool nor the checkpoint's config to run: ``torch.export.load(path).module()``
takes ``(frames: dict[str, Tensor [B, N, D]], mask: Tensor [B, N] bool)`` and returns probabilities
``[B, V]``, with the batch size ``B`` and frame count ``N`` free. It is the eval-mode model (BN running
statistics, the input normalisation folded into the pooling where the layers allow it), so its scores are the
ones ``videopool evaluate``/``predict`` produce. The file also carries ``videopool.json`` (model config, class
count, modalities, precision, source checkpoint), readable with :func:`load_exported`.

LSTM/GRU pooling cannot be exported here (packing the sequences by length needs the lengths on the host); the ONNX
export (:mod:`videopool.inference.onnx_export`) handles them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from videopool.core.files import atomic_write, deferred_write_errors
from videopool.inference.predict import bf16_copy
from videopool.models.checkpoint import load_model

METADATA_FILE = "videopool.json"


class ExportError(RuntimeError):
    """``torch.export`` could not trace the model."""


def export_model(checkpoint: str, out: str, *, precision: str = "fp32", max_bytes: int | None = None) -> dict[str, Any]:
    """Write ``checkpoint`` (a ``.safetensors`` file or a run directory) to ``out`` as a ``.pt2`` program.

    ``precision`` ``"bf16"`` exports the bf16 copy (inputs must then be bf16). ``max_bytes``: refuse (nothing
    written) a program larger than this. Returns the metadata written.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"export precision must be 'fp32' or 'bf16', got {precision!r}")
    model, info = load_model(checkpoint, "cpu")
    if precision == "bf16":
        model = bf16_copy(model)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    program = trace(model, dtype)
    metadata = {
        "format": "videopool-export-1",
        "model_config": info["model_config"],
        "num_classes": int(info["num_classes"]),
        "modalities": dict(model.config.modalities),
        "precision": precision,
        "source": info["path"],
        "step": info.get("step"),
        "inputs": "frames: dict modality -> [B, N, D] tensor; mask: [B, N] bool (True = real frame)",
        "output": "probabilities [B, num_classes] float",
    }
    with atomic_write(out, "wb") as handle, deferred_write_errors(handle) as writable:  # never a truncated .pt2
        torch.export.save(program, writable, extra_files={METADATA_FILE: json.dumps(metadata)})
        if max_bytes is not None:  # checked inside the block: when it raises, the temporary file is removed
            from videopool.models.storage import check_budget, sizes_by_mode

            handle.flush()
            size = os.fstat(handle.fileno()).st_size
            check_budget(f"the {precision} program", size, max_bytes, sizes_by_mode(model, info))
    return metadata


def is_recurrent(model: nn.Module) -> set[str]:
    """The LSTM/GRU pooling classes inside ``model`` (mixtures and ensembles included), which torch.export cannot
    trace."""
    return {type(module).__name__ for module in model.modules()} & {"LSTMPooling", "GRUPooling"}


def trace(model: nn.Module, dtype: torch.dtype = torch.float32,
          modalities: dict[str, int] | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` (any module taking ``(frames dict, mask)``; ``modalities``: its input sizes,
    ``model.config.modalities`` by default) in eval mode with a dynamic batch size and frame count."""
    model = model.eval()
    recurrent = is_recurrent(model)
    if recurrent:
        raise ExportError(f"{', '.join(sorted(recurrent))} cannot be exported as a .pt2 program: packing the "
                          "sequences by length needs the lengths on the host; export it with --format onnx, or "
                          "let evaluate/predict run it directly")
    # Example sizes other than 0 and 1, which torch.export would specialise.
    modalities = model.config.modalities if modalities is None else modalities
    frames = {name: torch.zeros(2, 3, size, dtype=dtype) for name, size in modalities.items()}
    mask = torch.ones(2, 3, dtype=torch.bool)
    batch = torch.export.Dim("batch")
    num_frames = torch.export.Dim("frames")
    shapes = ({name: {0: batch, 1: num_frames} for name in frames}, {0: batch, 1: num_frames})
    try:
        with torch.no_grad():
            return torch.export.export(model, (frames, mask), dynamic_shapes=shapes)
    except Exception as err:  # torch.export raises many types; name the model in one clear error
        raise ExportError(f"torch.export could not trace the model ({type(err).__name__}: {err})") from err


def load_exported(path: str) -> tuple[nn.Module, dict[str, Any]]:
    """``(callable module, metadata)`` of a program written by :func:`export_model`."""
    extra = {METADATA_FILE: ""}
    program = torch.export.load(path, extra_files=extra)
    if not extra[METADATA_FILE]:
        raise ValueError(f"{path!r} is a torch.export program but not one written by videopool export")
    return program.module(), json.loads(extra[METADATA_FILE])
