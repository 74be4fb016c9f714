"""NetFV, the trainable Fisher-vector encoding of WILLOW/LOUPE (Miech et al., "Learnable pooling with Context Gating
for video classification", arXiv 1706.06905)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.norm import intra_global_l2_normalize, l2_normalize
from videopool.layers.registry import register_pooling
from videopool.layers.soft_assignment import SoftAssignmentPooling


@register_pooling("netfv")
class NetFV(SoftAssignmentPooling):
    """First- and second-order soft-assignment statistics per cluster.

    With soft assignments ``a [B, N, K]``, ``s_k = Σ_n a_{n,k}``, ``S1 = xᵀa`` and ``S2 = (x⊙x)ᵀa`` (``[B, D, K]``,
    two bmms), per-cluster scales ``σ = covar_weights² + 1e-6`` (``covar_weights [D, K]`` ~ N(1, 1/D)) and
    centroids ``C`` (``cluster_weights2 [1, D, K]`` ~ N(0, 1/D), or ``coupling_factor · cluster_weights`` when
    ``couple_weights``):

        F1 = (S1 − s⊙C) / σ;                   intra-L2 over D; flatten d·K + k; global L2
        F2 = (S2 + s⊙C² − 2·S1⊙C) / σ² − s;    flatten; global L2
        v  = [F1, F2]

    The reference code applies no intra-normalisation to F2 (LOUPE issue #4); the released models were
    trained that way, so it is the default. ``second_order_intra_norm=True`` normalises each F2 cluster over D
    as the paper intends.

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, 2·D·K]``. Parameters: ``3·D·K + 2·K`` (BN, independent
    centroids), ``2·D·K + 2·K`` when coupled; a bias of K replaces the 2·K BN parameters without BN.
    """

    accepts_frame_affine = False  # S2 needs the squared mapped frames themselves

    def __init__(
        self,
        feature_size: int,
        cluster_size: int,
        add_batch_norm: bool = True,
        couple_weights: bool = False,
        coupling_factor: float = 0.01,
        second_order_intra_norm: bool = False,
    ) -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        init_std = 1.0 / math.sqrt(feature_size)
        self.covar_weights = nn.Parameter(1.0 + torch.randn(feature_size, cluster_size) * init_std)
        self.couple_weights = couple_weights
        self.coupling_factor = coupling_factor
        if couple_weights:
            self.register_parameter("cluster_weights2", None)
        else:
            self.cluster_weights2 = nn.Parameter(torch.randn(1, feature_size, cluster_size) * init_std)
        self.second_order_intra_norm = second_order_intra_norm
        self.output_size = 2 * feature_size * cluster_size

    def centroids(self) -> Tensor:
        """Centroids ``C [1, D, K]``: independent, or tied to the assignment weights when coupled."""
        if self.cluster_weights2 is None:
            return (self.coupling_factor * self.cluster_weights).unsqueeze(0)
        return self.cluster_weights2

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        frames = self.autocast_frames(frames)
        batch = frames.shape[0]
        assignment = self.assign(frames, mask)
        mass = assignment.sum(1, keepdim=True)  # s [B, 1, K]
        sigma = self.covar_weights.square() + 1e-6
        centroids = self.centroids()
        first = self.aggregate(frames, assignment)  # S1 [B, D, K]
        second = self.aggregate(frames.square(), assignment)  # S2 [B, D, K]

        second = (second + mass * centroids.square() - 2.0 * first * centroids) / sigma.square() - mass
        if self.second_order_intra_norm:
            second = intra_global_l2_normalize(second)
        else:
            second = l2_normalize(second.reshape(batch, -1), dim=1)

        first = intra_global_l2_normalize(torch.addcmul(first, mass, centroids, value=-1.0) / sigma)
        return torch.cat([first, second], dim=1)
