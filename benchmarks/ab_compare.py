"""Time this checkout against another checkout of videopool, side by side in one run.

    python benchmarks/ab_compare.py --other /tmp/videopool-before --mode train --clusters 64
    python benchmarks/ab_compare.py --other ../old --mode infer --clusters 64 256 --rounds 20

Two worker processes (one per checkout, each importing its own ``videopool``) build the same model
(``gated_netvlad_256`` at K clusters, V classes, batch B x N random frames, seed 0) and are then asked, in
alternation (ABBA order), to run one training step (``TrainStep``) or one inference batch; the parent prints the median time
of each and their ratio. Both run with videopool's malloc tuning. Alternating one step at a time makes both share the machine's drift. The workers'
OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``) so that the idle one does not spin on the cores the
other is using. A ratio above 1 means this checkout is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

WORKER = r'''
import sys, time
root, mode, clusters, classes, batch, frames_per_video, threads = sys.argv[1:8]
sys.path.insert(0, root)
try:  # the malloc tuning moved with the restructuring; both checkouts must run with it
    from videopool.core.malloc import tune_malloc
except ImportError:
    from videopool.training.malloc import tune_malloc
tune_malloc()
import torch
torch.set_num_threads(int(threads))
from videopool.models import create_model
torch.manual_seed(0)
model = create_model("gated_netvlad_256", num_classes=int(classes), cluster_size=int(clusters))
b, n = int(batch), int(frames_per_video)
frames = {name: torch.rand(b, n, size) * 4 - 2 for name, size in model.config.modalities.items()}
mask = torch.ones(b, n, dtype=torch.bool)
mask[b // 2:, n // 2:] = False  # half the videos are half as long, as in a real batch
if mode == "train":
    from videopool.training.step import TrainStep
    labels = torch.zeros(b, int(classes))
    labels[torch.arange(b).repeat_interleave(3), torch.randint(0, int(classes), (3 * b,))] = 1
    step = TrainStep(model.train(), precision="fp32", device=torch.device("cpu"), learning_rate=2e-4)
    run = lambda: step(frames, mask, labels)
else:
    model.eval()
    def run():
        with torch.inference_mode():
            model(frames, mask)
for _ in range(3):
    run()
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    run()
    print(time.perf_counter() - start, flush=True)
'''


def start_worker(root: str, args: argparse.Namespace, clusters: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-c", WORKER, os.path.abspath(root), args.mode, str(clusters), str(args.num_classes),
               str(args.batch_size), str(args.num_frames), str(args.threads)]
    worker = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                              cwd=os.path.abspath(root))
    if worker.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the worker for {root} did not start")
    return worker


def timed_step(worker: subprocess.Popen) -> float:
    worker.stdin.write("step\n")
    worker.stdin.flush()
    return float(worker.stdout.readline())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", required=True, help="the other checkout (its folder holds videopool/)")
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--clusters", type=int, nargs="+", default=[64])
    p.add_argument("--num-classes", type=int, default=3862)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"{args.mode}, batch {args.batch_size} x {args.num_frames} frames, V={args.num_classes}, "
          f"{args.threads} threads, {args.rounds} alternating rounds")
    print(f"{'K':>4} {'this s':>8} {'other s':>8} {'this/other speed':>17}")
    for clusters in args.clusters:
        workers = {"this": start_worker(here, args, clusters), "other": start_worker(args.other, args, clusters)}
        times: dict[str, list[float]] = {name: [] for name in workers}
        for round_index in range(args.rounds):
            order = list(workers) if round_index % 2 == 0 else list(workers)[::-1]  # ABBA: neither always goes first
            for name in order:
                times[name].append(timed_step(workers[name]))
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
        this, other = statistics.median(times["this"]), statistics.median(times["other"])
        print(f"{clusters:>4} {this:>8.3f} {other:>8.3f} {other / this:>17.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
