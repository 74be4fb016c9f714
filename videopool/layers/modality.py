"""One modality's path from frames to a pooled vector: its input batch norm, then its pooling layer."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.norm import MaskedBatchNorm1d


class ModalityPooling(nn.Module):
    """``y = pooling(BN(x · r), mask)``: the frames ``x [B, N, D]`` of one modality, scaled per frame by
    ``frame_scale r [B, N, 1]`` (the classifier's joint L2 normalisation, optional), batch-normalised over the real
    frames (``input_batch_norm``) and pooled. Returns ``[B, pooling.output_size]``.

    The normalisation is folded into the pooling where that gives the same function: when the pooling takes a
    :class:`~videopool.layers.affine.FrameAffine` and the batch norm is a fixed per-feature affine map (eval mode)
    or its batch statistics need no gradient (training on input frames, which never carry one), ``x · r · s + t``
    is handed to the pooling, which applies it to its small products instead of writing the normalised frames
    (see ``layers/affine.py``). Padded frames must be zero (the classifier zeroes them at its entrance).
    """

    def __init__(self, pooling: nn.Module, input_batch_norm: bool = True) -> None:
        super().__init__()
        self.feature_size = pooling.feature_size
        self.output_size = pooling.output_size
        self.input_norm = MaskedBatchNorm1d(self.feature_size) if input_batch_norm else None
        self.pooling = pooling

    def forward(self, frames: Tensor, mask: Tensor | None = None, frame_scale: Tensor | None = None) -> Tensor:
        if self.can_fold(frames, frame_scale):
            scale, shift = self._input_norm_affine(frames, mask, frame_scale)
            return self.pooling(frames, mask, affine=FrameAffine(frame_scale, scale, shift))
        if frame_scale is not None:
            frames = frames * frame_scale
        if self.input_norm is not None:
            frames = self.input_norm(frames.contiguous(), mask)
        return self.pooling(frames, mask)

    def can_fold(self, frames: Tensor | None = None, frame_scale: Tensor | None = None) -> bool:
        """Whether :meth:`forward` hands the normalisation to the pooling (for these frames) instead of applying it.

        Without ``frames`` the answer is for frames that need no gradient."""
        if not getattr(self.pooling, "accepts_frame_affine", False):
            return False
        if self.input_norm is None:
            return frame_scale is not None
        if self.input_norm.uses_running_stats():
            return True
        # Under torch.compile the masked BN's weighted-statistics path keeps the graph whole; stay on it.
        return (self.training and self.input_norm.track_running_stats and not torch.compiler.is_compiling()
                and (frames is None or not frames.requires_grad))

    def _input_norm_affine(self, frames: Tensor, mask: Tensor | None,
                           frame_scale: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """The input BN as ``(scale, shift)`` per feature, or ``(None, None)`` without input BN."""
        if self.input_norm is None:
            return None, None
        if self.input_norm.uses_running_stats():
            return self.input_norm.inference_affine()
        with torch.no_grad():  # the statistics are of the scaled frames
            scaled = frames if frame_scale is None else frames * frame_scale
        return self.input_norm.batch_affine(scaled, mask)
