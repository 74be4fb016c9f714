"""Evaluation over TFRecord globs with the shared inference path, exact under torchrun."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videopool.inference.predict import run_inference
from videopool.training.data import make_loader, resolve_workers
from videopool.training.distributed import DistributedContext, gather_objects
from videopool.training.losses import binary_cross_entropy_per_video


def evaluate(
    model: nn.Module,
    patterns,
    *,
    num_classes: int,
    batch_size: int = 256,
    sampling: str = "all",
    num_frames: int = 300,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
    ctx: DistributedContext | None = None,
    workers: int | None = None,
    loss: str = "bce_sum",
    top_k: int = 20,
    seed: int = 0,
    keep_evaluator: bool = False,
    compile: bool = False,
) -> dict[str, Any]:
    """GAP@k, hit@1, PERR, mAP and loss of ``model`` on ``patterns``, exact across DDP ranks.

    Each rank evaluates its own shard (no padded duplicates); the evaluators are gathered
    and merged, so every rank returns the metrics of the whole data set. With
    ``keep_evaluator`` the merged :class:`~videopool.metrics.StreamingEvaluator` is
    returned under ``"evaluator"`` (for the precision-recall plot). ``compile`` runs the model
    through ``torch.compile`` (see :func:`~videopool.inference.predict.run_inference`).
    """
    from videopool.metrics import StreamingEvaluator

    ctx = ctx or DistributedContext()
    loader = make_loader(patterns, num_classes=num_classes, batch_size=batch_size, strategy=sampling,
                         num_frames=num_frames, shuffle=False, seed=seed, workers=resolve_workers(workers, device),
                         rank=ctx.rank, world_size=ctx.world_size, what="evaluation data")
    evaluator = StreamingEvaluator(num_classes, top_k=top_k)
    for _, probabilities, labels in run_inference(model, loader, precision=precision, device=device,
                                                  compile=compile, num_frames=num_frames):
        per_video = binary_cross_entropy_per_video(probabilities, labels, loss, dtype=torch.float64)
        evaluator.update(probabilities.numpy(), labels.numpy(), loss=per_video.numpy())
    states = gather_objects(evaluator.state_dict(), ctx)
    merged = StreamingEvaluator.from_state_dict(states[0])
    for state in states[1:]:
        merged.merge(state)
    results = merged.compute()
    if keep_evaluator:
        results["evaluator"] = merged
    return results
