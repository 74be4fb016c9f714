"""What ``evaluate`` and ``predict`` share: their inference options and the loader they build from them."""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch takes ~1.5 s to import; --help must not wait for it
    import torch


class LazyChoices(Sequence):
    """An argparse ``choices`` list read from the module that defines it only when a value is checked or help is
    printed: every subcommand's parser is built at start-up, and modules that import torch must not be loaded then."""

    def __init__(self, module: str, name: str) -> None:
        self._where = (module, name)

    @functools.cached_property
    def _choices(self) -> tuple[str, ...]:
        module, name = self._where
        return tuple(getattr(importlib.import_module(module), name))

    def __getitem__(self, index):
        return self._choices[index]

    def __len__(self) -> int:
        return len(self._choices)


def add_inference_options(p: argparse.ArgumentParser) -> None:
    """Frame sampling, batch size and the options of :func:`videopool.inference.run_inference`."""
    from videopool.core.precision import PRECISIONS

    p.add_argument("--sampling", choices=LazyChoices("videopool.inference.predict", "EVAL_SAMPLINGS"),
                   default="all", metavar="SAMPLING",
                   help="frames fed to the model (%(choices)s): all real frames with the mask (default, "
                        "deterministic), uniform, or random with replacement as the reference code does at test time")
    p.add_argument("--num-frames", type=int, default=None, help="frames per video (default: the training value)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
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
