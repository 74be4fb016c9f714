"""Speed of the pooling layers on their own (video stream, D=1024), forward and forward+backward.

    python benchmarks/bench_pooling.py                                   # NetVLAD K=64/256, fp32 + bf16
    python benchmarks/bench_pooling.py --layers netvlad netfv soft_dbow --clusters 64 --padded
    python benchmarks/bench_pooling.py --layers lstm gru --frames 150 --batch-size 32

Each configuration runs warm-up passes, then reports the median time over --repeats passes:
* ``infer``: eval mode under ``torch.no_grad()``;
* ``train``: train mode, forward + backward of ``sum(output)`` (gradients w.r.t. the layer's parameters;
  the input needs none, as after the input batch norm of a model it would — that adds one GEMM).
``--padded`` gives videos uniform lengths in [N/2, N] with a mask, to measure the masked batch-norm path.
The machine is shared and drifts ~10% between runs: compare figures from the same run only.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from videopool.core.malloc import tune_malloc

tune_malloc()  # before torch allocates anything large (default glibc malloc halves large-model throughput)

import torch  # noqa: E402

from videopool.layers import create_pooling  # noqa: E402

RECURRENT = ("lstm", "gru")


def build(name: str, feature_size: int, clusters: int) -> torch.nn.Module:
    if name in RECURRENT:
        return create_pooling(name, feature_size=feature_size, hidden_size=clusters)
    if name in ("average", "max"):
        return create_pooling(name, feature_size=feature_size)
    return create_pooling(name, feature_size=feature_size, cluster_size=clusters)


def median_seconds(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", nargs="+", default=["netvlad"])
    parser.add_argument("--clusters", nargs="+", type=int, default=[64, 256], help="K (hidden size for RNNs)")
    parser.add_argument("--feature-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--padded", action="store_true", help="variable lengths with a mask")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch, frames_per_video = args.batch_size, args.frames
    frames = torch.randn(batch, frames_per_video, args.feature_size)
    mask = None
    if args.padded:
        lengths = torch.randint(frames_per_video // 2, frames_per_video + 1, (batch,))
        mask = torch.arange(frames_per_video) < lengths[:, None]
        frames = frames * mask[..., None]

    print(f"B={batch} N={frames_per_video} D={args.feature_size} threads={args.threads} padded={args.padded}")
    print(f"{'layer':>16} {'K':>5} {'prec':>5} {'infer ms':>9} {'videos/s':>9} {'train ms':>9} {'videos/s':>9}")
    for name in args.layers:
        for clusters in args.clusters:
            layer = build(name, args.feature_size, clusters)
            for precision in args.precisions:
                autocast = (
                    torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
                )

                def infer() -> None:
                    with torch.no_grad(), autocast:
                        layer.eval()(frames, mask)

                def train() -> None:
                    with autocast:
                        out = layer.train()(frames, mask)
                    out.float().sum().backward()

                has_params = any(True for _ in layer.parameters())
                infer_s = median_seconds(infer, args.warmup, args.repeats)
                train_s = median_seconds(train, args.warmup, args.repeats) if has_params else float("nan")
                print(
                    f"{name:>16} {clusters:>5} {precision:>5} {infer_s * 1e3:>9.1f} {batch / infer_s:>9.0f} "
                    f"{train_s * 1e3:>9.1f} {batch / train_s:>9.0f}"
                )


if __name__ == "__main__":
    main()
