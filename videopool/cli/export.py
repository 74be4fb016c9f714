"""``videopool export``: a trained model as a file to deploy.

Three formats, chosen by --format or else by the extension of --out:

  pt2 (default)       a torch.export program that runs without videopool (--precision fp32|bf16):
                          program = torch.export.load("model.pt2").module()
                          probabilities = program({"rgb": rgb, "audio": audio}, mask)   # [B, N, D], [B, N] bool
  onnx (.onnx)        an ONNX graph (opset 18 by default) for onnxruntime / TensorRT: inputs named after the
                      modalities ([batch, frames, D] float) and "mask" ([batch, frames] bool), output
                      "probabilities" [batch, V]; batch and frames are dynamic. Checked against the model with
                      onnxruntime before it is written.
  checkpoint          a compact videopool checkpoint (.safetensors) with --storage fp32|bf16|fp16|int8, loaded by
  (.safetensors)      evaluate / predict / export like any checkpoint (the weights are dequantised at load)

--max-model-bytes N (e.g. 1e9, the 2018 challenge's limit) refuses to write a file over N bytes and says by how
much and which --storage would fit.
"""

from __future__ import annotations

import argparse
import math
import os

from videopool.cli.arguments import output_file, positive_int
from videopool.cli.options import LazyChoices

FORMATS = ("pt2", "onnx", "checkpoint")
_BY_EXTENSION = {".pt2": "pt2", ".onnx": "onnx", ".safetensors": "checkpoint"}


def byte_count(text: str) -> int:
    """A positive whole number of bytes, written plainly or in scientific notation (``1e9``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of bytes such as 1e9 or 1000000000, got {text!r}") from None
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"must be a positive whole number of bytes, got {text!r}")
    return int(value)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as a torch.export program, an ONNX graph or a "
                                             "compact (bf16 / fp16 / int8) checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory (uses best, else last) or .safetensors")
    p.add_argument("--out", required=True, metavar="FILE", type=output_file,
                   help="output file (.pt2, .onnx or .safetensors)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="pt2, onnx or checkpoint (default: from the extension of --out; pt2 for any other)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="pt2 only: fp32 (default) or a bf16 copy of the weights (then feed bf16 frames)")
    p.add_argument("--storage", choices=LazyChoices("videopool.models.storage", "STORAGE_MODES"), default=None,
                   metavar="{fp32,bf16,fp16,int8}",
                   help="checkpoint only: how the weights are stored (default fp32); int8 = per-row affine 8-bit "
                        "codes for parameters of >= 65,536 values, the rest fp32")
    p.add_argument("--quantize-min-elements", type=positive_int, default=None, metavar="N",
                   help="with --storage int8: quantise the parameters of at least N values (default 65536)")
    p.add_argument("--max-model-bytes", type=byte_count, default=None, metavar="N",
                   help="refuse to write a file of more than N bytes (e.g. 1e9)")
    p.add_argument("--opset", type=int, default=None,
                   help="onnx only: the ONNX opset (default 18, the oldest torch writes)")
    p.set_defaults(func=run)


def resolve_format(args) -> str:
    """The format asked for, after checking that the other options belong to it."""
    from videopool.core.errors import UserError

    chosen = args.format or _BY_EXTENSION.get(os.path.splitext(args.out)[1].lower(), "pt2")
    if args.storage not in (None, "fp32") and chosen != "checkpoint":
        raise UserError(f"--storage {args.storage} writes a checkpoint, not a {chosen} file: give --out "
                        f"FILE.safetensors (or --format checkpoint)")
    if args.precision != "fp32" and chosen != "pt2":
        raise UserError(f"--precision {args.precision} is for --format pt2; for a {chosen} file use "
                        + ("--storage bf16" if chosen == "checkpoint" else "the default fp32"))
    if args.quantize_min_elements is not None and args.storage != "int8":
        raise UserError("--quantize-min-elements is for --storage int8")
    if args.opset is not None and chosen != "onnx":
        raise UserError(f"--opset is for --format onnx, not {chosen}")
    return chosen


def run(args) -> int:
    fmt = resolve_format(args)
    if fmt == "checkpoint":
        return _checkpoint(args)
    if fmt == "onnx":
        return _onnx(args)
    return _pt2(args)


def _pt2(args) -> int:
    from videopool.inference.export import ExportError, export_model

    try:
        metadata = export_model(args.checkpoint, args.out, precision=args.precision, max_bytes=args.max_model_bytes)
    except ExportError as err:  # this model cannot be exported; the user errors: videopool.cli.main
        return _fail(err)
    from videopool.data.remote import is_url, size_of  # a remote --out (gs://, memory://) was uploaded

    size = (size_of(args.out) if is_url(args.out) else os.path.getsize(args.out)) / 2**20
    modalities = ", ".join(f"{name} [B, N, {dim}]" for name, dim in metadata["modalities"].items())
    print(f"exported {metadata['source']} ({args.precision}, {metadata['num_classes']} classes) to {args.out} "
          f"({size:.1f} MiB)\ninputs: frames {{{modalities}}}, mask [B, N] bool -> probabilities "
          f"[B, {metadata['num_classes']}]")
    return 0


def _onnx(args) -> int:
    from videopool.inference.export import ExportError
    from videopool.inference.onnx_export import OPSET, export_onnx

    try:
        metadata = export_onnx(args.checkpoint, args.out, opset=args.opset or OPSET, max_bytes=args.max_model_bytes)
    except ExportError as err:
        return _fail(err)
    modalities = ", ".join(f"{name} [batch, frames, {dim}] float" for name, dim in metadata["modalities"].items())
    checked = ("not checked: onnxruntime is not installed" if metadata["check"] is None
               else f"onnxruntime matches the model to {metadata['check']:.1e}")
    print(f"exported {metadata['source']} ({metadata['num_classes']} classes) to {args.out} as ONNX opset "
          f"{metadata['opset']} ({metadata['bytes'] / 2**20:.1f} MiB; {checked})\ninputs: {modalities}, mask "
          f"[batch, frames] bool -> probabilities [batch, {metadata['num_classes']}]")
    return 0


def _checkpoint(args) -> int:
    from videopool.models import load_model
    from videopool.models.storage import MIN_QUANTIZED_ELEMENTS, save_model

    model, info = load_model(args.checkpoint, "cpu")
    if os.path.exists(args.out) and os.path.samefile(args.out, info["path"]):
        from videopool.core.errors import UserError

        raise UserError(f"--out {args.out!r} is the checkpoint being exported; write the copy to another file")
    mode = args.storage or "fp32"
    written = save_model(args.out, model, info, mode, max_bytes=args.max_model_bytes,
                         min_elements=args.quantize_min_elements or MIN_QUANTIZED_ELEMENTS)
    quantized = (f", {len(written['storage']['quantized'])} tensors as 8-bit codes" if mode == "int8" else "")
    print(f"wrote {info['path']} with {mode} storage to {args.out} ({written['bytes']:,} bytes, "
          f"{written['bytes'] / 2**20:.1f} MiB{quantized})")
    return 0


def _fail(err) -> int:
    import sys

    print(f"videopool export: error: {err}", file=sys.stderr)
    return 2
