"""NetVLAD (Arandjelović et al. 2016) as used by the YouTube-8M winners (WILLOW / LOUPE), spec §4.1.

Also home of :class:`SoftAssignmentPooling`, the soft cluster assignment shared by NetVLAD, NetRVLAD, NetFV and
the Soft-DBoW layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.norm import intra_global_l2_normalize
from videopool.layers.projection import ClusterProjection
from videopool.layers.registry import register_pooling
from videopool.layers.simple import prepare_frames


class SoftAssignmentPooling(ClusterProjection):
    """Base class: soft assignment of every frame to ``K`` clusters.

    ``a = softmax_k(BN(x W_a))`` with ``W_a = cluster_weights [D, K]`` ~ N(0, 1/D) and ``cluster_bn`` a
    :class:`MaskedBatchNorm1d` over K whose statistics use real frames only. With ``add_batch_norm=False`` the BN
    is replaced by a bias ``cluster_biases [K]`` ~ N(0, 1/D). Padded frames get ``a = 0``.
    The TF layout ``[in, out]`` is kept (``x @ W``) so TF checkpoints load by name.
    """

    def prepare(self, frames: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Validated contiguous frames and mask; under autocast the frames are cast once, here.

        The frames feed two matmuls (assignment and aggregation); letting autocast cast them for each would
        convert the largest activation twice.
        """
        frames, mask = prepare_frames(frames, mask, self.feature_size, type(self).__name__)
        device = frames.device.type
        if torch.is_autocast_enabled(device) and frames.is_floating_point():
            frames = frames.to(torch.get_autocast_dtype(device))
        return frames, mask

    #: ``forward`` takes ``affine=`` (a :class:`FrameAffine` of the frames, applied lazily); see ``layers/affine.py``.
    accepts_frame_affine = True

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


@register_pooling("netvlad")
class NetVLAD(SoftAssignmentPooling):
    """NetVLAD with independent centroids (WILLOW/LOUPE).

    With soft assignments ``a [B, N, K]`` (see :class:`SoftAssignmentPooling`), ``s_k = Σ_n a_{n,k}`` and
    centroids ``C = cluster_weights2 [1, D, K]`` ~ N(0, 1/D):

        R_{d,k} = Σ_n a_{n,k} x_{n,d} − s_k C_{d,k}        (computed as ``xᵀa − s⊙C``, a bmm)
        R_{:,k} ← L2(R_{:,k})                              (intra-normalisation over D, per cluster)
        v = L2(flatten(R))                                 (feature-major: index d·K + k)

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, D·K]``. Parameters: ``2·D·K + 2·K`` (BN) or
    ``2·D·K + K`` (bias). Padded frames have zero assignment and do not enter the BN statistics.
    """

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool = True) -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        self.cluster_weights2 = nn.Parameter(torch.randn(1, feature_size, cluster_size) / math.sqrt(feature_size))
        self.output_size = feature_size * cluster_size

    def forward(self, frames: Tensor, mask: Tensor | None = None, affine: FrameAffine | None = None) -> Tensor:
        frames, mask = self.prepare(frames, mask)
        residuals = self.aggregate(frames, self.assign(frames, mask, affine), affine, self.cluster_weights2)
        return intra_global_l2_normalize(residuals)
