"""``videopool predict``: top-k class predictions in the Kaggle CSV format.

Writes ``VideoId,LabelConfidencePairs`` with one row per video, its top-k classes in
descending score (``--with-names`` adds the class names from ``--vocabulary``).
Inference shares :func:`videopool.inference.run_inference` with ``evaluate`` and training.
"""

from __future__ import annotations

import argparse
import sys


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
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="fp32")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from videopool.data import RecordError

    try:
        count = predict_to_csv(args)
    except (ValueError, FileNotFoundError, KeyError, RecordError) as err:
        print(f"videopool predict: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote top-{args.top_k} predictions for {count} videos to {args.out}")
    return 0


def predict_to_csv(args) -> int:
    from videopool.inference.formats import VideoPredictionWriter
    from videopool.inference.predict import load_model, run_inference
    from videopool.training.data import make_loader
    from videopool.training.precision import resolve_device, resolve_precision

    device = resolve_device(args.device)
    model, info = load_model(args.checkpoint, device)
    num_classes = int(info["num_classes"])
    names = None
    if args.with_names or args.vocabulary:
        if not args.vocabulary:
            raise ValueError("--with-names needs --vocabulary vocabulary.csv")
        names = _class_names(args.vocabulary, num_classes)
    loader = make_loader(args.data, num_classes=num_classes, batch_size=args.batch_size, strategy=args.sampling,
                         num_frames=args.num_frames or int(info.get("train_config", {}).get("num_frames", 300)),
                         shuffle=False, seed=args.seed, workers=args.workers, what="--data")
    precision = resolve_precision(args.precision, device)
    with VideoPredictionWriter(args.out, top_k=args.top_k, class_names=names if args.with_names else None) as writer:
        for ids, probabilities, _ in run_inference(model, loader, precision=precision, device=device):
            writer.write_batch(ids, probabilities)
    return writer.num_rows


def _class_names(path: str, num_classes: int) -> list[str]:
    from videopool.data import read_vocabulary

    vocabulary = read_vocabulary(path)
    if vocabulary.num_classes != num_classes:
        raise ValueError(f"vocabulary {path!r} covers class ids 0..{vocabulary.num_classes - 1} but the model "
                         f"predicts {num_classes} classes; use the vocabulary the model was trained with")
    return [vocabulary.name(i) for i in range(num_classes)]
