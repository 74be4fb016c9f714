"""Checkpoint averaging, in-training EMA/SWA and test-time resampling on the demo data (docs/results.md, last
section): Tang et al. 2018 (arXiv 1810.00207) Tables 2 and 4 on the demo budget.

    videopool demo                                            # trains videopool-demo/runs/gated_netvlad_256_small
    python benchmarks/averaging_results.py --data videopool-demo/data \
        --run videopool-demo/runs/gated_netvlad_256_small --out /tmp/averaging [--train]

Prints markdown tables of validation GAP@20 (all frames unless said otherwise): the last step checkpoints of
``--run`` (the demo's gated_netvlad_256_small: 8 epochs, lr 0.003, 64 random frames, batch 80, one checkpoint per
epoch, the last 3 kept) and ``videopool average-checkpoints`` of its last K with either batch-norm mode, then
``videopool evaluate --sampling random --test-time-samples R`` of its last checkpoint. ``--train`` also trains the
model with the demo's recipe and ``weight_averaging=ema`` / ``swa`` into ``--out`` (a few minutes per run on 2
idle cores) and adds their final checkpoints. Every number comes from the commands themselves
(``videopool.cli.main.main``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from machine import cpu_flags, videopool_command as command  # noqa: E402

# the demo's recipe (videopool/cli/demo.py) for its 4,000 training videos
RECIPE = {"epochs": 8, "learning_rate": 0.003, "num_frames": 64, "frame_selection": "random", "batch_size": 80,
          "seed": 0, "lr_decay_examples": 200_000, "checkpoint_every": 0, "progress": False}
RUNS = {"ema": {"weight_averaging": "ema", "ema_decay": 0.99},
        "swa": {"weight_averaging": "swa", "swa_start": 201}}  # swa: the second half (steps 201-400)


def gap(checkpoint: str, validate: str, *flags: str) -> float:
    return json.loads(command("evaluate", checkpoint, "--data", validate, "--json", *flags))["gap"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="demo data directory (videopool make-demo-data)")
    parser.add_argument("--run", required=True, help="a trained run (videopool demo's gated_netvlad_256_small)")
    parser.add_argument("--out", required=True, help="scratch directory for the averages and runs")
    parser.add_argument("--train", action="store_true", help="also train EMA and SWA runs with the demo's recipe")
    parser.add_argument("--model", default="gated_netvlad_256_small")
    args = parser.parse_args()

    from videopool.models.checkpoint import read_info, step_checkpoints
    from videopool.training import train_named_model

    train, validate = os.path.join(args.data, "train-*.tfrecord"), os.path.join(args.data, "validate-*.tfrecord")
    # no validation during training: it restores the RNG, so these runs see the demo run's batches, and skipping
    # it saves 8 evaluations per run
    data = {"train_data": [train], "vocabulary": os.path.join(args.data, "vocabulary.csv")}
    os.makedirs(args.out, exist_ok=True)
    runs = {"plain": args.run}
    for name, extra in RUNS.items() if args.train else ():
        runs[name] = os.path.join(args.out, name)
        if not os.path.isfile(os.path.join(runs[name], "last.safetensors")):
            train_named_model(args.model, runs[name], {**RECIPE, **data, **extra})

    print(f"{args.model}, demo recipe, {platform.machine()}, bf16 CPU flags: {cpu_flags() or 'none'}\n")
    steps = [(step, path) for step, path in step_checkpoints(os.path.join(runs["plain"], "checkpoints"))]
    print("| model | steps | BN | GAP@20 |\n|---|---|---|---|")
    for step, path in steps[-4:]:
        print(f"| plain run, checkpoint | {step} | as trained (precise BN) | {gap(path, validate):.4f} |")
    for k in range(2, len(steps) + 1):
        for bn in ("recompute", "averaged"):
            out = os.path.join(args.out, f"avg{k}-{bn}.safetensors")
            command("average-checkpoints", runs["plain"], "--last", str(k), "--out", out, "--bn", bn)
            shown = ", ".join(str(s) for s, _ in steps[-k:])
            label = "recomputed (20 batches)" if bn == "recompute" else "mean of the stored"
            print(f"| average of the last {k} | {shown} | {label} | {gap(out, validate):.4f} |")
    for name in [n for n in RUNS if n in runs]:
        info = read_info(os.path.join(runs[name], "last.safetensors"))
        what = "EMA, decay 0.99" if name == "ema" else "SWA of every step from 201"
        print(f"| in training: {what} | {info['step']} | recomputed (20 batches) | "
              f"{gap(os.path.join(runs[name], 'last.safetensors'), validate):.4f} |")

    last = os.path.join(runs["plain"], "last.safetensors")
    print("\n| frames at test time | GAP@20 |\n|---|---|")
    print(f"| all frames (masked, deterministic) | {gap(last, validate):.4f} |")
    for r in (1, 5, 10):
        value = gap(last, validate, "--sampling", "random", "--test-time-samples", str(r))
        print(f"| 64 random, R = {r} (seed 0) | {value:.4f} |")
    singles = [gap(last, validate, "--sampling", "random", "--seed", str(s)) for s in range(1, 5)]
    print(f"| 64 random, R = 1, seeds 1-4 | {' / '.join(f'{g:.4f}' for g in singles)} |")


if __name__ == "__main__":
    main()
