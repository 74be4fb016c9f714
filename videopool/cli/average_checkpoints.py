"""``videopool average-checkpoints``: one model whose weights are the mean of several checkpoints of a run.

Examples::

    videopool average-checkpoints runs/gnv --last 3 --out runs/gnv-avg3
    videopool average-checkpoints --checkpoints runs/gnv/checkpoints/step-00{3,4}00.safetensors --out avg.safetensors \\
        --bn averaged --data 'd/validate-*.tfrecord'

Batch-norm statistics are recomputed on --bn-batches training batches (the run's training data, or --bn-data)
unless --bn averaged. The output (a .safetensors file, or a directory holding best/last.safetensors) is an
ordinary checkpoint for evaluate, predict and export. With --data the GAP of every input checkpoint and of the
average is printed as a table (all frames, deterministic).
"""

from __future__ import annotations

import argparse

from videopool.cli.arguments import non_negative_int, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("average-checkpoints", help="average the weights of several checkpoints of a run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", metavar="RUN", help="training run directory (its checkpoints/step-*.safetensors)")
    p.add_argument("--last", type=positive_int, metavar="K",
                   help="average the newest K step checkpoints of RUN (default: all it keeps)")
    p.add_argument("--checkpoints", nargs="+", metavar="FILE", help="average these checkpoint files instead of RUN")
    p.add_argument("--out", required=True, metavar="PATH_OR_DIR",
                   help="a .safetensors file, or a directory (written as best.safetensors + last.safetensors)")
    p.add_argument("--bn", choices=("recompute", "averaged"), default="recompute",
                   help="batch-norm statistics: recomputed on training batches (default), or the mean of the stored "
                        "ones")
    p.add_argument("--bn-batches", type=positive_int, default=20, metavar="N",
                   help="training batches for --bn recompute (default 20)")
    p.add_argument("--bn-data", nargs="+", metavar="GLOB",
                   help="training shards for --bn recompute (default: the run's train_data from its config)")
    p.add_argument("--data", nargs="+", metavar="GLOB",
                   help="labelled shards: print the GAP of each input checkpoint and of the average")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="batch size of the BN batches (default: the run's) and of --data (default 256)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=non_negative_int, default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from videopool.core.errors import UserError
    from videopool.core.precision import resolve_device
    from videopool.training.averaging import average_checkpoints, check_output, last_checkpoints, save_averaged

    if bool(args.run) == bool(args.checkpoints):
        raise UserError("give either RUN (with --last K) or --checkpoints FILE..., not both and not neither")
    if args.checkpoints and args.last:
        raise UserError("--last K selects the checkpoints of RUN; with --checkpoints list the files themselves")
    check_output(args.out)
    paths = list(args.checkpoints) if args.checkpoints else last_checkpoints(args.run, args.last)
    if len(paths) < 2:
        raise UserError(f"averaging needs at least 2 checkpoints, got {len(paths)} ({', '.join(paths)})")
    device = resolve_device(args.device)
    model, info = average_checkpoints(paths, batch_norm=args.bn, bn_batches=args.bn_batches, bn_data=args.bn_data,
                                      batch_size=args.batch_size, workers=args.workers, device=device)
    if args.data:
        from videopool.models import load_model

        gaps = [(f"{a['path']} (step {a['step']})", _gap(*load_model(a["path"], device), args, device))
                for a in info["averaged_from"]]
        average_gap = _gap(model, info, args, device)
        info["metrics"] = {"gap": average_gap}
        gaps.append((f"average of {len(paths)} ({info['batch_norm']} BN)", average_gap))
        width = max(len(name) for name, _ in gaps)
        print(f"{'checkpoint':<{width}}  GAP@20")
        for name, gap in gaps:
            print(f"{name:<{width}}  {gap:.6f}")
    path = save_averaged(model, info, args.out)
    print(f"averaged {len(paths)} checkpoints (steps {', '.join(str(a['step']) for a in info['averaged_from'])}; "
          f"batch norm {info['batch_norm']}) -> {path}")
    return 0


def _gap(model, info, args, device) -> float:
    """GAP@20 of ``model`` (checkpoint info ``info``) on ``--data`` with every real frame."""
    from videopool.data.loader import make_loader
    from videopool.inference import evaluate
    from videopool.inference.predict import MAX_FRAMES

    loader = make_loader(args.data, num_classes=int(info["num_classes"]), batch_size=args.batch_size or 256,
                         strategy="all", num_frames=MAX_FRAMES, shuffle=False, workers=args.workers, device=device,
                         what="--data", features=(info.get("model_config") or {}).get("modalities"), trainable=False)
    return float(evaluate(model, loader, device=device, num_frames=MAX_FRAMES)["gap"])
