"""Soft assignment of frames to clusters: the base of NetVLAD, NetRVLAD, NetFV and the Soft-DBoW layers."""

from __future__ import annotations

import torch
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.projection import ClusterProjection


class SoftAssignmentPooling(ClusterProjection):
    """Base class: soft assignment of every frame to ``K`` clusters.

    ``a = softmax_k(BN(x W_a))`` with ``W_a = cluster_weights [D, K]`` ~ N(0, 1/D) and ``cluster_bn`` a
    :class:`MaskedBatchNorm1d` over K whose statistics use real frames only. With ``add_batch_norm=False`` the BN
    is replaced by a bias ``cluster_biases [K]`` ~ N(0, 1/D). Padded frames get ``a = 0``.
    The TF layout ``[in, out]`` is kept (``x @ W``) so TF checkpoints load by name.
    """

    accepts_frame_affine = True

    @staticmethod
    def autocast_frames(frames: Tensor) -> Tensor:
        """The frames in the autocast dtype, cast once: they feed two matmuls (assignment and aggregation), and
        letting autocast cast them for each would convert the largest activation twice."""
        device = frames.device.type
        if torch.is_autocast_enabled(device) and frames.is_floating_point():
            return frames.to(torch.get_autocast_dtype(device))
        return frames

    def assign(self, frames: Tensor, mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        """Soft assignments ``a [B, N, K]`` of ``frames [B, N, D]`` (mapped by ``affine``), ``a = 0`` on padding."""
        batch, num_frames, _ = frames.shape
        rows = frames.reshape(batch * num_frames, self.feature_size)
        row_mask = None if mask is None else mask.reshape(-1)
        assignment = torch.softmax(self.project(rows, row_mask, affine), dim=-1)
        if row_mask is not None:
            assignment = assignment.masked_fill(~row_mask.unsqueeze(1), 0.0)
        return assignment.view(batch, num_frames, self.cluster_size)

    def aggregate(self, frames: Tensor, assignment: Tensor, affine: FrameAffine | None = None,
                  centroids: Tensor | None = None) -> Tensor:
        """``S_{d,k} = Σ_n (x_{n,d} − c_{d,k}) a_{n,k}`` as one bmm: ``[B, D, K]`` (never a B×N×K×D tensor).

        ``centroids c [1, D, K]`` are optional (zero without). With ``affine``, ``x`` is the mapped frames ``z``
        (computed without writing ``z`` out).
        """
        if affine is not None:
            return affine.weighted_sum(frames, assignment, centroids)
        total = torch.bmm(frames.transpose(1, 2), assignment)
        if centroids is None:
            return total
        return torch.addcmul(total, assignment.sum(1, keepdim=True), centroids, value=-1.0)
