"""``videopool train-segments``: fine-tune a segment classifier from a trained video-level run.

Example (the demo: ``videopool make-demo-data d`` plus the segment splits, see docs/segments.md)::

    videopool train-segments --from runs/gnv --model paper_context_aware --data 'd/segments-train-*.tfrecord' \\
        --val-data 'd/segments-validate-*.tfrecord' --out runs/seg-aware --epochs 3 --set fc_size=256
    videopool train-segments --out runs/seg-aware --resume      # continue a killed run

The loss sees only the rated (segment, class) pairs unless ``--mined-negatives`` (CESHINE) is given; validation
reports segment mAP@100,000, and ``best.safetensors`` is the step with the highest one. Named configurations:
paper_context_ignoring (default), paper_context_aware, ceshine_context_agnostic, ceshine_context_aware,
ceshine_context_aware_no_se (``videopool/configs/segments/``).
"""

from __future__ import annotations

import argparse

from videopool.cli.arguments import non_negative_int, positive_int
from videopool.cli.options import LazyChoices

# flag name -> SegmentTrainConfig field, for flags that only override when given
_FLAGS = {
    "data": "train_data", "val_data": "val_data", "batch_size": "batch_size", "lr": "learning_rate",
    "max_steps": "max_steps", "epochs": "epochs", "seed": "seed", "eval_every": "eval_every",
    "checkpoint_every": "checkpoint_every", "device": "device", "context": "context", "precision": "precision",
    "on_bad_record": "on_bad_record",
}


def add_parser(subparsers) -> None:
    from videopool.core.precision import PRECISIONS

    p = subparsers.add_parser("train-segments", help="fine-tune a segment classifier from a video-level run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="from_run", metavar="VIDEO_RUN",
                   help="the trained video-level run (or checkpoint) to start from; not needed with --resume")
    p.add_argument("--model", choices=LazyChoices("videopool.training.segments", "SEGMENT_CONFIGS"),
                   metavar="NAME", help="named segment configuration (default paper_context_ignoring): %(choices)s")
    p.add_argument("--data", nargs="+", metavar="GLOB", help="segment-rated TFRecord files to train on")
    p.add_argument("--val-data", nargs="+", metavar="GLOB", help="segment-rated TFRecord files for validation")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, logs)")
    p.add_argument("--context", type=non_negative_int, help="frames added on each side of a segment (default 3)")
    p.add_argument("--mined-negatives", action="store_true",
                   help="also train every class in neither the video's labels nor a positive rating as a negative "
                        "(CESHINE); by default unrated pairs never enter the loss")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=float, help="base learning rate (the segment encoder gets segment_lr_scale of it)")
    p.add_argument("--max-steps", type=positive_int)
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--device", help="auto (default), cpu, cuda, ...")
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--eval-every", type=non_negative_int, metavar="N", help="validate (and checkpoint) every N steps")
    p.add_argument("--checkpoint-every", type=non_negative_int, metavar="N")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training key or a segment model key, e.g. --set fc_size=256 "
                        "--set segment_lr_scale=0.25 --set positive_weight=1.5")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--on-bad-record", choices=LazyChoices("videopool.data.errors", "BAD_RECORD_POLICIES"),
                   metavar="{error,skip}", help="a corrupt record stops the run (error, default) or is skipped")
    p.set_defaults(func=run)


def _overrides(args) -> dict:
    from videopool.training.config import parse_set_arguments

    values = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    if args.mined_negatives:
        values["mined_negatives"] = True
    values.update(parse_set_arguments(args.set))
    if args.no_progress:
        values["progress"] = False
    return values


def run(args) -> int:
    from videopool.cli.train import stopped_run_errors, report_stopped_run
    from videopool.training.segments import build_segment_config, train_segments, video_run_for

    config = build_segment_config(args.model, _overrides(args), args.out, args.from_run, resume=args.resume)
    if not config.train_data:
        raise ValueError("no --data given: pass the segment-rated TFRecord files to train on")
    _, info = video_run_for(config)
    try:
        summary = train_segments(config, int(info["num_classes"]), resume=args.resume)
    except stopped_run_errors() as err:
        return report_stopped_run("train-segments", err)
    metrics = summary.get("metrics") or {}
    shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in ("segment_map", "rated_pair_loss") if k in metrics)
    print(f"trained {summary['step']} steps ({summary['examples_seen']} segments) -> {summary['run_dir']}"
          + (f"; validation {shown}" if shown else ""))
    return 0
