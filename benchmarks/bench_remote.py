"""Throughput of reading the same shards from local files and over HTTP (fsspec), side by side in one run.

Starts the Range-capable HTTP server of tests/range_http.py in a separate process on 127.0.0.1 (so the
server's work does not compete with the reader for the GIL, as a real remote would not), serving the folder of
the shards, then alternates local and HTTP passes over the same files:

    framing   read_records with both CRC-32C checks (the reader alone: local = memory map)
    decode    iter_videos: framing + CRC + parse + dequantize to float32
    loader    make_loader (workers=0, batch 64, all frames up to 300): decode + frame selection + collate into
              VideoBatch tensors -- the path training reads through, the number a user feels

and prints, per reader, the median of ``--passes`` passes (ABAB order) with the min-max spread of MB/s: records/s,
MB/s of file bytes, the reader's CPU s and the server process's CPU s, and the HTTP/local ratio of the medians
and of each A/B pair (min-max). Loopback is a fast link with ~0 latency: the figure shows what the reader costs, not what a
cloud bucket's bandwidth allows.

    python benchmarks/bench_remote.py [--data /tmp/demo_run/data] [--shards 1] [--passes 5] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from videopool.data.io import iter_videos  # noqa: E402
from videopool.data.loader import make_loader  # noqa: E402
from videopool.data.tfrecord import read_records  # noqa: E402
from machine import cpu_flags  # noqa: E402


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_pass(files: list[str], mode: str, server_pid: int) -> tuple[int, float, float, float]:
    """(records, wall s, reader CPU s, server CPU s) of one pass over ``files``."""
    server_cpu = process_cpu(server_pid)
    wall, cpu = time.perf_counter(), time.process_time()
    records = 0
    if mode == "framing":
        for path in files:
            for _ in read_records(path):
                records += 1
    elif mode == "decode":
        for _ in iter_videos(files):
            records += 1
    else:
        loader = make_loader(files, num_classes=256, batch_size=64, strategy="all", num_frames=300,
                             shuffle=False, workers=0, trainable=False)
        for batch in loader:
            records += len(batch.labels)
    return records, time.perf_counter() - wall, time.process_time() - cpu, process_cpu(server_pid) - server_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/demo_run/data", help="folder of *.tfrecord shards (read only)")
    parser.add_argument("--shards", type=int, default=1, help="how many of its train shards to read")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--modes", default="framing,decode,loader")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the loader's collate (1 steadies it on a shared machine)")
    args = parser.parse_args()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(args.data, "train-*.tfrecord")))[:args.shards]
    if not names:
        sys.exit(f"bench_remote: no train-*.tfrecord in {args.data}; run `videopool demo` first or pass --data")
    local = [os.path.join(args.data, name) for name in names]
    size = sum(os.path.getsize(path) for path in local)
    server = subprocess.Popen([sys.executable, "-m", "tests.range_http", args.data], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        base = server.stdout.readline().strip()
        remote = [f"{base}/{name}" for name in names]
        print(f"{len(names)} shard(s), {size / 1e6:.1f} MB, {args.passes} passes each (median); server {base}; "
              f"CPU flags: {cpu_flags()}; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.1f}; torch threads {torch_threads()}")
        print(f"{'mode':8s} {'reader':6s} {'records/s':>10s} {'MB/s':>8s} {'(min-max)':>12s} {'CPU s':>6s} "
              f"{'server CPU s':>12s}")
        for mode in args.modes.split(","):
            timings = {"local": [], "http": []}
            one_pass(local, mode, server.pid), one_pass(remote, mode, server.pid)  # warm-up: cache, imports
            for _ in range(args.passes):  # alternate, so drift on a shared machine hits both alike
                for reader, files in (("local", local), ("http", remote)):
                    timings[reader].append(one_pass(files, mode, server.pid))
            rates = {}
            for reader, runs in timings.items():
                records = runs[0][0]
                wall = statistics.median(run[1] for run in runs)
                cpu = statistics.median(run[2] for run in runs)
                server_cpu = statistics.median(run[3] for run in runs)
                rates[reader] = size / wall
                spread = f"{size / max(run[1] for run in runs) / 1e6:.0f}-{size / min(run[1] for run in runs) / 1e6:.0f}"
                print(f"{mode:8s} {reader:6s} {records / wall:10.0f} {size / wall / 1e6:8.0f} {spread:>12s} "
                      f"{cpu:6.2f} {server_cpu:12.2f}")
            pairs = [local_run[1] / http_run[1] for local_run, http_run in zip(timings["local"], timings["http"])]
            print(f"{mode:8s} http/local throughput ratio: {rates['http'] / rates['local']:.3f} "
                  f"(pairs {min(pairs):.3f}-{max(pairs):.3f})")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
