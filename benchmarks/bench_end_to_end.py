"""Does the loader keep up? End-to-end training (make_loader over real shards) against the fixed-batch step.

    python benchmarks/bench_end_to_end.py                          # demo shards in /tmp/demo_run/data
    python benchmarks/bench_end_to_end.py --data DIR --precisions fp32 --reps 2 --steps 3

For gated NetVLAD (K=64 by default) at the demo data's full size (300 frames, 1,024 + 128 features, the demo's
own V classes, read from its manifest) and each precision, these configurations are timed interleaved
(A B C ... A B C ..., --reps rounds, so they share the shared machine's drift):

* ``fixed``: the training step on one real batch reused, no loader (what ``bench_train.py`` times);
* ``wN``: the same step fed by :func:`videopool.data.loader.make_loader` with ``num_workers=N``;

each at torch thread counts ``T`` (``--threads``; by default all cores, ``cores - workers`` floored at 1, and 1,
since on 2 cores a worker process competes with the step's threads). Every segment starts a fresh loader
iterator, runs --warmup untimed steps (worker start-up, shuffle-buffer fill), then times --steps steps.
Printed per configuration: median videos/s over the rounds and its spread (min..max), the data path's share
``1 - e2e / fixed`` against the fixed-batch step at the same thread count and at the best one, the time the main
process spent waiting in ``next(loader)``, and CPU-seconds per 100 videos (main process + loader workers, read
from /proc). Then a breakdown of the in-process data path per batch: decode (dataset iteration: framing, CRC,
parse, frame selection), collate (padding + uint8 -> float32), pinning (not done: CPU run), measured alone at
each thread count. With workers the batch's hand-off to the main process shows as the wait in ``next()``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

from videopool.core.malloc import tune_malloc

tune_malloc()  # before torch allocates anything large

import torch  # noqa: E402

from videopool.data.collate import collate_videos  # noqa: E402
from videopool.data.loader import make_loader  # noqa: E402
from videopool.models import create_model  # noqa: E402
from videopool.training.step import TrainStep, prepare_bf16  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from profile_step import cpu_flags  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's live child processes (the loader workers)."""
    me, total = os.getpid(), 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # fields after the name: state, ppid, ..., utime (12), stime (13)
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


class Setup:
    """One precision's model and step, the loader arguments, and one real batch for the fixed-batch step."""

    def __init__(self, args, precision: str, num_classes: int) -> None:
        torch.manual_seed(0)
        self.model = create_model(args.model, num_classes=num_classes, cluster_size=args.clusters).train()
        self.step = TrainStep(self.model, precision=precision, device=torch.device("cpu"), learning_rate=2e-4,
                              master=prepare_bf16(self.model, precision, args.bf16_scheme))
        self.loader_args = dict(num_classes=num_classes, batch_size=args.batch_size, strategy="all",
                                num_frames=args.num_frames, shuffle=True, seed=0,
                                features=dict(self.model.config.modalities))
        self.pattern = os.path.join(args.data, "train-*.tfrecord")
        self.epoch = itertools.count()
        batches = iter(make_loader(self.pattern, workers=0, **self.loader_args))
        self.fixed = next(batches)
        batches.close()

    def batches(self, workers: int | None):
        """A fresh iterator of batches: the fixed one forever (``workers=None``) or make_loader's."""
        if workers is None:
            return itertools.repeat(self.fixed)
        return iter(make_loader(self.pattern, workers=workers, epoch=next(self.epoch), **self.loader_args))

    def train(self, batch) -> None:
        self.step(batch.frames, batch.mask, batch.labels)


def segment(setup: Setup, workers: int | None, threads: int, args) -> dict:
    """Warm up, then time ``args.steps`` steps; returns seconds, videos, wait seconds and CPU seconds."""
    torch.set_num_threads(threads)
    batches = setup.batches(workers)
    for _ in range(args.warmup):
        setup.train(next(batches))
    cpu0, child0 = time.process_time(), children_cpu()
    start, wait, videos = time.perf_counter(), 0.0, 0
    for _ in range(args.steps):
        before = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - before
        setup.train(batch)
        videos += len(batch)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0 + children_cpu() - child0
    if hasattr(batches, "close"):
        batches.close()  # stops the workers now (VideoLoader shuts them down in its finally)
    return {"seconds": seconds, "videos": videos, "wait": wait, "cpu": cpu}


def breakdown(setup: Setup, args, threads: int) -> None:
    """Per-batch cost of the in-process data path, each part measured alone, at ``threads`` torch threads."""
    torch.set_num_threads(threads)
    loader = make_loader(setup.pattern, workers=0, epoch=next(setup.epoch), **setup.loader_args)
    items = iter(loader.dataset)
    for _ in range(300):  # past the shuffle buffer's fill
        next(items)
    decode, collate, count = [], [], max(args.steps, 3)
    for _ in range(count):
        start = time.perf_counter()
        videos = [next(items) for _ in range(args.batch_size)]
        decode.append(time.perf_counter() - start)
        start = time.perf_counter()
        collate_videos(videos)
        collate.append(time.perf_counter() - start)
    d, c = statistics.median(decode), statistics.median(collate)
    print(f"in-process data path per batch of {args.batch_size} (median of {count}, {threads} thread(s)): "
          f"decode {d * 1e3:.0f} ms ({args.batch_size / d:,.0f} videos/s), collate {c * 1e3:.0f} ms "
          f"({args.batch_size / c:,.0f} videos/s), pin 0 ms (pin_memory only for CUDA)", flush=True)


def report(results: dict) -> None:
    rates = {key: [r["videos"] / r["seconds"] for r in runs] for key, runs in results.items()}
    median = {key: statistics.median(v) for key, v in rates.items()}
    best_fixed = max(v for (workers, _), v in median.items() if workers is None)
    print(f"{'config':>8} {'threads':>7} {'videos/s':>9} {'spread':>13} {'share vs fixed@T':>16} "
          f"{'vs best fixed':>13} {'wait in next()':>14} {'CPU-s/100 videos':>16}")
    for (workers, threads), runs in results.items():
        name = "fixed" if workers is None else f"w{workers}"
        fixed = median.get((None, threads))
        share = f"{100 * (1 - median[(workers, threads)] / fixed):.1f}%" if fixed and workers is not None else "-"
        vs_best = "-" if workers is None else f"{100 * (1 - median[(workers, threads)] / best_fixed):.1f}%"
        wait = sum(r["wait"] for r in runs) / sum(r["seconds"] for r in runs)
        cpu = 100 * sum(r["cpu"] for r in runs) / sum(r["videos"] for r in runs)
        low, high = min(rates[(workers, threads)]), max(rates[(workers, threads)])
        print(f"{name:>8} {threads:>7} {median[(workers, threads)]:>9.1f} {low:>6.1f}..{high:<6.1f} {share:>16} "
              f"{vs_best:>13} {100 * wait:>13.1f}% {cpu:>16.2f}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/demo_run/data", help="directory of demo shards (train-*.tfrecord)")
    p.add_argument("--model", default="gated_netvlad_256")
    p.add_argument("--clusters", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-frames", type=int, default=300)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--bf16-scheme", default="master_weights", choices=["master_weights", "autocast"])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch thread counts to try for every configuration (default: all cores, cores - workers "
                        "if >= 1, and 1)")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of every segment")
    p.add_argument("--steps", type=int, default=4, help="timed steps per segment")
    p.add_argument("--breakdown", action="store_true", help="always time decode/collate (default: only if a "
                   "share exceeds 5 %%)")
    args = p.parse_args(argv)
    manifest = os.path.join(args.data, "manifest.json")
    if not os.path.exists(manifest):
        p.error(f"--data {args.data!r} has no manifest.json: pass a directory made by `videopool demo`")
    num_classes = json.load(open(manifest))["config"]["num_classes"]
    cores = len(os.sched_getaffinity(0))
    print(f"CPU: {cpu_flags()}; {cores} usable cores; torch {torch.__version__}; loadavg at start "
          f"{os.getloadavg()[0]:.1f} (a machine shared with other jobs: figures are noisy, compare within a run)")
    print(f"model {args.model} K={args.clusters}, V={num_classes} (the demo data's classes), batch "
          f"{args.batch_size} x {args.num_frames} frames, strategy 'all', shuffle on, data {args.data}")
    configs = []
    for workers in [None, *args.workers]:
        threads = args.threads or sorted({cores, max(1, cores - (workers or 0)), 1})
        configs += [(workers, t) for t in threads]
    if not args.threads:  # a fixed reference at every thread count used
        configs += [(None, t) for t in sorted({t for _, t in configs}) if (None, t) not in configs]
    worst = -float("inf")
    for precision in args.precisions:
        setup = Setup(args, precision, num_classes)
        print(f"\n== {precision}{' (' + args.bf16_scheme + ')' if precision == 'bf16' else ''}: "
              f"{len(configs)} configurations x {args.reps} rounds x ({args.warmup} + {args.steps}) steps", flush=True)
        results = {config: [] for config in sorted(configs, key=lambda c: (c[0] is not None, c[0] or 0, -c[1]))}
        for round_number in range(args.reps):
            started = time.perf_counter()
            for config in results:
                results[config].append(segment(setup, *config, args))
            print(f"  round {round_number + 1}/{args.reps}: {time.perf_counter() - started:.0f} s", flush=True)
        report(results)
        fixed = max(statistics.median(r["videos"] / r["seconds"] for r in runs)
                    for (w, _), runs in results.items() if w is None)
        best_e2e = max(statistics.median(r["videos"] / r["seconds"] for r in runs)
                       for (w, _), runs in results.items() if w is not None)
        worst = max(worst, 1 - best_e2e / fixed)
        print(f"best end-to-end / best fixed-batch ({precision}): {best_e2e:.1f} / {fixed:.1f} videos/s, "
              f"data path share {100 * (1 - best_e2e / fixed):.1f}%", flush=True)
        if args.breakdown or 1 - best_e2e / fixed > 0.05:
            for threads in sorted({t for _, t in configs}):
                breakdown(setup, args, threads)
        del setup
    print(f"\nlargest data path share of the best configuration over precisions: {100 * worst:.1f}% "
          f"({'within' if worst <= 0.05 else 'above'} the 5% target; read it with the spreads above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
