"""``videopool train``: train a named model on TFRecord shards.

Example::

    videopool train --model gated_netvlad_256_small --train-data 'data/train-*.tfrecord' \\
        --val-data 'data/validate-*.tfrecord' --vocabulary data/vocabulary.csv --out runs/k64 \\
        --max-steps 2000 --set lr_decay_examples=100000 --set pooling.cluster_size=32

Multi-process: ``torchrun --nproc-per-node=2 -m videopool train ...``.
"""

from __future__ import annotations

import argparse
import os
import sys

from videopool.cli.options import add_bad_record_options

# flag name -> TrainConfig field, for flags that only override when given
_FLAGS = {
    "init_from": "init_from",
    "train_data": "train_data", "val_data": "val_data", "batch_size": "batch_size", "lr": "learning_rate",
    "max_steps": "max_steps", "epochs": "epochs", "precision": "precision", "seed": "seed",
    "eval_every": "eval_every", "checkpoint_every": "checkpoint_every", "workers": "workers",
    "device": "device", "num_classes": "num_classes", "vocabulary": "vocabulary",
    "on_bad_record": "on_bad_record", "max_bad_records": "max_bad_records", "layout": "layout",
}


def add_parser(subparsers) -> None:
    from videopool.core.precision import PRECISIONS

    p = subparsers.add_parser("train", help="train a model", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="named model (see `videopool models`); not needed with --resume")
    p.add_argument("--config", help="YAML file of training and model keys (overridden by flags)")
    p.add_argument("--train-data", nargs="+", metavar="GLOB", help="training TFRecord files")
    p.add_argument("--val-data", nargs="+", metavar="GLOB", help="held-out TFRecord files for validation")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, logs)")
    p.add_argument("--num-classes", type=int, help="number of classes V")
    p.add_argument("--vocabulary", metavar="CSV", help="vocabulary.csv; V = its number of rows")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--precision", choices=PRECISIONS,
                   help="auto: bf16 on CPUs with AMX (not avx512_bf16 alone) and bf16-capable GPUs, else fp32")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                   help="start from the weights of this run (e.g. one made by `videopool import-tf`) with a fresh "
                        "optimizer and step counter; its model and model settings are used when --model is not given")
    p.add_argument("--eval-every", type=int, metavar="N", help="validate (and checkpoint) every N steps")
    p.add_argument("--checkpoint-every", type=int, metavar="N")
    p.add_argument("--workers", type=int, help="data-loading processes (default: 0 on a CPU machine with <= 2 cores, else 1)")
    p.add_argument("--layout", metavar="LAYOUT", help="record layout of the data: yt8m_frame, yt8m_video, audioset, "
                                                      "mediapipe or a layout YAML file (default: read off the files)")
    p.add_argument("--features", metavar="NAME:SIZE,...",
                   help="the features the model reads, e.g. x:12 or rgb:1024,audio:128 (`videopool inspect` prints "
                        "the value for your files); per-modality settings follow (docs/custom-features.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training or model key, e.g. --set clip_mode=global --set pooling.cluster_size=64")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_bad_record_options(p, default=None)
    p.set_defaults(func=run)


def _explicit_overrides(args) -> dict:
    from videopool.training.config import parse_set_arguments

    values = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    if args.layout is not None:
        from videopool.data.layouts import resolve_layout

        resolve_layout(args.layout)  # a bad --layout is exit 2 before the run directory is made
    if args.features is not None:
        from videopool.data.layouts import parse_features

        values["modalities"] = parse_features(args.features)
    values.update(parse_set_arguments(args.set))
    if args.no_progress:
        values["progress"] = False
    return values


# Below this many values per frame, per-frame L2 normalisation leaves little but the frame's direction.
_FEW_FRAME_VALUES = 16


def _warn_small_normalized_frames(config, num_classes: int) -> None:
    from videopool.models import resolve_config

    model = resolve_config(config.model, num_classes=num_classes, **config.model_overrides)
    width = sum(model.modalities.values())
    if model.l2_normalize_frames and width < _FEW_FRAME_VALUES and int(os.environ.get("RANK", "0")) == 0:
        print(f"videopool train: warning: l2_normalize_frames is on for frames of {width} values "
              f"({', '.join(model.modalities)}): each frame keeps only its direction, not its magnitude; "
              "--set l2_normalize_frames=false keeps it (docs/custom-features.md)", file=sys.stderr)


def stopped_run_errors() -> tuple[type[Exception], ...]:
    """The ways a training run stops that are reported in one line (imported late: ``--help`` stays fast)."""
    from videopool.core.files import DiskFullError
    from videopool.training.loop import NonFiniteLossError, ValidationFailedError
    from videopool.training.run_lock import RunLockedError

    return NonFiniteLossError, RunLockedError, DiskFullError, ValidationFailedError


def report_stopped_run(command: str, err: Exception) -> int:
    """Print a stopped run's one-line error; its exit status: 2 for what the user fixes (another process holds the
    run, bad validation data), 1 for a failure (a diverged run, a full disk, out of memory in validation)."""
    from videopool.data import RecordError
    from videopool.training.loop import ValidationFailedError
    from videopool.training.run_lock import RunLockedError

    print(f"videopool {command}: error: {err}", file=sys.stderr)
    if isinstance(err, RunLockedError):
        return 2
    if isinstance(err, ValidationFailedError):
        return 2 if isinstance(err.cause, (ValueError, FileNotFoundError, RecordError)) else 1
    return 1


def run(args) -> int:
    from videopool.data import RecordError
    from videopool.training.api import build_config, num_classes_for
    from videopool.training.loop import train

    # a mistake in the flags, the config or the vocabulary is a UserError, which videopool.cli.main prints
    config = build_config(args.model, args.config, _explicit_overrides(args), args.out, resume=args.resume)
    num_classes = num_classes_for(config)
    _warn_small_normalized_frames(config, num_classes)
    try:
        summary = train(config, num_classes, resume=args.resume)
    except stopped_run_errors() as err:
        return report_stopped_run("train", err)
    except RecordError as err:
        if err.kind != "label_range":
            raise  # one line and exit 2 from videopool.cli.main, as every other bad record
        source = f"--vocabulary {config.vocabulary}" if config.vocabulary else f"--num-classes {num_classes}"
        hint = f" (the model has V = {num_classes} classes from {source}; does it cover the data's label ids?)"
        print(f"videopool train: error: {err}{hint}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        metrics = summary.get("metrics") or {}
        shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in ("gap", "hit_at_1", "loss") if k in metrics)
        print(f"trained {summary['step']} steps ({summary['examples_seen']} videos) -> {summary['run_dir']}"
              + (f"; validation {shown}" if shown else ""))
        bad = summary.get("bad_records") or {}
        if bad.get("count"):
            kinds = ", ".join(f"{kind}: {n}" for kind, n in bad["by_kind"].items())
            print(f"videopool train: skipped {bad['count']} bad record(s) ({kinds}; {bad['train']} in --train-data, "
                  f"{bad['val']} in --val-data), listed in {bad['path']}", file=sys.stderr)
    return 0

