"""Losses on class probabilities (the models end in a sigmoid/MoE, not in logits).

TF1 starter code / WILLOW::

    L = mean_b  Σ_c  -[ y·log(p + ε) + (1 - y)·log(1 - p + ε) ],   ε = 1e-5

summed over classes ("bce_sum"); the TF2 starter code and CESHINE average over classes instead
("bce_mean"), which makes the loss ~V times smaller and changes how much the L2
regularizers and gradient clipping weigh.
"""

from __future__ import annotations

import torch

LOSSES = ("bce_sum", "bce_mean")


def binary_cross_entropy_per_video(
    probabilities: torch.Tensor, labels: torch.Tensor, reduction: str = "bce_sum", epsilon: float = 1e-5,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-video BCE ``[B]`` of ``probabilities [B, V]`` against multi-hot ``labels [B, V]``.

    ``reduction`` is ``"bce_sum"`` (sum over classes; TF1) or ``"bce_mean"`` (mean over
    classes). Computed in ``dtype`` (float32; evaluation uses float64 so that the loss
    does not depend on how videos were grouped into batches or ranks).
    """
    if reduction not in LOSSES:
        raise ValueError(f"unknown loss {reduction!r}; choose one of {', '.join(LOSSES)}")
    p = probabilities.to(dtype)
    y = labels.to(dtype)
    # ε inside the logs (not clamping) so the values match the TF1 graph exactly.
    per_element = -(y * torch.log(p + epsilon) + (1 - y) * torch.log(1 - p + epsilon))
    return per_element.sum(dim=1) if reduction == "bce_sum" else per_element.mean(dim=1)


def binary_cross_entropy_on_probabilities(
    probabilities: torch.Tensor, labels: torch.Tensor, reduction: str = "bce_sum", epsilon: float = 1e-5
) -> torch.Tensor:
    """The training loss: :func:`binary_cross_entropy_per_video` averaged over the batch (float32)."""
    return binary_cross_entropy_per_video(probabilities, labels, reduction, epsilon).mean()
