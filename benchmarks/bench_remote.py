"""Throughput of reading the same shards from local files and over HTTP (fsspec), side by side in one run.

Starts the Range-capable HTTP server of tests/range_http.py in a separate process on 127.0.0.1 (so the
server's work does not compete with the reader for the GIL, as a real remote would not), serving the folder of
the shards, then alternates local and HTTP passes over the same files:

    framing   read_records with both CRC-32C checks (the reader alone: local = memory map)
    decode    iter_videos: framing + CRC + parse + dequantize to float32 (what training reads)

and prints the median of ``--passes`` passes per reader: records/s, MB/s of file bytes, process CPU s, and the
HTTP/local ratio. Loopback is a fast link with ~0 latency: the figure shows what the reader costs, not what a
cloud bucket's bandwidth allows.

    python benchmarks/bench_remote.py [--data /tmp/demo_run/data] [--shards 1] [--passes 5]
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
from videopool.data.tfrecord import read_records  # noqa: E402


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "unknown"
    return " ".join(flag for flag in ("amx_bf16", "avx512_bf16") if f" {flag}" in text) or "neither amx_bf16 nor avx512_bf16"


def one_pass(files: list[str], mode: str) -> tuple[int, float, float]:
    """(records, wall s, CPU s) of one pass over ``files``."""
    wall, cpu = time.perf_counter(), time.process_time()
    records = 0
    if mode == "framing":
        for path in files:
            for _ in read_records(path):
                records += 1
    else:
        for _ in iter_videos(files):
            records += 1
    return records, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/demo_run/data", help="folder of *.tfrecord shards (read only)")
    parser.add_argument("--shards", type=int, default=1, help="how many of its train shards to read")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--modes", default="framing,decode")
    args = parser.parse_args()
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
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'mode':8s} {'reader':6s} {'records/s':>10s} {'MB/s':>8s} {'CPU s':>7s}")
        for mode in args.modes.split(","):
            timings = {"local": [], "http": []}
            one_pass(local, mode), one_pass(remote, mode)  # warm-up: page cache, connections
            for _ in range(args.passes):  # alternate, so drift on a shared machine hits both alike
                for reader, files in (("local", local), ("http", remote)):
                    timings[reader].append(one_pass(files, mode))
            rates = {}
            for reader, runs in timings.items():
                records = runs[0][0]
                wall = statistics.median(run[1] for run in runs)
                cpu = statistics.median(run[2] for run in runs)
                rates[reader] = size / wall
                print(f"{mode:8s} {reader:6s} {records / wall:10.0f} {size / wall / 1e6:8.0f} {cpu:7.2f}")
            print(f"{mode:8s} http/local throughput ratio: {rates['http'] / rates['local']:.3f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
