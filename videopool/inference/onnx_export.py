"""Export a trained model as an ONNX graph (opset >= 18) for serving (onnxruntime, TensorRT).

The graph is the eval-mode model, probability head included::

    inputs   one per modality, named after it: float32 [batch, frames, D]   (e.g. "rgb" [batch, frames, 1024])
             "mask": bool [batch, frames] (True = real frame; padded frames never change a result)
    output   "probabilities": float32 [batch, num_classes]

``batch`` and ``frames`` are dynamic axes of those names. The model's metadata (model config, class count,
modalities, source checkpoint) is stored as JSON in the graph's ``metadata_props`` under ``"videopool"``
(:func:`read_onnx_metadata`).

How the graph is made: ``torch.onnx.export(dynamo=True)`` of the ``torch.export`` program that ``videopool
export`` writes as ``.pt2`` (:func:`videopool.inference.export.trace`, dynamic batch and frame count), which needs
``onnxscript``. LSTM/GRU pooling cannot go through ``torch.export`` (packing the sequences by length needs the
lengths on the host), so those models use torch's TorchScript exporter, which turns the packed RNN into ONNX's
LSTM/GRU operator with ``sequence_lens``. Either way the written graph is run with onnxruntime (when installed) on
batches of several sizes and frame counts, with and without padding, and compared with the eager model before the
file is moved into place: a graph that scores differently is an :class:`ExportError` and is not written.

Any module taking ``(frames: dict[str, Tensor], mask: Tensor)`` and returning probabilities works
(:func:`export_module_onnx`); it needs the modality sizes (``model.config.modalities`` by default).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import types
import warnings
from typing import Any, Mapping

import torch
from torch import nn

from videopool.core.errors import UserError
from videopool.core.files import atomic_path
from videopool.inference.export import ExportError, is_recurrent, trace
from videopool.models.checkpoint import load_model

OPSET = 18
MIN_OPSET = 18
METADATA_KEY = "videopool"
OUTPUT_NAME = "probabilities"
MASK_NAME = "mask"
# (videos, frames) of the self-check batches: one video of one frame, and batches with padded videos.
CHECK_SHAPES = ((1, 1), (2, 7), (3, 40))
CHECK_TOLERANCE = 1e-4  # max |onnxruntime - eager| on probabilities; measured differences are ~1e-7


def export_onnx(checkpoint: str, out: str, *, opset: int = OPSET, max_bytes: int | None = None,
                check: bool = True) -> dict[str, Any]:
    """Write ``checkpoint`` (a ``.safetensors`` file or a run directory) to ``out`` as an ONNX graph; returns the
    metadata written (plus ``check``: the self-check's largest difference, or None when onnxruntime is missing).
    ``max_bytes``: refuse (nothing written) a file larger than this."""
    model, info = load_model(checkpoint, "cpu")
    metadata = {
        "format": "videopool-onnx-1",
        "model_config": info["model_config"],
        "num_classes": int(info["num_classes"]),
        "modalities": dict(model.config.modalities),
        "source": info["path"],
        "step": info.get("step"),
        "inputs": f"one per modality: float [batch, frames, D]; {MASK_NAME}: bool [batch, frames]",
        "output": f"{OUTPUT_NAME} [batch, num_classes] float",
    }

    def sizes() -> dict[str, int]:
        from videopool.models.storage import sizes_by_mode

        return sizes_by_mode(model, info)

    return export_module_onnx(model, out, metadata, opset=opset, max_bytes=max_bytes, check=check,
                              budget_sizes=sizes)


def export_module_onnx(model: nn.Module, out: str, metadata: Mapping[str, Any], *,
                       modalities: Mapping[str, int] | None = None, opset: int = OPSET,
                       max_bytes: int | None = None, check: bool = True, budget_sizes=None) -> dict[str, Any]:
    """Write ``model`` (any module taking ``(frames dict, mask)``) to ``out`` as ONNX with ``metadata`` attached.
    ``budget_sizes``: a callable giving the checkpoint sizes by storage mode, for the over-budget message."""
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset} is too old: torch's exporter writes opset-{MIN_OPSET} graphs (its conversion "
                        f"to 17 fails on the reductions' axes inputs); give --opset {MIN_OPSET} or newer")
    onnx = _require("onnx")
    model = model.eval()
    modalities = dict(modalities or model.config.modalities)
    proto = to_onnx(model, modalities, opset)
    found = {entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")}
    if found != {opset}:  # the exporter falls back to its own opset when it cannot convert
        raise ExportError(f"the exporter wrote opset {sorted(found)} instead of the requested {opset}; "
                          f"use --opset {OPSET}")
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(dict(metadata)))
    if proto.ByteSize() >= 2**31:
        raise ExportError("the ONNX graph exceeds protobuf's 2 GiB limit for one file; store the weights smaller "
                          "first (videopool export --storage bf16 --out small.safetensors) or export --format pt2")
    with atomic_path(out) as tmp:
        onnx.save_model(proto, tmp)
        size = os.path.getsize(tmp)
        if max_bytes is not None and size > max_bytes:
            from videopool.models.storage import check_budget

            check_budget("the ONNX file", size, max_bytes, budget_sizes() if budget_sizes else {})
        difference = check_against_eager(tmp, model, modalities) if check else None
    return {**metadata, "opset": opset, "check": difference, "bytes": size}


def to_onnx(model: nn.Module, modalities: Mapping[str, int], opset: int = OPSET):
    """The ONNX ``ModelProto`` of eval-mode ``model`` with inputs named after ``modalities`` plus ``mask``, output
    ``probabilities``, and dynamic axes ``batch`` and ``frames``."""
    names = [*modalities, MASK_NAME]
    # The exporter prints its progress and logs warnings about operators of packages that are not installed
    # (torchvision): a successful export says nothing, a failed one is one ExportError.
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            if is_recurrent(model):
                return _torchscript_onnx(model, modalities, names, opset)
            _require("onnxscript")
            program = trace(model, modalities=modalities)
            exported = torch.onnx.export(program, (), dynamo=True, opset_version=opset, input_names=names,
                                         output_names=[OUTPUT_NAME], optimize=True, verbose=False)
            # torch.export names the free sizes s0, s1...: give them the names the graph documents.
            dims = [d.dim_param for d in exported.model_proto.graph.input[0].type.tensor_type.shape.dim[:2]]
            exported.rename_axes({old: new for old, new in zip(dims, ("batch", "frames")) if old})
            return exported.model_proto
    except (ExportError, UserError):
        raise
    except Exception as err:  # the exporters raise many types; name the step in one clear error
        raise ExportError(f"ONNX export failed ({type(err).__name__}: {err})") from err


def _torchscript_onnx(model: nn.Module, modalities: Mapping[str, int], names: list[str], opset: int):
    """TorchScript-based export (LSTM/GRU: packed sequences become the ONNX RNN operator's ``sequence_lens``),
    traced on a batch with a padded video so that the masked path is the one recorded."""
    onnx = _require("onnx")
    frames = {name: torch.zeros(3, 5, size) for name, size in modalities.items()}
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 2:] = False
    axes = {name: {0: "batch", 1: "frames"} for name in names}
    axes[OUTPUT_NAME] = {0: "batch"}
    buffer = io.BytesIO()
    with torch.no_grad(), _plain_recurrence(model):
        torch.onnx.export(model, (frames, mask), buffer, dynamo=False, opset_version=opset, input_names=names,
                          output_names=[OUTPUT_NAME], dynamic_axes=axes)
    return onnx.load_model_from_string(buffer.getvalue())


@contextlib.contextmanager
def _plain_recurrence(model: nn.Module):
    """Run each fp32 LSTM/GRU pooling's RNN directly while tracing. The layer's float32 guard (``_recur``) rebuilds
    the PackedSequence to cast its data, and the TorchScript exporter only accepts a ``pack_padded_sequence`` fed
    straight into the RNN; for fp32 weights and inputs the guard computes exactly the plain call, and the
    self-check compares the graph with the unpatched model."""
    patched = []
    for module in model.modules():
        rnn = getattr(module, "rnn", None)
        if (type(module).__name__ in ("LSTMPooling", "GRUPooling") and hasattr(module, "_recur")
                and all(p.dtype == torch.float32 for p in rnn.parameters())):
            module._recur = types.MethodType(lambda self, inputs: self.rnn(inputs)[1], module)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module._recur  # the class's method again


def check_against_eager(path: str, model: nn.Module, modalities: Mapping[str, int],
                        shapes=CHECK_SHAPES, tolerance: float = CHECK_TOLERANCE) -> float | None:
    """Largest ``|onnxruntime - eager|`` over random batches of ``shapes`` (the second video of each batch keeps
    only its first 2 frames); raise :class:`ExportError` above ``tolerance``. None when onnxruntime is missing."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for videos, num_frames in shapes:
        frames = {name: torch.randn(videos, num_frames, size, generator=generator) for name, size in modalities.items()}
        mask = torch.ones(videos, num_frames, dtype=torch.bool)
        if videos > 1:
            mask[1, 2:] = False
        got = run_onnx(session, frames, mask)
        with torch.no_grad():
            expected = model(frames, mask).float()
        worst = max(worst, float((torch.from_numpy(got) - expected).abs().max()))
    if not worst <= tolerance:  # also catches NaN
        raise ExportError(f"the ONNX graph does not score like the model: the probabilities differ by up to "
                          f"{worst:.3g} (> {tolerance:g}) on random batches; nothing was written")
    return worst


def run_onnx(session, frames: Mapping[str, torch.Tensor], mask: torch.Tensor):
    """Run an onnxruntime ``session`` of an exported graph: probabilities as a numpy array [B, V]."""
    feed = {name: tensor.numpy() for name, tensor in frames.items()}
    feed[MASK_NAME] = mask.numpy()
    return session.run([OUTPUT_NAME], feed)[0]


def read_onnx_metadata(path: str) -> dict[str, Any]:
    """The videopool metadata of a graph written by :func:`export_onnx`."""
    onnx = _require("onnx")
    proto = onnx.load_model(path, load_external_data=False)
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    raise ValueError(f"{path!r} is an ONNX graph but not one written by videopool export")


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"ONNX export needs the packages onnx, onnxscript and onnxruntime, and {module} is not "
                        f"installed: pip install -e '.[export]' (or pip install onnx onnxscript onnxruntime)") from None
