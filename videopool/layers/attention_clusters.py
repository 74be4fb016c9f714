"""Attention clusters with the shifting operation (Long et al., "Attention Clusters: Purely Attention Based Local
Feature Integration for Video Classification", arXiv 1711.09550), as Kmiec, Bae & An use them ("Learnable Pooling
Methods for Video Classification", arXiv 1810.00530, §2.1, Eq. 1; released code: pomonam/LearnablePoolingMethods
``OneFcAttention``, pomonam/AttentionCluster)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.base import FramePooling
from videopool.layers.masking import zero_padding
from videopool.layers.norm import l2_normalize
from videopool.layers.registry import register_pooling


@register_pooling("attention_clusters")
class AttentionClusters(FramePooling):
    """``C`` attention clusters over the frames, each shifted and normalised, concatenated.

    With frames ``x [B, N, F]`` (padding ``m = 0``) and ``C = cluster_size`` clusters::

        e      = x W / sqrt(F)                                 [B, N, C]   one FC (``hidden_size=None``)
        e      = ReLU(x W_1 + b_1) W_2 / sqrt(F)               [B, N, C]   two-layer FFN (``hidden_size=H``)
        a_{:,k} = softmax_n(e_{:,k})  over the real frames     [B, N, C]   a = 0 on padding
        o_k    = Σ_n a_{n,k} x_n                                [B, C, F]   attention-weighted sum
        ψ_k    = (α_k o_k + β_k) / (sqrt(C) ‖α_k o_k + β_k‖)               shifting operation (Eq. 1)
        v      = [ψ_1, …, ψ_C]                                  [B, C·F]    cluster-major: index k·F + f

    ``α, β [C]`` start at 1 and 0.01 (one pair per cluster, as in Long et al.; ``shared_shift=True`` uses one
    scalar pair for all clusters, as ``OneFcAttention`` does). ``β`` must start non-zero: with ``β = 0`` the
    shift is scale invariant and ``α`` gets no gradient. ``v`` has norm 1 (each ψ_k has norm ``1/sqrt(C)``).
    ``W [F, C]`` (and ``W_1 [F, H]``, ``W_2 [H, C]``) are Glorot-uniform, ``b_1 = 0``.

    Not reproduced from pomonam/AttentionCluster (spec §4.14, P21): its softmax over the *cluster* axis, its
    batch norm and dropout on the logits, the per-cluster L2 before the shift and the final global L2; and
    it attends to the padded rows. Here the softmax runs over the real frames only, as in the paper.

    Shapes: ``frames [B, N, F]``, ``mask [B, N]`` → ``[B, C·F]``. Parameters ``F·C + 2C`` (one FC, per-cluster
    shift); ``F·H + H + H·C + 2C`` with the FFN. A video without real frames gives zeros. Orderless.
    """

    def __init__(self, feature_size: int, cluster_size: int, hidden_size: int | None = None,
                 shared_shift: bool = False) -> None:
        super().__init__()
        if feature_size < 1 or cluster_size < 1 or (hidden_size is not None and hidden_size < 1):
            raise ValueError(f"feature_size, cluster_size and hidden_size must be positive, got "
                             f"{feature_size}, {cluster_size}, {hidden_size}")
        self.feature_size = feature_size
        self.cluster_size = cluster_size
        self.hidden_size = hidden_size
        self.shared_shift = shared_shift
        self.output_size = feature_size * cluster_size
        if hidden_size is None:
            self.attention_weights = nn.Parameter(nn.init.xavier_uniform_(torch.empty(feature_size, cluster_size)))
            self.register_parameter("hidden_weights", None)
            self.register_parameter("hidden_biases", None)
        else:
            self.hidden_weights = nn.Parameter(nn.init.xavier_uniform_(torch.empty(feature_size, hidden_size)))
            self.hidden_biases = nn.Parameter(torch.zeros(hidden_size))
            self.attention_weights = nn.Parameter(nn.init.xavier_uniform_(torch.empty(hidden_size, cluster_size)))
        shifts = 1 if shared_shift else cluster_size
        self.alpha = nn.Parameter(torch.ones(shifts))
        self.beta = nn.Parameter(torch.full((shifts,), 0.01))

    def attention(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        """Attention weights ``a [B, N, C]``: a softmax over the real frames of every video, 0 on padding."""
        hidden = frames
        if self.hidden_weights is not None:
            hidden = torch.relu(torch.addmm(self.hidden_biases, frames.flatten(0, 1), self.hidden_weights))
            hidden = hidden.view(*frames.shape[:2], -1)
        logits = (hidden @ self.attention_weights) * (1.0 / math.sqrt(self.feature_size))
        if mask is None:
            return torch.softmax(logits, dim=1)
        real = mask.unsqueeze(-1)
        # finfo.min, not -inf: a video without real frames stays finite (and is zeroed below)
        logits = logits.masked_fill(~real, torch.finfo(logits.dtype).min)
        return torch.where(real, torch.softmax(logits, dim=1), 0.0)

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        frames = zero_padding(frames, mask)
        attention = self.attention(frames, mask)
        pooled = torch.bmm(attention.transpose(1, 2), frames)  # [B, C, F]
        alpha, beta = self.alpha.view(1, -1, 1), self.beta.view(1, -1, 1)
        shifted = l2_normalize(alpha * pooled + beta, dim=-1) * (1.0 / math.sqrt(self.cluster_size))
        if mask is not None:  # a video without real frames: zeros, not the normalised shift β/|β|
            shifted = torch.where(mask.any(1).view(-1, 1, 1), shifted, 0.0)
        return shifted.reshape(frames.shape[0], self.output_size)

    def extra_repr(self) -> str:
        return (f"{self.feature_size}, clusters={self.cluster_size}, hidden_size={self.hidden_size}, "
                f"shared_shift={self.shared_shift}")
