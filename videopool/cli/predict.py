"""``videopool predict``: top-k class predictions in the Kaggle CSV format.

Writes ``VideoId,LabelConfidencePairs`` with one row per video, its top-k classes in
descending score (``--with-names`` adds the class names from ``--vocabulary``).
Inference shares :func:`videopool.inference.run_inference` with ``evaluate`` and training.
"""

from __future__ import annotations

import argparse
import sys

from videopool.cli.options import add_inference_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="write Kaggle-format predictions", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory (uses best, else last) or .safetensors")
    p.add_argument("--data", nargs="+", required=True, metavar="GLOB", help="TFRecord files (labels not needed)")
    p.add_argument("--out", required=True, metavar="CSV", help="output file (.csv)")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--with-names", action="store_true", help="add class names (needs --vocabulary)")
    p.add_argument("--vocabulary", metavar="CSV", help="vocabulary.csv of the training label space")
    p.add_argument("--sampling", choices=["all", "uniform", "random"], default="all",
                   help="frames fed to the model (see `videopool evaluate --help`)")
    p.add_argument("--num-frames", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=256)
    add_inference_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from videopool.data import RecordError
    from videopool.inference.predict import CompileError, write_predictions

    try:
        count = write_predictions(args.checkpoint, args.data, args.out, top_k=args.top_k,
                                  vocabulary=args.vocabulary, with_names=args.with_names,
                                  sampling=args.sampling, num_frames=args.num_frames,
                                  batch_size=args.batch_size, precision=args.precision, device=args.device,
                                  workers=args.workers, seed=args.seed, compile=args.compile)
    except (ValueError, FileNotFoundError, KeyError, RecordError, CompileError) as err:
        print(f"videopool predict: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote top-{args.top_k} predictions for {count} videos to {args.out}")
    return 0
