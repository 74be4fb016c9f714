"""Soft Deep Bag-of-Words (WILLOW ``SoftDBoF``, LOUPE ``SoftDBoW``) and its gated variant
(Miech et al., arXiv 1706.06905)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.norm import MaskedBatchNorm1d, l2_normalize
from videopool.layers.registry import register_pooling
from videopool.layers.soft_assignment import SoftAssignmentPooling


@register_pooling("soft_dbow")
class SoftDBoW(SoftAssignmentPooling):
    """Soft histogram of cluster assignments.

    With soft assignments ``a [B, N, K]`` (see :class:`SoftAssignmentPooling`):

        v = L2(Σ_n a_n)                        (K)
        v = [L2(Σ_n a_n), L2(max_n a_n)]       (2K, with ``max_pool=True``)

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, K]`` or ``[B, 2K]``. Parameters: ``D·K + 2·K`` (BN) or
    ``D·K + K`` (bias). Padded frames have zero assignment, which never wins the max since real ones are > 0.
    """

    def __init__(
        self, feature_size: int, cluster_size: int, add_batch_norm: bool = True, max_pool: bool = False
    ) -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        self.max_pool = max_pool
        self.output_size = 2 * cluster_size if max_pool else cluster_size

    def pool(self, frames: Tensor, mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        assignment = self.assign(self.autocast_frames(frames), mask, affine)
        histogram = l2_normalize(assignment.sum(1), dim=1)
        if not self.max_pool:
            return histogram
        return torch.cat([histogram, l2_normalize(assignment.amax(1), dim=1)], dim=1)


@register_pooling("gated_soft_dbow")
class GatedSoftDBoW(SoftAssignmentPooling):
    """Soft-DBoW histogram re-weighted by a gate computed from the max-pooled assignments (WILLOW ``GatedDBoF``).

        s = Σ_n a_n                                      (unnormalised histogram, K)
        m = L2(max_n a_n)
        g = sigmoid(BN₂((m R) W₂))                       (R = dim_red [K, D], W₂ = cluster_weights_2 [D, K])
        v = L2(g ⊙ s)

    ``R`` and ``W₂`` are initialised N(0, 1/D). ``cluster_bn_2`` normalises over the videos of the batch (one row
    per video, so no mask is involved); without BN it is a bias ``cluster_biases_2 [K]`` ~ N(0, 1/D).

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, K]``. Parameters: ``3·D·K + 4·K`` (BN) or
    ``3·D·K + 2·K`` (biases).
    """

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool = True) -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        init_std = 1.0 / math.sqrt(feature_size)
        self.dim_red = nn.Parameter(torch.randn(cluster_size, feature_size) * init_std)
        self.cluster_weights_2 = nn.Parameter(torch.randn(feature_size, cluster_size) * init_std)
        if add_batch_norm:
            self.cluster_bn_2 = MaskedBatchNorm1d(cluster_size)
            self.register_parameter("cluster_biases_2", None)
        else:
            self.cluster_bn_2 = None
            self.cluster_biases_2 = nn.Parameter(torch.randn(cluster_size) * init_std)
        self.output_size = cluster_size

    def pool(self, frames: Tensor, mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        assignment = self.assign(self.autocast_frames(frames), mask, affine)
        histogram = assignment.sum(1)
        gate = l2_normalize(assignment.amax(1), dim=1) @ self.dim_red @ self.cluster_weights_2
        if self.cluster_bn_2 is not None:
            gate = self.cluster_bn_2(gate)
        else:
            gate = gate + self.cluster_biases_2
        return l2_normalize(torch.sigmoid(gate) * histogram, dim=1)
