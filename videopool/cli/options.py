"""What ``evaluate`` and ``predict`` share: their inference options and the loader they build from them."""

from __future__ import annotations

import argparse
from typing import Any

import torch


def add_inference_options(p: argparse.ArgumentParser) -> None:
    """Frame sampling, batch size and the options of :func:`videopool.inference.run_inference`."""
    p.add_argument("--sampling", choices=["all", "uniform", "random"], default="all",
                   help="frames fed to the model: all real frames with the mask (default, deterministic), "
                        "uniform, or random with replacement as the reference code does at test time")
    p.add_argument("--num-frames", type=int, default=None, help="frames per video (default: the training value)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="fp32",
                   help="fp32 (default, exact) or bf16 weights (faster where bf16 matmuls are, e.g. AMX or GPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loading processes (default: 0 on a CPU machine with <= 2 cores, else 1)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile: a few seconds to compile, then up to ~15%% faster "
                        "on CPU for large runs (batches are padded to --num-frames)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sampling random")


def inference_loader(args: argparse.Namespace, info: dict[str, Any], device: torch.device):
    """``(loader over --data, frames per video)`` for a checkpoint whose metadata is ``info``."""
    from videopool.data.loader import make_loader
    from videopool.inference.predict import inference_num_frames

    num_frames = inference_num_frames(args.sampling, args.num_frames, info.get("train_config", {}).get("num_frames"))
    loader = make_loader(args.data, num_classes=int(info["num_classes"]), batch_size=args.batch_size,
                         strategy=args.sampling, num_frames=num_frames, shuffle=False, seed=args.seed,
                         workers=args.workers, device=device, what="--data")
    return loader, num_frames
