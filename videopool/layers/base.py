"""The base class of every pooling layer: one ``forward`` contract, one place for its edge cases."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.masking import prepare_frames


class FramePooling(nn.Module):
    """``forward(frames [B, N, D], mask [B, N] | None) -> [B, output_size]``; subclasses implement :meth:`pool`.

    ``forward`` validates the shapes, turns an all-True mask into None (the unmasked fast path) and returns zeros
    for a batch without frames (``N = 0``), so :meth:`pool` always sees at least one frame per batch. Layers that
    set ``accepts_frame_affine`` also take ``affine=`` (a :class:`~videopool.layers.affine.FrameAffine` applied to
    the frames lazily) and implement ``pool(frames, mask, affine)``.
    """

    feature_size: int
    output_size: int
    accepts_frame_affine = False

    def forward(self, frames: Tensor, mask: Tensor | None = None, affine: FrameAffine | None = None) -> Tensor:
        frames, mask = prepare_frames(frames, mask, self.feature_size, type(self).__name__)
        if frames.shape[1] == 0:
            return frames.new_zeros(frames.shape[0], self.output_size)
        if affine is None:
            return self.pool(frames, mask)
        if not self.accepts_frame_affine:
            raise TypeError(f"{type(self).__name__} does not take a FrameAffine; apply it to the frames first")
        return self.pool(frames, mask, affine)

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError
