"""NeXtVLAD (Lin, Xiao & Fan, "NeXtVLAD: An Efficient Neural Network to Aggregate Frame-level Features for
Large-scale Video Classification", arXiv 1811.05014), the best single model of the 2nd YouTube-8M challenge,
as its reference code (linrongc/youtube-8m ``nextvlad.NeXtVLAD``) computes it."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.base import FramePooling
from videopool.layers.initializers import variance_scaling_
from videopool.layers.norm import MaskedBatchNorm1d, l2_normalize
from videopool.layers.registry import register_pooling


@register_pooling("nextvlad")
class NeXtVLAD(FramePooling):
    """NeXtVLAD: expand each frame, split it into ``G`` groups, and aggregate the groups' VLAD residuals with a
    learnt per-group attention; batch norm instead of NetVLAD's final L2.

    With frames ``x [B, N, D]``, expansion ``λ``, ``G`` groups of ``F = λD/G`` features and ``K`` clusters::

        ẋ   = x W_e + b_e                                 [B, N, λD]    expansion FC (no activation)
        α_g = σ(ẋ W_g + b_g) ⊙ m                          [B, N, G]     group attention, 0 on padding
        a   = softmax_k(BN(ẋ W_a) as [B, N, G, K]) ⊙ α    [B, N·G, K]   row n·G + g
        x̃   = ẋ as [B, N·G, F]                                          group g of frame n = ẋ[g·F:(g+1)·F]
        R_{f,k} = Σ_{n,g} a_{ng,k} (x̃_{ng,f} − C_{f,k})   [B, F, K]     one bmm, ``x̃ᵀa − s⊙C``
        R_{:,k} ← L2(R_{:,k})                                           intra-normalisation over F
        v   = BN(flatten(R))                              [B, F·K]      feature-major f·K + k (``vlad_bn``)

    ``m`` is the mask; ``W_a = cluster_weights [λD, G·K]`` (column g·K + k) has no bias, its ``cluster_bn``
    normalises the ``G·K`` logits of every frame row; ``C = cluster_weights2 [1, F, K]``; ``vlad_bn`` normalises
    the ``F·K`` descriptor over the videos of the batch. There is no L2 after the aggregation (paper §3.2,
    reference code). Parameters: ``D·λD + λD + λD·G + G + λD·G·K + 2·G·K + F·K + 2·F·K``.

    **Padding.** By default a padded frame has zero attention, so it adds nothing to ``R``, and it is left out of
    ``cluster_bn``'s batch statistics (the paper's intent: the mask marks frames that do not exist). The
    reference masks only the attention: in training its ``cluster_bn`` statistics include the padded rows of its
    fixed 300-frame input (zero frames there, so rows ``BN(b_e W_a)``). ``padded_frames_in_batch_norm=True``
    reproduces that (padded rows enter the statistics as given; ``VideoClassifier`` zeroes them, and the
    reference always pads to 300 frames, so use batches padded to 300 for identical statistics). In eval mode
    both settings compute the same function, and padding never changes an output.

    TF variables (scope ``tower/video_VLAD/``, audio ``tower/audio_VLAD/``) → parameters, ``[in, out]`` layout:
    ``fully_connected/{weights,biases}`` → ``expansion_weights [D, λD]``, ``expansion_biases``;
    ``fully_connected_1/{weights,biases}`` → ``attention_weights [λD, G]``, ``attention_biases``;
    ``cluster_weights``, ``cluster_bn/*``, ``cluster_weights2``, ``vlad_bn/*`` keep their names
    (``gamma, beta, moving_mean, moving_variance`` → ``weight, bias, running_mean, running_var``); the table is
    :attr:`tf_variable_names`.
    Initialisation as the reference: TF-slim variance scaling for every weight, zero biases, BN γ = 1, β = 0.

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, K·λD/G]``. Training needs two videos per batch
    (``vlad_bn`` normalises over videos).
    """

    # TF variable name inside the stream scope -> parameter (BN scopes: gamma/beta/moving_* -> weight/bias/running_*)
    tf_variable_names: ClassVar[dict[str, str]] = {
        "fully_connected/weights": "expansion_weights", "fully_connected/biases": "expansion_biases",
        "fully_connected_1/weights": "attention_weights", "fully_connected_1/biases": "attention_biases",
        "cluster_weights": "cluster_weights", "cluster_bn": "cluster_bn", "cluster_weights2": "cluster_weights2",
        "vlad_bn": "vlad_bn",
    }  # fmt: skip

    def __init__(self, feature_size: int, cluster_size: int, groups: int = 8, expansion: int = 2,
                 padded_frames_in_batch_norm: bool = False) -> None:
        super().__init__()
        if feature_size < 1 or cluster_size < 1 or groups < 1 or expansion < 1:
            raise ValueError(f"feature_size, cluster_size, groups and expansion must be positive, got "
                             f"{feature_size}, {cluster_size}, {groups}, {expansion}")
        expanded = expansion * feature_size
        if expanded % groups:
            raise ValueError(f"NeXtVLAD splits the expanded frame (expansion·feature_size = {expanded}) into "
                             f"{groups} groups, which does not divide it")
        self.feature_size = feature_size
        self.cluster_size = cluster_size
        self.groups = groups
        self.expansion = expansion
        self.padded_frames_in_batch_norm = padded_frames_in_batch_norm
        self.group_size = expanded // groups
        self.output_size = self.group_size * cluster_size
        self.expansion_weights = nn.Parameter(variance_scaling_(torch.empty(feature_size, expanded)))
        self.expansion_biases = nn.Parameter(torch.zeros(expanded))
        self.attention_weights = nn.Parameter(variance_scaling_(torch.empty(expanded, groups)))
        self.attention_biases = nn.Parameter(torch.zeros(groups))
        self.cluster_weights = nn.Parameter(variance_scaling_(torch.empty(expanded, groups * cluster_size)))
        self.cluster_bn = MaskedBatchNorm1d(groups * cluster_size)
        self.cluster_weights2 = nn.Parameter(variance_scaling_(torch.empty(1, self.group_size, cluster_size)))
        self.vlad_bn = MaskedBatchNorm1d(self.output_size)

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        batch, num_frames, _ = frames.shape
        rows = frames.reshape(batch * num_frames, self.feature_size)
        row_mask = None if mask is None else mask.reshape(-1, 1)
        expanded = torch.addmm(self.expansion_biases, rows, self.expansion_weights)  # [B·N, λD]
        attention = torch.sigmoid(torch.addmm(self.attention_biases, expanded, self.attention_weights))  # [B·N, G]
        logits = expanded @ self.cluster_weights  # [B·N, G·K], contiguous for the BN
        bn_mask = None if row_mask is None or self.padded_frames_in_batch_norm else row_mask.squeeze(1)
        logits = self.cluster_bn(logits, bn_mask)
        assignment = torch.softmax(logits.view(-1, self.groups, self.cluster_size), dim=-1)
        assignment = assignment * attention.unsqueeze(-1)  # [B·N, G, K]
        if row_mask is not None:  # where(), not a product: a padded row contributes exactly nothing
            assignment = torch.where(row_mask.unsqueeze(-1), assignment, 0.0)
        assignment = assignment.view(batch, num_frames * self.groups, self.cluster_size)
        grouped = expanded.view(batch, num_frames * self.groups, self.group_size)
        residuals = torch.bmm(grouped.transpose(1, 2), assignment)  # [B, F, K]
        residuals = torch.addcmul(residuals, assignment.sum(1, keepdim=True), self.cluster_weights2, value=-1.0)
        descriptor = l2_normalize(residuals, dim=1).reshape(batch, self.output_size)
        return self.vlad_bn(descriptor)

    def extra_repr(self) -> str:
        return (f"{self.feature_size}, cluster_size={self.cluster_size}, groups={self.groups}, "
                f"expansion={self.expansion}, padded_frames_in_batch_norm={self.padded_frames_in_batch_norm}")
