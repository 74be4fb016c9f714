"""``videopool evaluate``: the official YouTube-8M metrics of a checkpoint on labelled data.

Prints GAP@20, Hit@1, PERR, mAP in both conventions (the TF1 starter code's mean over classes
that have positives, labelled G-TF1; the TF2 starter code's sum over all V classes / V, labelled
G-TF2) and the loss; ``--json`` prints the same as JSON; ``--plots DIR`` writes the
precision-recall curve and per-class AP plots.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from videopool.cli.arguments import output_directory, positive_int
from videopool.cli.options import add_inference_options, inference_loader, report_skipped


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="GAP / Hit@1 / PERR / mAP of a checkpoint", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory (uses best, else last) or .safetensors")
    p.add_argument("--data", nargs="+", required=True, metavar="GLOB", help="labelled TFRecord files")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--plots", metavar="DIR", type=output_directory,
                   help="write precision_recall.png and ap_vs_frequency.png here")
    p.add_argument("--top-k", type=positive_int, default=20)
    add_inference_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from videopool.core.precision import resolve_device, resolve_precision
    from videopool.inference import CompileError, evaluate
    from videopool.models import load_model

    device = resolve_device(args.device)
    model, info = load_model(args.checkpoint, device)
    loader, num_frames = inference_loader(args, info, device)
    try:
        results = evaluate(model, loader, device=device, precision=resolve_precision(args.precision, device),
                           loss=info.get("train_config", {}).get("loss", "bce_sum"), top_k=args.top_k,
                           compile=args.compile, num_frames=num_frames, keep_evaluator=True)
    except CompileError as err:  # other user errors: videopool.cli.main
        print(f"videopool evaluate: error: {err}", file=sys.stderr)
        return 2
    report_skipped("evaluate", loader)
    evaluator = results.pop("evaluator")
    scalars = {k: v for k, v in results.items() if not hasattr(v, "shape")}
    scalars["checkpoint"] = info["path"]
    scalars["step"] = info.get("step")
    scalars["bad_records"] = loader.skipped.count
    if args.json:
        print(json.dumps(scalars, indent=2))
    else:
        print(format_table(results, info))
    if args.plots:
        write_plots(results, evaluator, args.plots)
    return 0


def format_table(results: dict, info: dict) -> str:
    k = results["top_k"]
    rows = [
        (f"GAP@{k}", results["gap"]),
        ("Hit@1", results["hit_at_1"]),
        ("PERR", results["perr"]),
        (f"mAP (G-TF1: mean over the {results['num_classes_with_positives']} classes with positives)", results["map"]),
        (f"mAP (G-TF2: sum over all {len(results['per_class_ap'])} classes / V)", results["map_all_classes"]),
        ("loss", results["loss"]),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{info['path']} (step {info.get('step')}): {results['num_videos']} videos"]
    lines += [f"  {name:<{width}}  {'-' if value is None else f'{value:.6f}'}" for name, value in rows]
    return "\n".join(lines)


def write_plots(results: dict, evaluator, folder: str) -> None:
    from videopool.metrics import plot_ap_vs_frequency, plot_precision_recall

    os.makedirs(folder, exist_ok=True)
    plot_precision_recall(evaluator, os.path.join(folder, "precision_recall.png"))
    plot_ap_vs_frequency(results["per_class_ap"], results["class_positive_counts"],
                         os.path.join(folder, "ap_vs_frequency.png"))
