"""NetVLAD ("NetVLAD: CNN architecture for weakly supervised place recognition", arXiv 1511.07247) as the
YouTube-8M winners use it on frame features (WILLOW, LOUPE; "Learnable pooling with Context Gating for video
classification", arXiv 1706.06905)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.norm import intra_global_l2_normalize
from videopool.layers.registry import register_pooling
from videopool.layers.soft_assignment import SoftAssignmentPooling


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

    def pool(self, frames: Tensor, mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        frames = self.autocast_frames(frames)
        residuals = self.aggregate(frames, self.assign(frames, mask, affine), affine, self.cluster_weights2)
        return intra_global_l2_normalize(residuals)
