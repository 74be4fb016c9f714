"""Speed and memory of the streaming evaluator (videopool.metrics.StreamingEvaluator).

Feeds ``--videos`` random videos in batches of ``--batch`` x ``--classes`` (float32 scores,
~3 labels per video, as in YouTube-8M) and reports:

    update      ms per batch (top-k + Hit@1 + PERR + counters), process CPU time
    compute     seconds for the final GAP + per-class AP (two sorts of n*k keys)
    stored      bytes kept per video (n*k triplets), vs the n*V float32 matrix
    tf1_replay  seconds per million entries of the pure-Python starter-code replay
                (tie_order="tf1"; the starter code itself does the same heap work)

    python benchmarks/bench_metrics.py [--videos 200000] [--batch 1024] [--classes 3862] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from videopool.metrics import StreamingEvaluator
from videopool.metrics.ranking import tf1_ranked_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replay-entries", type=int, default=200_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.random((args.batch, args.classes), dtype=np.float32))
    labels = torch.from_numpy((rng.random((args.batch, args.classes)) < 3 / args.classes).astype(np.float32))
    evaluator = StreamingEvaluator(args.classes, top_k=args.top_k)
    evaluator.update(scores, labels)  # warm-up
    evaluator.reset()

    batches = max(1, args.videos // args.batch)
    start = time.process_time()
    for _ in range(batches):
        evaluator.update(scores, labels)
    update_ms = (time.process_time() - start) / batches * 1e3
    start = time.process_time()
    result = evaluator.compute()
    compute_s = time.process_time() - start

    videos = evaluator.num_videos
    stored = sum(a.nbytes for a in evaluator.ranked_list()[:2]) + evaluator.num_entries * 4
    print(f"videos {videos:,}  classes {args.classes}  top_k {args.top_k}  threads {args.threads}")
    print(f"update       {update_ms:8.1f} ms/batch of {args.batch}  ({args.batch / update_ms * 1e3:,.0f} videos/CPU-s)")
    print(f"compute      {compute_s:8.2f} s for {evaluator.num_entries:,} entries (GAP {result['gap']:.4f})")
    print(f"stored       {stored / videos:8.0f} B/video  vs {4 * args.classes:,} B/video for the dense matrix")

    n = args.replay_entries
    replay_scores = rng.random(n, dtype=np.float32)
    replay_labels = rng.random(n) < 0.1
    start = time.process_time()
    tf1_ranked_labels(replay_scores, replay_labels)
    replay_s = (time.process_time() - start) / n * 1e6
    print(f"tf1_replay   {replay_s:8.2f} s per million entries")


if __name__ == "__main__":
    main()
