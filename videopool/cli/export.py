"""``videopool export``: a trained model as a self-contained ``torch.export`` program (.pt2).

The file runs without videopool::

    program = torch.export.load("model.pt2").module()
    probabilities = program({"rgb": rgb, "audio": audio}, mask)   # [B, N, D] frames, [B, N] bool mask

Batch size and frame count are free. ``videopool.inference.export.load_exported`` also returns the stored
metadata (model config, class count, modalities, precision, source checkpoint).
"""

from __future__ import annotations

import argparse
import os
import sys

from videopool.cli.arguments import output_file


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as a torch.export program (.pt2)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory (uses best, else last) or .safetensors")
    p.add_argument("--out", required=True, metavar="PT2", type=output_file, help="output file (.pt2)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default) or a bf16 copy of the weights (then feed bf16 frames)")
    p.set_defaults(func=run)


def run(args) -> int:
    from videopool.inference.export import ExportError, export_model

    try:
        metadata = export_model(args.checkpoint, args.out, precision=args.precision)
    except ExportError as err:  # this model cannot be exported; the user errors: videopool.cli.main
        print(f"videopool export: error: {err}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.out) / 2**20
    modalities = ", ".join(f"{name} [B, N, {dim}]" for name, dim in metadata["modalities"].items())
    print(f"exported {metadata['source']} ({args.precision}, {metadata['num_classes']} classes) to {args.out} "
          f"({size:.1f} MiB)\ninputs: frames {{{modalities}}}, mask [B, N] bool -> probabilities "
          f"[B, {metadata['num_classes']}]")
    return 0
