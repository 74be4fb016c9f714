"""Load: evaluation over 1,000,000 videos and training over 1,000 shards in bounded, flat memory.

    python benchmarks/bench_load.py eval  [--videos 1000000] [--classes 3862] [--batch 1000] [--seed 0]
                                          [--full-check-videos 20000]
    python benchmarks/bench_load.py train [--shards 1000] [--videos-per-shard 4] [--steps 500] [--batch 16]

**eval** streams ``--videos`` synthetic videos through :class:`videopool.metrics.StreamingEvaluator`: batch ``b``
of ``--batch`` videos is generated on the fly from ``numpy.random.default_rng([seed, b])`` — 1 + Poisson(2)
labels per video (at most 20) drawn from a Zipf-like class frequency; float32 scores uniform in [0, 0.6) for
negatives and [0.4, 1.0) for positives (many exact ties, which the tie rule has to settle) — so nothing of size
videos x classes ever exists. It reports the time (data generation, updates,
``compute()``) and the peak RSS of the evaluating process (a fresh process, nothing else in it), with the RSS
at every tenth of the stream. Then two exact checks:

* **chunked reference, same 1 M videos**: a second fresh process regenerates the same batches and recomputes
  every metric with numpy alone, chunk by chunk: each video's top-k membership from ``np.partition`` plus an
  explicit tie rule (score descending, ties by lower class index), the pooled list ranked by ``np.lexsort``
  (score descending, negatives first on ties), per-class APs from one lexsort by (class, score, label), Hit@1
  from ``np.argmax``, PERR from a per-row lexsort. GAP, both mAP conventions and every per-class AP must be
  equal (the difference is printed; it is 0 when the two orders agree), Hit@1 and PERR within 1e-12;
* **one shot, smaller N**: on the first ``--full-check-videos`` videos, where the dense matrix fits in memory,
  the one-shot functions (``gap_at_k``, ``mean_average_precision``, ``hit_at_one``, ``perr``) on the
  concatenated matrix: GAP, mAP and every per-class AP equal the streaming evaluator's exactly; Hit@1 and PERR
  within 1e-12 (the evaluator sums them batch by batch, the one-shot functions take one mean: at 20,000
  videos PERR differs by 3.3e-16).

**train** writes ``--shards`` small demo shards (``videopool.demo.make_demo_data``, ``--videos-per-shard``
each) into a temporary directory and trains a tiny gated NetVLAD on all of them for ``--steps`` steps
(in-process loading, ``workers=0``, so every shard is opened by the measured process), sampling the resident
memory, open file descriptors and memory maps of the process every 0.1 s; the RSS is reported at every
logged step, with its growth after the first epoch's warm-up.

Memory figures matter more than times here: the development VM has 2 cores shared with other jobs.
Every run prints the CPU flags (``amx_bf16``, ``avx512_bf16``) it ran with.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


# -- memory probes -------------------------------------------------------------------------------

def rss_mb() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def memory_maps() -> int:
    with open("/proc/self/maps") as file:
        return sum(1 for _ in file)


def cpu_flags() -> str:
    try:
        out = subprocess.run(["grep", "-o", r"amx_bf16\|avx512_bf16", "/proc/cpuinfo"], capture_output=True,
                             text=True).stdout.split()
    except OSError:
        return "unknown"
    return " ".join(sorted(set(out))) or "none"


# -- (i) evaluation over many videos ---------------------------------------------------------------

def class_frequencies(num_classes: int) -> np.ndarray:
    """A Zipf-like class distribution (YouTube-8M's label counts are long-tailed)."""
    weights = 1.0 / np.arange(1, num_classes + 1) ** 0.8
    return weights / weights.sum()


def synthetic_batch(seed: int, index: int, batch: int, num_classes: int,
                    frequencies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``index`` of the synthetic stream: float32 scores and bool labels ``[batch, num_classes]``."""
    rng = np.random.default_rng([seed, index])
    counts = np.minimum(1 + rng.poisson(2.0, batch), 20)
    classes = rng.choice(num_classes, size=int(counts.sum()), p=frequencies)
    labels = np.zeros((batch, num_classes), dtype=bool)
    labels[np.repeat(np.arange(batch), counts), classes] = True
    scores = rng.random((batch, num_classes), dtype=np.float32)  # negatives uniform in [0, 0.6),
    scores *= np.float32(0.6)
    scores[labels] += np.float32(0.4)  # positives in [0.4, 1.0): overlapping, with many exact float32 ties
    return scores, labels


def _batches(videos: int, batch: int):
    for index, start in enumerate(range(0, videos, batch)):
        yield index, min(batch, videos - start)


def streaming_metrics(videos: int, num_classes: int = 3862, batch: int = 1000, seed: int = 0, top_k: int = 20,
                      samples: int = 10) -> dict:
    """Run the StreamingEvaluator over the synthetic stream; metrics, times and memory."""
    import torch

    from videopool.metrics import StreamingEvaluator

    torch.set_num_threads(1)
    frequencies = class_frequencies(num_classes)
    evaluator = StreamingEvaluator(num_classes, top_k=top_k)
    generate = update = 0.0
    curve = []
    start_rss = rss_mb()
    every = max(1, videos // samples)
    next_sample = every
    begin = time.perf_counter()
    for index, size in _batches(videos, batch):
        t0 = time.perf_counter()
        scores, labels = synthetic_batch(seed, index, size, num_classes, frequencies)
        t1 = time.perf_counter()
        evaluator.update(torch.from_numpy(scores), torch.from_numpy(labels))
        t2 = time.perf_counter()
        generate += t1 - t0
        update += t2 - t1
        del scores, labels
        if evaluator.num_videos >= next_sample:
            curve.append((evaluator.num_videos, round(rss_mb(), 1)))
            next_sample += every
    t0 = time.perf_counter()
    result = evaluator.compute()
    compute = time.perf_counter() - t0
    return {
        "videos": evaluator.num_videos, "classes": num_classes, "top_k": top_k, "batch": batch,
        "gap": result["gap"], "map": result["map"], "map_all_classes": result["map_all_classes"],
        "hit_at_1": result["hit_at_1"], "perr": result["perr"], "per_class_ap": result["per_class_ap"],
        "num_positives": result["num_positives"], "stored_entries": evaluator.num_entries,
        "seconds_generate": generate, "seconds_update": update, "seconds_compute": compute,
        "seconds_total": time.perf_counter() - begin,
        "rss_start_mb": start_rss, "rss_curve_mb": curve, "rss_after_compute_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
    }


def _top_k_members(scores: np.ndarray, k: int) -> np.ndarray:
    """Bool ``[B, V]``: each row's top ``k`` by score descending, ties broken by the lower column index."""
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


def reference_metrics(videos: int, num_classes: int = 3862, batch: int = 1000, seed: int = 0,
                      top_k: int = 20) -> dict:
    """Every metric of the same stream, recomputed chunk by chunk with numpy only (no videopool code)."""
    frequencies = class_frequencies(num_classes)
    k = min(top_k, num_classes)
    entry_scores = np.empty(videos * k, dtype=np.float32)
    entry_labels = np.empty(videos * k, dtype=bool)
    entry_classes = np.empty(videos * k, dtype=np.int32)
    positives = np.zeros(num_classes, dtype=np.int64)
    hit_sum = perr_sum = 0.0
    filled = 0
    begin = time.perf_counter()
    for index, size in _batches(videos, batch):
        scores, labels = synthetic_batch(seed, index, size, num_classes, frequencies)
        members = _top_k_members(scores, k)
        rows, cols = np.nonzero(members)  # row-major: each row's k members, by column
        values, picked = scores[rows, cols], labels[rows, cols]
        entry_scores[filled:filled + rows.size] = values
        entry_labels[filled:filled + rows.size] = picked
        entry_classes[filled:filled + rows.size] = cols
        filled += rows.size
        positives += labels.sum(axis=0)
        hit_sum += float(labels[np.arange(size), np.argmax(scores, axis=1)].sum())
        # PERR: of the n_v best classes of each video (score desc, ties by index), the positives scored > 0
        values, picked, cols = values.reshape(size, k), picked.reshape(size, k), cols.reshape(size, k)
        order = np.lexsort((cols, -values), axis=-1)
        ranked_values = np.take_along_axis(values, order, axis=1)
        ranked_labels = np.take_along_axis(picked, order, axis=1)
        wanted = labels.sum(axis=1)
        hits = (ranked_labels & (ranked_values > 0) & (np.arange(k) < wanted[:, None])).sum(axis=1)
        perr_sum += float(np.where(wanted > 0, hits / np.maximum(wanted, 1), 0.0).sum())
    assert filled == entry_scores.size
    # GAP: the pooled list, score descending, negatives before positives on equal scores
    order = np.lexsort((entry_labels, -entry_scores))
    ranked = entry_labels[order]
    del order
    positive_ranks = np.flatnonzero(ranked) + 1.0
    gap = float(np.sum(np.arange(1, positive_ranks.size + 1) / positive_ranks)) / int(positives.sum())
    del ranked, positive_ranks
    # per-class AP: each class's entries ranked the same way
    order = np.lexsort((entry_labels, -entry_scores, entry_classes))
    classes_sorted, labels_sorted = entry_classes[order], entry_labels[order]
    del order
    starts = np.searchsorted(classes_sorted, np.arange(num_classes))
    at = np.flatnonzero(labels_sorted)
    of_class = classes_sorted[at].astype(np.int64)
    rank_in_class = at - starts[of_class] + 1
    hits_in_class = np.arange(1, at.size + 1) - np.searchsorted(at, starts)[of_class]
    numerators = np.bincount(of_class, weights=hits_in_class / rank_in_class, minlength=num_classes)
    per_class_ap = np.divide(numerators, positives, out=np.zeros(num_classes), where=positives > 0)
    present = positives > 0
    return {
        "gap": gap, "map": float(per_class_ap[present].mean()), "map_all_classes": float(per_class_ap.sum() / num_classes),
        "hit_at_1": hit_sum / videos, "perr": perr_sum / videos, "per_class_ap": per_class_ap,
        "num_positives": int(positives.sum()), "seconds_total": time.perf_counter() - begin, "peak_rss_mb": peak_rss_mb(),
    }


def one_shot_check(videos: int, num_classes: int = 3862, batch: int = 1000, seed: int = 0, top_k: int = 20) -> dict:
    """The one-shot metric functions on the dense matrix of the first ``videos`` videos, and the
    streaming evaluator on the same batches; returns both sets of results."""
    import torch

    from videopool.metrics import (StreamingEvaluator, gap_at_k, hit_at_one, mean_average_precision,
                                   per_class_average_precision, perr)

    torch.set_num_threads(1)
    frequencies = class_frequencies(num_classes)
    parts = [synthetic_batch(seed, index, size, num_classes, frequencies) for index, size in _batches(videos, batch)]
    evaluator = StreamingEvaluator(num_classes, top_k=top_k)
    for scores, labels in parts:
        evaluator.update(scores, labels)
    streamed = evaluator.compute()
    scores = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    del parts
    one_shot = {"gap": gap_at_k(scores, labels, top_k),
                "map": mean_average_precision(scores, labels, top_k, empty_classes="drop"),
                "map_all_classes": mean_average_precision(scores, labels, top_k, empty_classes="zero"),
                "hit_at_1": hit_at_one(scores, labels), "perr": perr(scores, labels),
                "per_class_ap": per_class_average_precision(scores, labels, top_k)}
    return {"videos": videos, "one_shot": one_shot,
            "streamed": {key: streamed[key] for key in one_shot}}


def compare(a: dict, b: dict, exact=("gap", "map", "map_all_classes", "per_class_ap"),
            close=("hit_at_1", "perr")) -> dict:
    """Absolute differences of the metrics of two result dicts; ``ok`` if the exact ones are equal and the
    close ones within 1e-12."""
    diffs = {}
    for key in exact + close:
        x, y = np.asarray(a[key], dtype=np.float64), np.asarray(b[key], dtype=np.float64)
        diffs[key] = float(np.max(np.abs(x - y))) if x.size else 0.0
    ok = all(diffs[key] == 0.0 for key in exact) and all(diffs[key] <= 1e-12 for key in close)
    return {"max_abs_diff": diffs, "ok": ok}


def _in_fresh_process(function, *args):
    """Run ``function(*args)`` in a new interpreter, so its peak RSS is its own."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def run_eval(args) -> int:
    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores (shared); torch threads 1")
    print(f"streaming {args.videos:,} synthetic videos x {args.classes} classes (batches of {args.batch}, "
          f"seed {args.seed}) through StreamingEvaluator(top_k={args.top_k}) ...", flush=True)
    streamed = _in_fresh_process(streaming_metrics, args.videos, args.classes, args.batch, args.seed, args.top_k)
    dense_gb = args.videos * args.classes * 5 / 1e9
    print(f"  time {streamed['seconds_total']:.1f} s: generating the batches {streamed['seconds_generate']:.1f} s, "
          f"update() {streamed['seconds_update']:.1f} s, compute() {streamed['seconds_compute']:.1f} s")
    print(f"  peak RSS {streamed['peak_rss_mb']:.0f} MiB (process start {streamed['rss_start_mb']:.0f} MiB; "
          f"{streamed['stored_entries']:,} stored top-k entries = {streamed['stored_entries'] * 9 / 2**20:.0f} MiB; "
          f"the dense scores + labels would be {dense_gb:.1f} GB)")
    print("  RSS along the stream (videos: MiB): " + ", ".join(f"{n:,}: {m:.0f}" for n, m in streamed["rss_curve_mb"]))
    print(f"  GAP@{args.top_k} {streamed['gap']:.6f}  mAP {streamed['map']:.6f}  mAP(all classes) "
          f"{streamed['map_all_classes']:.6f}  Hit@1 {streamed['hit_at_1']:.6f}  PERR {streamed['perr']:.6f}", flush=True)
    status = 0
    if not args.no_reference:
        print("chunked numpy reference over the same videos (fresh process) ...", flush=True)
        reference = _in_fresh_process(reference_metrics, args.videos, args.classes, args.batch, args.seed, args.top_k)
        check = compare(streamed, reference)
        print(f"  {reference['seconds_total']:.1f} s, peak RSS {reference['peak_rss_mb']:.0f} MiB; max |difference| "
              + ", ".join(f"{k} {v:.3g}" for k, v in check["max_abs_diff"].items())
              + f" -> {'EQUAL' if check['ok'] else 'DIFFERENT'}")
        status |= 0 if check["ok"] else 1
    if args.full_check_videos:
        print(f"one-shot functions on the dense matrix of the first {args.full_check_videos:,} videos ...", flush=True)
        result = _in_fresh_process(one_shot_check, args.full_check_videos, args.classes, args.batch, args.seed,
                                   args.top_k)
        check = compare(result["streamed"], result["one_shot"])
        print("  max |streamed - one shot| " + ", ".join(f"{k} {v:.3g}" for k, v in check["max_abs_diff"].items())
              + f" -> {'EQUAL' if check['ok'] else 'DIFFERENT'}")
        status |= 0 if check["ok"] else 1
    if args.json:
        with open(args.json, "w") as file:
            json.dump({k: v for k, v in streamed.items() if k != "per_class_ap"}, file, indent=1)
    return status


# -- (ii) training over many shards -------------------------------------------------------------

class MemorySampler:
    """Samples (time, RSS MiB, open fds, memory maps) of this process every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), rss_mb(), open_fds(), memory_maps()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), rss_mb(), open_fds(), memory_maps()))

    def at(self, when: float) -> tuple[float, float, int, int]:
        """The last sample taken at or before ``when`` (the first one if none)."""
        chosen = self.samples[0]
        for sample in self.samples:
            if sample[0] > when:
                break
            chosen = sample
        return chosen


def train_over_shards(shards: int = 1000, videos_per_shard: int = 4, steps: int = 500, batch: int = 16,
                      workdir: str | None = None, log_every: int = 25, num_frames: int = 32,
                      frames: tuple[int, int] = (60, 300)) -> dict:
    """Write ``shards`` demo shards (videos of ``frames`` = (min, max) frames) and train a tiny model over all
    of them; the memory along the run."""
    import torch

    from videopool.demo import make_demo_data
    from videopool.demo.world import DemoConfig
    from videopool.training import build_config, num_classes_for, train
    from videopool.training.run_log import read_metrics

    torch.set_num_threads(1)
    root = tempfile.mkdtemp(prefix="videopool-load-", dir=workdir)
    try:
        data = os.path.join(root, "data")
        t0 = time.perf_counter()
        make_demo_data(data, train_videos=shards * videos_per_shard, validate_videos=videos_per_shard,
                       test_videos=videos_per_shard, videos_per_shard=videos_per_shard, progress=False,
                       config=DemoConfig(num_classes=32, min_frames=frames[0], max_frames=frames[1]))
        written = time.perf_counter() - t0
        train_files = sorted(f for f in os.listdir(data) if f.startswith("train") and f.endswith(".tfrecord"))
        data_bytes = sum(os.path.getsize(os.path.join(data, f)) for f in train_files)
        out = os.path.join(root, "run")
        settings = {"train_data": [os.path.join(data, "train-*.tfrecord")], "vocabulary": os.path.join(data, "vocabulary.csv"),
                    "cluster_size": 2, "hidden.size": 8, "batch_size": batch, "max_steps": steps,
                    "num_frames": num_frames, "frame_selection": "random", "precision": "fp32", "workers": 0,
                    "progress": False, "checkpoint_every": 0, "log_every": log_every, "bn_recompute_batches": 0,
                    "seed": 0}
        config = build_config("gated_netvlad_256_small", None, settings, out)
        before = (rss_mb(), open_fds(), memory_maps())
        t0 = time.perf_counter()
        with MemorySampler() as sampler:
            summary = train(config, num_classes_for(config))
        seconds = time.perf_counter() - t0
        curve = []
        for record in read_metrics(out):
            if record["kind"] == "train":
                _, rss, fds, maps = sampler.at(record["time"])
                curve.append((record["step"], round(rss, 1), fds, maps))
        return {"shards": len(train_files), "videos": shards * videos_per_shard, "data_mb": data_bytes / 2**20,
                "steps": steps, "batch": batch, "epochs": steps * batch / (shards * videos_per_shard),
                "seconds_write": written, "seconds_train": seconds, "before": before, "curve": curve,
                "peak_rss_mb": peak_rss_mb(), "final_loss": summary.get("final_loss") if isinstance(summary, dict) else None}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def flatness(curve: list[tuple], skip_until_step: int) -> dict:
    """RSS growth between the first sample at or after ``skip_until_step`` and the last one, and the range."""
    kept = [c for c in curve if c[0] >= skip_until_step] or curve
    rss = [c[1] for c in kept]
    return {"from_step": kept[0][0], "to_step": kept[-1][0], "growth_mb": rss[-1] - rss[0],
            "min_mb": min(rss), "max_mb": max(rss), "fds": sorted({c[2] for c in kept}),
            "maps_range": (min(c[3] for c in kept), max(c[3] for c in kept))}


def run_train(args) -> int:
    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores (shared); torch threads 1")
    print(f"writing {args.shards} shards x {args.videos_per_shard} demo videos and training gated_netvlad_256_small "
          f"(K=2, hidden 8) for {args.steps} steps of {args.batch} (workers=0) ...", flush=True)
    result = _in_fresh_process(train_over_shards, args.shards, args.videos_per_shard, args.steps, args.batch,
                               args.workdir, args.log_every, 32, (args.min_frames, args.max_frames))
    print(f"  {result['shards']} shards, {result['videos']:,} videos, {result['data_mb']:.0f} MiB written in "
          f"{result['seconds_write']:.0f} s; trained {result['steps']} steps ({result['epochs']:.1f} epochs) in "
          f"{result['seconds_train']:.0f} s")
    print(f"  before training: RSS {result['before'][0]:.0f} MiB, {result['before'][1]} open fds, "
          f"{result['before'][2]} memory maps; peak RSS {result['peak_rss_mb']:.0f} MiB")
    print("  step   RSS MiB  fds  maps")
    for step, rss, fds, maps in result["curve"]:
        print(f"  {step:5d}  {rss:7.1f}  {fds:3d}  {maps:5d}")
    epoch_steps = max(1, round(result["steps"] / max(result["epochs"], 1e-9)))
    flat = flatness(result["curve"], min(epoch_steps, result["steps"]) // 2)
    print(f"  from step {flat['from_step']} to {flat['to_step']}: RSS {flat['min_mb']:.0f}-{flat['max_mb']:.0f} MiB, "
          f"growth {flat['growth_mb']:+.1f} MiB; open fds {flat['fds']}; memory maps {flat['maps_range']}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({**result, "flatness": flat}, file, indent=1)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    ev = sub.add_parser("eval", help="StreamingEvaluator over many synthetic videos")
    ev.add_argument("--videos", type=int, default=1_000_000)
    ev.add_argument("--classes", type=int, default=3862)
    ev.add_argument("--batch", type=int, default=1000)
    ev.add_argument("--top-k", type=int, default=20)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--full-check-videos", type=int, default=20_000, help="0 = skip the one-shot check")
    ev.add_argument("--no-reference", action="store_true", help="skip the chunked numpy reference")
    ev.add_argument("--json", default=None)
    tr = sub.add_parser("train", help="training over many small shards")
    tr.add_argument("--shards", type=int, default=1000)
    tr.add_argument("--videos-per-shard", type=int, default=4)
    tr.add_argument("--steps", type=int, default=500)
    tr.add_argument("--batch", type=int, default=16)
    tr.add_argument("--log-every", type=int, default=25)
    tr.add_argument("--min-frames", type=int, default=60, help="frames per demo video: min (demo default)")
    tr.add_argument("--max-frames", type=int, default=300, help="frames per demo video: max (demo default)")
    tr.add_argument("--workdir", default=None, help="where the temporary shards go (default: $TMPDIR)")
    tr.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    return run_eval(args) if args.what == "eval" else run_train(args)


if __name__ == "__main__":
    sys.exit(main())
