"""``videopool predict``: top-k class predictions in the Kaggle CSV format.

Writes ``VideoId,LabelConfidencePairs`` with one row per video, its top-k classes in
descending score (``--with-names`` adds the class names from ``--vocabulary``).
Inference shares :func:`videopool.inference.run_inference` with ``evaluate`` and training.
"""

from __future__ import annotations

import argparse
import sys

from videopool.cli.arguments import output_file, positive_int
from videopool.cli.options import add_inference_options, inference_loader, report_skipped


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="write Kaggle-format predictions", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory (uses best, else last) or .safetensors")
    p.add_argument("--data", nargs="+", required=True, metavar="GLOB", help="TFRecord files (labels not needed)")
    p.add_argument("--out", required=True, metavar="CSV", type=output_file, help="output file (.csv)")
    p.add_argument("--top-k", type=positive_int, default=20)
    p.add_argument("--with-names", action="store_true", help="add class names (needs --vocabulary)")
    p.add_argument("--vocabulary", metavar="CSV", help="vocabulary.csv of the training label space")
    add_inference_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from videopool.core.errors import UserError
    from videopool.core.precision import resolve_device, resolve_precision
    from videopool.inference import CompileError, read_class_names, write_predictions
    from videopool.models import load_model

    if args.with_names and not args.vocabulary:
        raise UserError("--with-names needs --vocabulary vocabulary.csv")
    device = resolve_device(args.device)
    model, info = load_model(args.checkpoint, device)
    names = read_class_names(args.vocabulary, int(info["num_classes"])) if args.vocabulary else None
    loader, num_frames = inference_loader(args, info, device)
    try:
        count = write_predictions(model, loader, args.out, top_k=args.top_k,
                                  class_names=names if args.with_names else None,
                                  precision=resolve_precision(args.precision, device), device=device,
                                  compile=args.compile, num_frames=num_frames)
    except CompileError as err:  # other user errors: videopool.cli.main
        print(f"videopool predict: error: {err}", file=sys.stderr)
        return 2
    report_skipped("predict", loader)
    print(f"wrote top-{args.top_k} predictions for {count} videos to {args.out}")
    return 0
