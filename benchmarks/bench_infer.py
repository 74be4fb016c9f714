"""Inference throughput of a named model on a fixed random batch: fp32 weights and bf16 weights.

    python benchmarks/bench_infer.py                      # gated NetVLAD K=64 and K=256, V=3862, batch 64 x 300
    python benchmarks/bench_infer.py --clusters 64 --batch-size 256
    python benchmarks/bench_infer.py --compile            # adds the torch.compile rows (a few seconds to compile)

bf16 runs a bf16 copy of the model (:func:`videopool.inference.bf16_copy`, the path
``evaluate``/``predict --precision bf16`` take); ``--autocast`` adds the autocast variant
for comparison. Target: bf16 weights >= 2.5x TF's best, which was measured at about 510 / 220 videos/s
(K=64 / K=256) on a 2-vCPU Sapphire Rapids VM with AMX.

If TensorFlow is importable, the same model in TF2 (``tf_gated_netvlad.py``, a ``tf.function``; fp32 and the
``mixed_bfloat16`` scheme) is timed in the same rounds, and every torch row gets its ratio to the TF2 row of the
same precision (``torch/TF``); otherwise the TF2 reference figures measured on that VM are printed.

All runners of one cluster size are timed round-robin (one batch each per round, after their warm-up), so
TensorFlow and torch share the machine's drift instead of being timed minutes apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from videopool.core.malloc import tune_malloc

tune_malloc()

import torch  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_train import (  # noqa: E402
    bench_group,
    forward_flops_per_video,
    matmul_ceiling,
    peak_rss_gb,
    start,
    tfg,
)

from videopool.inference.predict import bf16_copy, static_frame_count  # noqa: E402
from videopool.models import create_model  # noqa: E402


class TorchRunner:
    """One inference batch of a torch model per call; returns its seconds."""

    def __init__(self, model, frames, mask, autocast: bool) -> None:
        self.model, self.frames, self.mask, self.autocast = model, frames, mask, autocast
        self.times: list[float] = []

    def __call__(self) -> float:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            start = time.perf_counter()
            self.model(self.frames, self.mask)
            return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gated_netvlad_256")
    p.add_argument("--clusters", type=int, nargs="+", default=[64, 256])
    p.add_argument("--num-classes", type=int, default=3862)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-frames", type=int, default=300)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                   help="TF2 precisions timed when TensorFlow is installed (bf16 = mixed_bfloat16)")
    p.add_argument("--autocast", action="store_true", help="also time fp32 weights under bf16 autocast")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models (as --compile runs them)")
    p.add_argument("--also", nargs="*", default=[], metavar="MODEL",
                   help="named models timed at their own sizes (fp32 and bf16 weights) in the same round-robin, "
                        "e.g. nextvlad_k128_g8; their speed relative to --model is printed")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--min-steps", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--min-seconds", type=float, default=8.0, help="per runner")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    compare_tf = start(args, "K=64 fp32 509.9 / bf16 491.7, K=256 fp32 178.8 / bf16 219.7")
    ceilings = {"fp32": matmul_ceiling(torch.float32), "bf16": matmul_ceiling(torch.bfloat16)}
    print(f"matmul ceiling (this run): fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.0f} GFLOP/s")
    print(f"{'K':>4} {'mode':>26} {'videos/s':>9} {'batch s':>8} {'GFLOP/video':>11} {'% own ceil':>10} "
          f"{'peak RSS GB':>11} {'torch/TF':>8}")
    for clusters in args.clusters:
        b, n = args.batch_size, args.num_frames
        flops = forward_flops_per_video(
            create_model(args.model, num_classes=args.num_classes, cluster_size=clusters, device="meta").config, n)
        rows = []  # (label, ceiling, runner)
        for precision in args.precisions if compare_tf else []:
            rows.append((f"TF2 {precision}", precision,
                         tfg.InferRunner(clusters, args.num_classes, precision, b, n)))
        torch.manual_seed(0)
        model = create_model(args.model, num_classes=args.num_classes, cluster_size=clusters).eval()
        frames = {name: torch.rand(b, n, size) * 4 - 2 for name, size in model.config.modalities.items()}
        mask = torch.ones(b, n, dtype=torch.bool)
        rows.append(("fp32", "fp32", TorchRunner(model, frames, mask, False)))
        if args.autocast:
            rows.append(("bf16 autocast", "bf16", TorchRunner(model, frames, mask, True)))
        bf16_frames = {k: v.bfloat16() for k, v in frames.items()}
        bf16_model = bf16_copy(model)
        rows.append(("bf16 weights", "bf16", TorchRunner(bf16_model, bf16_frames, mask, False)))
        if args.compile:  # as run_inference(compile=True) does it: fixed frame count, dynamic batch size
            for label, ceiling, runner_model, inputs in (("fp32 compiled", "fp32", model, frames),
                                                         ("bf16w compiled", "bf16", bf16_model, bf16_frames)):
                static_inputs, static_mask = static_frame_count(inputs, mask, n)
                rows.append((label, ceiling, TorchRunner(torch.compile(runner_model), static_inputs, static_mask,
                                                         False)))
        for name in args.also:
            torch.manual_seed(0)
            other = create_model(name, num_classes=args.num_classes).eval()
            other_frames = {m: torch.rand(b, n, size) * 4 - 2 for m, size in other.config.modalities.items()}
            other_flops = forward_flops_per_video(other.config, n)
            rows.append((f"{name} fp32", "fp32", TorchRunner(other, other_frames, mask, False), other_flops))
            rows.append((f"{name} bf16w", "bf16", TorchRunner(bf16_copy(other), {k: v.bfloat16() for k, v in
                                                                                  other_frames.items()}, mask, False),
                         other_flops))
        rows = [row if len(row) == 4 else (*row, flops) for row in rows]
        bench_group(args, [runner for _, _, runner, _ in rows])
        seconds = [statistics.median(runner.times) for _, _, runner, _ in rows]
        tf_speed = {ceiling: b / s for (label, ceiling, _, _), s in zip(rows, seconds) if label.startswith("TF2")}
        base_speed = {ceiling: b / s for (label, ceiling, _, _), s in zip(rows, seconds)
                      if label in ("fp32", "bf16 weights")}
        for (label, ceiling, _, row_flops), s in zip(rows, seconds):
            ratio = f"{b / s / tf_speed[ceiling]:.2f}" if ceiling in tf_speed and not label.startswith("TF2") else ""
            print(f"{clusters:>4} {label:>26} {b / s:>9.1f} {s:>8.3f} {row_flops / 1e9:>11.3f} "
                  f"{100 * row_flops * b / s / 1e9 / ceilings[ceiling]:>9.1f}% {peak_rss_gb():>11.2f} {ratio:>8}",
                  flush=True)
            if any(label.startswith(name + " ") for name in args.also):
                print(f"     {label} / {args.model} K={clusters} {ceiling} (same run): "
                      f"{b / s / base_speed[ceiling]:.2f}x", flush=True)
        del rows, model, bf16_model
    return 0


if __name__ == "__main__":
    sys.exit(main())
