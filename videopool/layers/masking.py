"""The frame and mask checks every pooling layer shares, and means/maxima over real frames only."""

from __future__ import annotations

import torch
from torch import Tensor


def prepare_frames(
    frames: Tensor, mask: Tensor | None, feature_size: int, layer: str
) -> tuple[Tensor, Tensor | None]:
    """Validate ``frames [B, N, D]`` and ``mask [B, N]``; return contiguous frames and a bool mask or None.

    An all-True mask becomes None so the layers take their unmasked fast path; contiguous frames keep the
    matmuls and batch norms off slow strided paths (a per-modality slice of the 1152-d input is strided).
    """
    if frames.dim() != 3 or frames.shape[-1] != feature_size:
        raise ValueError(f"{layer} expects frames of shape [B, N, {feature_size}], got {tuple(frames.shape)}")
    frames = frames.contiguous()
    if mask is None:
        return frames, None
    if mask.shape != frames.shape[:2]:
        raise ValueError(f"{layer}: mask shape {tuple(mask.shape)} does not match frames {tuple(frames.shape[:2])}")
    mask = mask.to(torch.bool)
    if torch.compiler.is_compiling():  # a data-dependent branch would break the graph; masks cost little
        return frames, mask
    return frames, (None if bool(mask.all()) else mask)


def zero_padding(frames: Tensor, mask: Tensor | None) -> Tensor:
    """``frames [B, N, D]`` with every padded frame (mask False) set to exactly 0, whatever it held (inf, NaN)."""
    if mask is None or (not torch.compiler.is_compiling() and bool(mask.all())):
        return frames
    return frames.masked_fill(~mask.unsqueeze(-1), 0.0)


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over axis 1 of ``values [B, N, C]`` counting real frames only; a video without frames gives 0."""
    if mask is None:
        return values.mean(1)
    # where() instead of a multiply: padded garbage (even inf/nan) must not reach the sum.
    total = torch.where(mask.unsqueeze(-1), values, 0.0).sum(1)
    count = mask.sum(1, keepdim=True).clamp_min(1)
    return total / count.to(total.dtype)


def masked_max(values: Tensor, mask: Tensor | None) -> Tensor:
    """Max over axis 1 of ``values [B, N, C]`` over real frames only; a video without frames gives 0."""
    if mask is None:
        return values.amax(1)
    lowest = torch.finfo(values.dtype).min
    best = torch.where(mask.unsqueeze(-1), values, lowest).amax(1)
    return torch.where(mask.any(1, keepdim=True), best, 0.0)
