"""DataLoader throughput of VideoIterableDataset, and its memory over many shards.

    python benchmarks/bench_loader.py                    # generates demo shards in a temp dir
    python benchmarks/bench_loader.py --data DIR --workers 0 1 2

Prints videos/s through ``DataLoader(VideoIterableDataset, collate_fn=collate_videos)`` for
each worker count, with float32 items (dequantized per video in the workers), uint8 items
dequantized once per batch in the collate, and uint8 batches dequantized in the main
process (what a GPU run would do after the transfer), then the resident memory of a dataset over
1,000 tiny shards against one. Timings on a shared machine are noisy: compare runs taken
side by side.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
import tracemalloc

import numpy as np
import torch
from torch.utils.data import DataLoader

from videopool.data.collate import collate_videos, dequantize_batch
from videopool.data.dataset import VideoIterableDataset
from videopool.demo.dataset import make_demo_data
from videopool.data.io import write_videos
from videopool.data.schema import FeatureSpec, Schema
from videopool.data.video import Video


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


MODES = {
    # name: (dataset dequantizes, collate dequantizes)
    "float32 items": (True, True),
    "uint8 items, collate dequantizes": (False, True),
    "uint8 batches, main process dequantizes": (False, False),
}


def throughput(pattern: str, num_classes: int, workers: int, mode: str, batch_size: int,
               passes: int) -> tuple[float, int]:
    item_dequantize, collate_dequantize = MODES[mode]
    dataset = VideoIterableDataset(pattern, num_classes=num_classes, shuffle=True, shuffle_buffer=256,
                                   dequantize=item_dequantize)
    collate = functools.partial(collate_videos, dequantize=collate_dequantize)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    best, videos = 0.0, 0
    for epoch in range(passes + 1):  # the first pass warms the page cache and starts the workers
        dataset.set_epoch(epoch)
        start, videos = time.perf_counter(), 0
        for batch in loader:
            if not collate_dequantize:
                batch = dequantize_batch(batch)  # where a GPU run would do it, after .to(device)
            videos += len(batch)
        rate = videos / (time.perf_counter() - start)
        if epoch:
            best = max(best, rate)
    return best, videos


def memory_over_shards(directory: str, num_files: int) -> tuple[float, float]:
    """(RSS growth MiB, Python peak MiB) of building and iterating a dataset over ``num_files`` shards."""
    schema = Schema(features=(FeatureSpec("rgb", 16), FeatureSpec("audio", 4)))
    for number in range(num_files):
        path = os.path.join(directory, f"tiny-{number:05d}.tfrecord")
        if not os.path.exists(path):
            video = Video(f"v{number}", [number % 5], {"rgb": np.zeros((3, 16), np.uint8),
                                                       "audio": np.zeros((3, 4), np.uint8)})
            write_videos(path, [video], schema=schema)
    pattern = os.path.join(directory, "tiny-*.tfrecord")
    before = rss_mib()
    tracemalloc.start()
    dataset = VideoIterableDataset(pattern if num_files > 1 else os.path.join(directory, "tiny-00000.tfrecord"),
                                   num_classes=5, schema=schema, shuffle_buffer=64)
    count = sum(1 for _ in dataset)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert count == num_files
    return rss_mib() - before, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="directory of demo shards (default: generate 1,600 videos in a temp dir)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = os.path.join(scratch, "demo")
            make_demo_data(data, train_videos=1600, validate_videos=0, test_videos=0, videos_per_shard=200,
                           progress=False)
        pattern = os.path.join(data, "train-*.tfrecord")
        num_classes = 256
        manifest = os.path.join(data, "manifest.json")
        if os.path.exists(manifest):
            num_classes = json.load(open(manifest))["config"]["num_classes"]
        print(f"cpus: {os.cpu_count()}  torch threads: 1  data: {pattern}")
        print(f"{'workers':>7} {'videos/s':>10}  mode")
        for workers in args.workers:
            for mode in MODES:
                rate, videos = throughput(pattern, num_classes, workers, mode, args.batch_size, args.passes)
                print(f"{workers:>7} {rate:>10,.0f}  {mode} ({videos} videos/pass)")

        tiny = os.path.join(scratch, "tiny")
        os.makedirs(tiny)
        for files in (1, 1000):
            rss, peak = memory_over_shards(tiny, files)
            print(f"dataset over {files:>4} shard(s): RSS +{rss:.1f} MiB, Python peak {peak:.2f} MiB")


if __name__ == "__main__":
    main()
