"""What a 2019 segment submission costs: segments scored per second, the top-k state's memory, the top-k's own
time, and the time for the 2019 test set (about 2 M segments) extrapolated from measured runs.

    python benchmarks/bench_localize.py                     # 1 thread, small + full-size gated NetVLAD
    python benchmarks/bench_localize.py --threads 2 --topk-segments 400000
    python benchmarks/bench_localize.py --only-context      # context-aware: per-row video vs encoded once

Everything runs on random weights and random frames (speed does not depend on them). The models are scored
through :func:`videopool.inference.localize.localize` itself (segment split, forward, the 1,000-class column
selection, the streaming top-k with k = 100,000) on videos of 300 frames (60 segments each) served from memory,
so TFRecord parsing is not in these figures (benchmarks/bench_reader.py measures it). The forward-only rate of one
batch is printed beside it. The top-k is then fed ``--topk-segments`` rows of random scores for 1,000 classes: the
first 125,000 rows fill its rows (everything enters), later rows pay for the cuts; its time per segment after the
fill is extrapolated linearly to 2 M segments, an upper bound (for scores in random order the number entering falls
as 1/n).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from videopool.core.malloc import tune_malloc

tune_malloc()

import torch  # noqa: E402

from videopool.data import VideoBatch  # noqa: E402
from videopool.inference.localize import localize  # noqa: E402
from videopool.inference.topk import StreamingTopK  # noqa: E402
from videopool.models import create_model  # noqa: E402
from machine import cpu_flags  # noqa: E402

TEST_SET_SEGMENTS = 2_000_000  # the 2019 test set, about (spec §11.3 / the challenge's data page)
CLASSES, TOP_N, VOCABULARY = 1000, 100_000, 3862


def rss_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class MemoryVideos:
    """A loader of ``batches`` VideoBatches of ``videos`` random 300-frame videos each (fresh ids per batch)."""

    def __init__(self, batches: int, videos: int, frames: int = 300) -> None:
        generator = torch.Generator().manual_seed(0)
        self.frames = {"rgb": torch.randn(videos, frames, 1024, generator=generator) * 0.1,
                       "audio": torch.randn(videos, frames, 128, generator=generator) * 0.1}
        self.mask = torch.ones(videos, frames, dtype=torch.bool)
        self.batches, self.videos = batches, videos

    def __iter__(self):
        for b in range(self.batches):
            yield VideoBatch(ids=[f"v{b:04d}{i:03d}" for i in range(self.videos)], frames=self.frames,
                             mask=self.mask, num_frames=torch.full((self.videos,), self.mask.shape[1]),
                             labels=torch.zeros(self.videos, VOCABULARY))


def bench_model(name: str, batches: tuple[int, int], videos: int, batch_size: int) -> float:
    """Segments per second of ``localize`` with ``name``: the difference of two runs of ``batches`` loader batches,
    so that the one-time costs (the 1 GB top-k state, the first forward) are left out."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=VOCABULARY).eval()
    params = sum(p.numel() for p in model.parameters())
    segments = torch.randn(batch_size, 5, 1152) * 0.1
    frames, mask = {"rgb": segments[..., :1024], "audio": segments[..., 1024:]}, torch.ones(batch_size, 5).bool()
    with torch.inference_mode():
        model(frames, mask)
        start = time.perf_counter()
        model(frames, mask)
        forward = batch_size / (time.perf_counter() - start)
    runs = []
    for count in batches:
        start, cpu = time.perf_counter(), time.process_time()
        found = localize(model, MemoryVideos(count, videos), list(range(CLASSES)), top_n=TOP_N, batch_size=batch_size)
        runs.append((found.num_segments, time.perf_counter() - start, time.process_time() - cpu))
        del found
    (few, few_s, few_cpu), (many, many_s, many_cpu) = runs
    rate, cpu_rate = (many - few) / (many_s - few_s), (many - few) / (many_cpu - few_cpu)
    print(f"{name:<24} {params / 1e6:6.1f} M params: {many:,} segments in {many_s:.1f} s ({many / many_s:.1f} /s with "
          f"the one-time costs), {rate:.1f} segments/s marginal (runs of {few:,} and {many:,}), {cpu_rate:.1f} per "
          f"CPU-second; forward alone {forward:.1f} /s (batch {batch_size})")
    return rate, cpu_rate


def context_aware_model(video: str = "gated_netvlad_256_small") -> torch.nn.Module:
    """A context-aware segment classifier (seed 004 §4.2.1; FC 2048, MoE-4 as ``paper_context_aware``) on
    ``video``'s encoder, random weights."""
    from videopool.models.segment import ContextAwareSegmentClassifier, SegmentModelConfig

    torch.manual_seed(0)
    config = create_model(video, num_classes=VOCABULARY).config.to_dict()
    return ContextAwareSegmentClassifier(SegmentModelConfig(segment_model="context_aware", video=config)).eval()


def bench_context(batches: tuple[int, int], videos: int, batch_size: int) -> dict[bool, tuple[float, float]]:
    """Segments per second of ``localize`` with a context-aware model, the former path (every segment row hands
    its whole 300-frame video to the forward, chunks of at most 256) and the current one (``encode_context`` once
    per video, gathered per row), measured alternately in one run so both see the same machine load."""
    model = context_aware_model()
    params = sum(p.numel() for p in model.parameters())
    runs: dict[bool, list] = {False: [], True: []}
    for once in (False, True):  # warm-up: the first forwards and allocations of each path are not timed
        localize(model, MemoryVideos(1, 2), list(range(CLASSES)), top_n=TOP_N, batch_size=batch_size,
                 context_once=once)
    for count in batches:
        for once in (False, True):
            start, cpu = time.perf_counter(), time.process_time()
            found = localize(model, MemoryVideos(count, videos), list(range(CLASSES)), top_n=TOP_N,
                             batch_size=batch_size, context_once=once)
            runs[once].append((found.num_segments, time.perf_counter() - start, time.process_time() - cpu))
            del found
    rates = {}
    for once, label in ((False, "per-row video (before)"), (True, "context once per video (after)")):
        (few, few_s, few_cpu), (many, many_s, many_cpu) = runs[once]
        rates[once] = (many - few) / (many_s - few_s), (many - few) / (many_cpu - few_cpu)
        print(f"context_aware on gated_netvlad_256_small, {params / 1e6:.1f} M params, {label:<30}: "
              f"{rates[once][0]:.1f} segments/s marginal wall, {rates[once][1]:.1f} per CPU-second "
              f"(runs of {few:,} and {many:,} segments; {many_cpu:.1f} CPU-s for the larger)")
    print(f"context_aware speed-up from encoding each video once: {rates[True][1] / rates[False][1]:.2f}x per "
          f"CPU-second, {rates[True][0] / rates[False][0]:.2f}x wall")
    return rates


def bench_top_k(rows: int, batch: int = 2048) -> tuple[float, float]:
    """``(seconds per segment after the fill, seconds of the final sort)`` of the full-size top-k state."""
    before = rss_bytes()
    top = StreamingTopK(CLASSES, TOP_N)
    allocated = rss_bytes() - before
    arithmetic = CLASSES * (TOP_N + top.pending) * (4 + 4)
    print(f"top-k state, {CLASSES:,} classes x {TOP_N:,} kept + {top.pending:,} pending slots: "
          f"{arithmetic / 1e9:.3f} GB by arithmetic ({CLASSES:,} x {TOP_N + top.pending:,} x (4 B score + 4 B item)), "
          f"{top.nbytes / 1e9:.3f} GB held by its tensors, RSS grew {allocated / 1e9:.3f} GB when it was made")
    generator = torch.Generator().manual_seed(1)
    fill_rows = TOP_N + top.pending
    fill_time = steady_time = 0.0
    done = 0
    cpu_spent = 0.0
    while done < rows:
        scores = torch.rand(batch, CLASSES, generator=generator)  # not timed: stands for the model's output
        start, cpu = time.perf_counter(), time.process_time()
        top.add(scores, torch.arange(done, done + batch))
        elapsed = time.perf_counter() - start
        cpu_spent += time.process_time() - cpu
        if done + batch <= fill_rows:
            fill_time += elapsed
        else:
            steady_time += elapsed
        done += batch
    start, cpu = time.perf_counter(), time.process_time()
    top.result()
    final = time.perf_counter() - start
    cpu_spent += time.process_time() - cpu
    steady_rows = max(done - fill_rows, 1)
    print(f"top-k fed {done:,} random rows: fill ({min(done, fill_rows):,} rows) {fill_time:.1f} s, then "
          f"{steady_rows:,} rows in {steady_time:.1f} s ({top.merges:,} row cuts) = "
          f"{steady_time / steady_rows * 1e6:.1f} us/segment; final sort {final:.1f} s; {cpu_spent:.0f} CPU-seconds "
          f"in all; RSS now {rss_bytes() / 1e9:.2f} GB")
    return steady_time / steady_rows, final + fill_time, cpu_spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--videos", type=int, default=8, help="videos per loader batch (60 segments each)")
    parser.add_argument("--small-batches", type=int, nargs=2, default=(2, 8))
    parser.add_argument("--full-batches", type=int, nargs=2, default=(1, 3))
    parser.add_argument("--context-batches", type=int, nargs=2, default=(1, 3))
    parser.add_argument("--topk-segments", type=int, default=TEST_SET_SEGMENTS)
    parser.add_argument("--only-context", action="store_true",
                        help="only the context-aware model's before/after rows (no top-k, no video-level models)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, CPU flags: {cpu_flags()}, "
          f"load average {load:.1f} at start")
    if args.only_context:
        bench_context(args.context_batches, args.videos, 2048)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average {load:.1f} at the end (2 CPUs shared with other jobs when > 2)")
        return
    per_segment, once, top_k_cpu = bench_top_k(args.topk_segments)  # first: RSS shows the state's own pages
    small = bench_model("gated_netvlad_256_small", args.small_batches, args.videos, 2048)
    full = bench_model("gated_netvlad_256", args.full_batches, args.videos, 256)
    bench_context(args.context_batches, args.videos, 2048)
    names = TEST_SET_SEGMENTS * (sys.getsizeof("abcd:295") + 8)
    print(f"segment ids kept for the CSV: {TEST_SET_SEGMENTS:,} x ~{sys.getsizeof('abcd:295') + 8} B = "
          f"{names / 1e6:.0f} MB")
    top_k_total = once + max(TEST_SET_SEGMENTS - TOP_N - TOP_N // 4, 0) * per_segment
    measured = args.topk_segments >= TEST_SET_SEGMENTS
    print(f"top-k for {TEST_SET_SEGMENTS:,} segments: {top_k_total:.0f} s "
          f"({'measured' if measured else 'extrapolated linearly, an upper bound'}"
          f"{f', {top_k_cpu:.0f} CPU-seconds' if measured else ''})")
    for name, (rate, cpu_rate) in (("gated_netvlad_256_small", small), ("gated_netvlad_256", full)):
        scoring, scoring_cpu = TEST_SET_SEGMENTS / rate, TEST_SET_SEGMENTS / cpu_rate
        print(f"2019 test set ({TEST_SET_SEGMENTS:,} segments), {name}: scoring {scoring / 3600:.2f} h + top-k "
              f"{top_k_total / 3600:.2f} h = {(scoring + top_k_total) / 3600:.2f} h wall at {args.threads} thread(s); "
              f"{scoring_cpu / 3600:.2f} + {top_k_cpu / 3600 if measured else top_k_total / 3600:.2f} CPU-hours")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} at the end (2 CPUs shared with other jobs when > 2)")


if __name__ == "__main__":
    main()
