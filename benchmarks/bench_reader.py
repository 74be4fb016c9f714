"""Frame-level parse throughput of videopool's reader, single process (TensorFlow's tf.data timed
side by side when it is installed).

Generates 4 shards x 1,000 frame-level videos with 120-300 frames of random bytes (videopool's
own writer) unless ``--data DIR`` already holds ``*.tfrecord`` shards, then times after one
warm-up pass, reporting the median of ``--passes`` passes:

    raw_read        read the file bytes only (readinto, 8 MiB buffer)
    framing         TFRecord framing, no CRC
    framing_crc     TFRecord framing + both CRC-32C checks
    protobuf        framing + general protobuf parse (upb) + dequantize to float32
    fast_f32        framing + zero-copy fast path + dequantize to float32 (the default reader)
    fast_u8         framing + fast path, uint8 out (dequantize later, per batch)
    tf_*            TensorFlow TFRecordDataset + parse_single_sequence_example + decode_raw +
                    dequantize, if ``import tensorflow`` works (never a videopool dependency)

    python benchmarks/bench_reader.py [--data DIR] [--passes 7] [--modes fast_f32,fast_u8]

MB/s counts file bytes; CPU ms/video is process CPU time (user + sys, all threads), the figure
that stays meaningful on a shared machine (videos/CPU-s is its inverse).
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from videopool.data.codec import decode_record
from videopool.data.schema import YT8M_FRAME
from videopool.data.tfrecord import read_records
from videopool.data.video import Video
from videopool.data.io import write_videos


def generate(directory: str, shards: int, videos_per_shard: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for shard in range(shards):
        path = os.path.join(directory, f"train{shard:04d}.tfrecord")
        videos = []
        for i in range(videos_per_shard):
            frames = int(rng.integers(120, 301))
            labels = sorted(set(rng.zipf(1.3, size=1 + rng.poisson(2)).clip(1, 3862) - 1))
            videos.append(Video(
                id=f"{shard:02d}{i:04d}", labels=[int(label) for label in labels],
                features={"rgb": rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
                          "audio": rng.integers(0, 256, (frames, 128), dtype=np.uint8)}))
        write_videos(path, videos, schema=YT8M_FRAME)
        paths.append(path)
    return paths


def raw_read(paths):
    buffer = bytearray(8 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as file:
            while file.readinto(buffer):
                pass


def framing(paths, verify_crc):
    return sum(1 for path in paths for _ in read_records(path, verify_crc=verify_crc))


def videopool_decode(paths, fast, dequantize):
    count = 0
    for path in paths:
        for record in read_records(path):
            decode_record(record.payload, YT8M_FRAME, dequantize=dequantize, fast=fast)
            count += 1
    return count


def tensorflow_modes():
    try:
        import tensorflow as tf
    except ImportError:
        return {}

    def dataset(paths, parallel):
        context = {"id": tf.io.FixedLenFeature([], tf.string),
                   "labels": tf.io.VarLenFeature(tf.int64)}
        sequence = {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in ("rgb", "audio")}

        def parse(payload):
            ctx, seq = tf.io.parse_single_sequence_example(payload, context, sequence)
            out = {"id": ctx["id"], "labels": ctx["labels"].values}
            for name in ("rgb", "audio"):
                codes = tf.cast(tf.io.decode_raw(seq[name], tf.uint8), tf.float32)
                out[name] = codes * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)
            return out

        ds = tf.data.TFRecordDataset(paths).map(parse, num_parallel_calls=parallel)
        if parallel != 1:
            ds = ds.prefetch(tf.data.AUTOTUNE)
        return iter(ds.repeat())

    iterators = {}

    def run(paths, parallel, key):
        if key not in iterators:  # one long-lived iterator: a fresh iter() was measured to stall ~1 s on a 2-vCPU VM
            iterators[key] = dataset(paths, parallel)
        total = framing(paths, verify_crc=False)
        for _ in range(total):
            item = next(iterators[key])
            item["rgb"].numpy(), item["audio"].numpy()
        return total

    return {"tf_map1": lambda paths: run(paths, 1, "map1"),
            "tf_autotune": lambda paths: run(paths, tf.data.AUTOTUNE, "autotune")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="directory with shards (generated there if empty)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--videos-per-shard", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--modes", help="comma-separated subset of modes to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-malloc-tuning", action="store_true")
    args = parser.parse_args(argv)

    malloc = "default glibc"
    if not args.no_malloc_tuning:
        try:
            from videopool.core.malloc import tune_malloc
            malloc = "tuned (mmap off, no trim)" if tune_malloc() else malloc
        except ImportError:
            pass

    tmp = None
    directory = args.data
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="videopool-bench-")
        directory = tmp.name
    os.makedirs(directory, exist_ok=True)
    paths = sorted(glob.glob(os.path.join(directory, "*.tfrecord")))
    if not paths:
        start = time.perf_counter()
        paths = generate(directory, args.shards, args.videos_per_shard, args.seed)
        print(f"generated {len(paths)} shards in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    num_videos = framing(paths, verify_crc=False)
    total_bytes = sum(os.path.getsize(path) for path in paths)

    modes = {
        "raw_read": raw_read,
        "framing": lambda p: framing(p, False),
        "framing_crc": lambda p: framing(p, True),
        "protobuf": lambda p: videopool_decode(p, fast=False, dequantize=True),
        "fast_f32": lambda p: videopool_decode(p, fast=True, dequantize=True),
        "fast_u8": lambda p: videopool_decode(p, fast=True, dequantize=False),
    }
    modes.update(tensorflow_modes())
    if args.modes:
        wanted = args.modes.split(",")
        unknown = set(wanted) - set(modes)
        if unknown:
            parser.error(f"unknown or unavailable modes {sorted(unknown)}; available: {sorted(modes)}")
        modes = {name: modes[name] for name in wanted}

    print(f"{num_videos} videos, {total_bytes / 1e6:.0f} MB in {len(paths)} shards; malloc {malloc}; "
          f"median of {args.passes} passes after 1 warm-up")
    print(f"{'mode':<13} {'videos/s':>10} {'MB/s':>8} {'CPU ms/video':>13} {'videos/CPU-s':>13} {'vs protobuf':>12}")
    results, cpu_results = {}, {}  # videos per wall second / per CPU second
    for name, function in modes.items():
        function(paths)  # warm-up (page cache, caches, TF graph)
        walls, cpus = [], []
        for _ in range(args.passes):
            wall, cpu = time.perf_counter(), time.process_time()
            function(paths)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        results[name] = num_videos / wall
        cpu_results[name] = num_videos / max(cpu, 1e-9)
        ratio = f"{results[name] / results['protobuf']:.2f}x" if "protobuf" in results else ""
        print(f"{name:<13} {num_videos / wall:>10,.0f} {total_bytes / wall / 1e6:>8,.0f} "
              f"{cpu / num_videos * 1e3:>13.3f} {cpu_results[name]:>13,.0f} {ratio:>12}", flush=True)
    for tf_name in ("tf_autotune", "tf_map1"):
        if tf_name in results:
            for name in ("protobuf", "fast_f32", "fast_u8"):
                if name in results:
                    print(f"{name} / {tf_name}: {results[name] / results[tf_name]:.2f}x wall, "
                          f"{cpu_results[name] / cpu_results[tf_name]:.2f}x CPU")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
