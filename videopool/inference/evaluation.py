"""``evaluate(model, loader)``: the official metrics of a model on a loader of labelled batches, exact under DDP."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from videopool.core.distributed import DistributedContext, gather_objects
from videopool.metrics import StreamingEvaluator
from videopool.models.losses import binary_cross_entropy_per_video
from videopool.inference.predict import run_inference


def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    loss: str = "bce_sum",
    top_k: int = 20,
    ctx: DistributedContext | None = None,
    compile: bool = False,
    num_frames: int | None = None,
    keep_evaluator: bool = False,
) -> dict[str, Any]:
    """GAP@k, hit@1, PERR, mAP and mean loss of ``model`` over the batches of ``loader``.

    Under torchrun each rank passes the loader of its own shard (no padded duplicates); the evaluators are
    gathered and merged, so every rank returns the metrics of the whole data set. ``keep_evaluator`` adds the
    merged :class:`~videopool.metrics.StreamingEvaluator` under ``"evaluator"`` (for the precision-recall plot).
    ``precision``, ``compile`` and ``num_frames`` are those of :func:`~videopool.inference.run_inference`.
    """
    ctx = ctx or DistributedContext()
    evaluator = None
    for _, probabilities, labels in run_inference(model, loader, precision=precision, device=device,
                                                  compile=compile, num_frames=num_frames):
        evaluator = evaluator or StreamingEvaluator(labels.shape[1], top_k=top_k)
        per_video = binary_cross_entropy_per_video(probabilities, labels, loss, dtype=torch.float64)
        evaluator.update(probabilities.numpy(), labels.numpy(), loss=per_video.numpy())
    if evaluator is None:  # this rank's shard was empty: an empty evaluator merges as a no-op
        evaluator = StreamingEvaluator(model.output_size, top_k=top_k)
    states = gather_objects(evaluator.state_dict(), ctx)
    merged = StreamingEvaluator.from_state_dict(states[0])
    for state in states[1:]:
        merged.merge(state)
    if merged.num_videos == 0:
        raise ValueError("no video to evaluate: the data holds no readable video")
    if int(merged.class_positive_counts.sum()) == 0:  # a table of zeros would look like a result
        raise ValueError(f"no video has labels ({merged.num_videos} videos read): use `predict` for unlabelled data")
    results = merged.compute()
    if keep_evaluator:
        results["evaluator"] = merged
    return results
