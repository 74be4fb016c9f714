"""A/B of cheap ideas for the bf16 training step, timed round-robin in one process (shared noise).

    python benchmarks/ab_step.py                       # gated NetVLAD K=64, batch 32 x 150 frames, V = 3,862

Variants (all TrainStep, bf16 master weights unless named fp32):
- ``fp32``: the fp32 step (the reference the bf16 path must beat on machines where it is chosen);
- ``bf16``: the bf16 step with float32 frames (what the loader hands over today);
- ``bf16 frames``: the same with the frames already bf16, as a collate that dequantised uint8 straight to bf16
  would give (saves the model's one cast of the largest input, and half the frame bytes);
- ``bf16 no clip``: clipping off — not a proposal (it changes the recipe), but the most any faster clipping
  (fused with the gradient cast and Adam) could save.
Prints the median step time of each and its ratio to ``bf16``; then the largest difference of the bf16-frame
variant's outputs from the float32-frame variant's on the same batch (they should agree to bf16 rounding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from videopool.models import create_model
from videopool.training.step import TrainStep, prepare_bf16

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from profile_step import cpu_flags  # noqa: E402


def make(name: str, k: int, v: int, precision: str, clip: float) -> tuple:
    torch.manual_seed(0)
    model = create_model(name, num_classes=v, cluster_size=k).train()
    step = TrainStep(model, precision=precision, device=torch.device("cpu"), learning_rate=2e-4,
                     master=prepare_bf16(model, precision, "master_weights"), clip_gradient_norm=clip)
    return model, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gated_netvlad_256")
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-frames", type=int, default=150)
    parser.add_argument("--num-classes", type=int, default=3862)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b, n, v = args.batch_size, args.num_frames, args.num_classes
    print(f"CPU: {cpu_flags()}; {args.threads} thread(s); {args.model} K={args.clusters}, batch {b} x {n}, V={v}")
    variants = {"fp32": make(args.model, args.clusters, v, "fp32", 1.0),
                "bf16": make(args.model, args.clusters, v, "bf16", 1.0),
                "bf16 frames": make(args.model, args.clusters, v, "bf16", 1.0),
                "bf16 no clip": make(args.model, args.clusters, v, "bf16", 0.0)}
    model = variants["fp32"][0]
    frames32 = {m: torch.rand(b, n, size) * 4 - 2 for m, size in model.config.modalities.items()}
    frames16 = {m: x.to(torch.bfloat16) for m, x in frames32.items()}
    mask = torch.ones(b, n, dtype=torch.bool)
    labels = (torch.rand(b, v) < 3 / v).float()
    inputs = {name: frames16 if name == "bf16 frames" else frames32 for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds + 1):  # round 0 warms up
        for name, (_, step) in variants.items():
            start = time.perf_counter()
            step(inputs[name], mask, labels)
            if round_index:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["bf16"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:14s} {median * 1e3:8.1f} ms/step  {b / median:7.1f} videos/s  x{base / median:5.2f} vs bf16  "
              f"(min {min(values) * 1e3:.1f}, max {max(values) * 1e3:.1f} ms)")
    # the same weights, float32 vs bf16 frames: the outputs must agree to bf16 rounding
    check = variants["bf16"][0].eval()
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        a, c = check(frames32, mask).float(), check(frames16, mask).float()
    print(f"bf16 frames vs float32 frames, same model: max |diff| of probabilities {float((a - c).abs().max()):.2e}")


if __name__ == "__main__":
    main()
