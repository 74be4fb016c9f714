"""Gating layers applied to a video-level vector: Context Gating and the Gated Linear Unit.

Context Gating is from Miech, Laptev & Sivic, "Learnable pooling with Context Gating for video
classification" (arXiv 1706.06905, §5); the GLU from Dauphin et al. 2017, used there as the ablation
of Table 2; SE Context Gating (a squeeze-and-excitation bottleneck in place of the full ``H × H`` gate) from
Lin, Xiao & Fan, "NeXtVLAD" (arXiv 1811.05014, §3.3). Weights are stored in TensorFlow layout ``[in, out]``
so that ``x @ weight`` reads like the papers and TF checkpoints load without transposes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from videopool.layers.initializers import variance_scaling_
from videopool.layers.norm import BN_EPS, BN_MOMENTUM

GATINGS = ("none", "context", "glu", "se")


class ContextGating(nn.Module):
    """Context Gating: ``y = x ⊙ σ(BN(x W))`` (or ``σ(x W + b)`` without batch norm).

    ``W`` is ``[H, H]`` initialised N(0, 1/H). With ``remove_diagonal`` the pre-activation becomes
    ``x W − diag(W) ⊙ x`` so a unit cannot gate itself (WILLOW ``--gating_remove_diag``).

    Shapes: ``x [B, H] -> y [B, H]``.
    """

    def __init__(self, input_size: int, add_batch_norm: bool = True, remove_diagonal: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = input_size
        self.remove_diagonal = remove_diagonal
        std = 1.0 / math.sqrt(input_size)
        self.weight = nn.Parameter(torch.empty(input_size, input_size).normal_(0.0, std))
        if add_batch_norm:
            self.batch_norm = nn.BatchNorm1d(input_size, eps=BN_EPS, momentum=BN_MOMENTUM)
            self.register_parameter("bias", None)
        else:
            self.batch_norm = None
            # WILLOW's no-BN branch sized this bias by the cluster count (a bug); it belongs to H.
            self.bias = nn.Parameter(torch.empty(input_size).normal_(0.0, std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = x @ self.weight
        if self.remove_diagonal:
            gates = gates - x * torch.diagonal(self.weight)
        gates = self.batch_norm(gates) if self.batch_norm is not None else gates + self.bias
        return x * torch.sigmoid(gates)

    def extra_repr(self) -> str:
        return f"{self.input_size}, batch_norm={self.batch_norm is not None}, remove_diagonal={self.remove_diagonal}"


class GatedLinearUnit(nn.Module):
    """Gated Linear Unit: ``y = (x W1 + b1) ⊙ σ(x W2 + b2)``.

    Unlike Context Gating it gates a *linear transform* of ``x`` and learns two weight matrices
    (paper 1706.06905 §5 and Table 2). ``W1, W2`` are ``[H_in, H_out]`` initialised N(0, 1/H_in),
    biases start at 0. With ``add_batch_norm`` the gate pre-activation is batch-normalised instead of
    biased, mirroring :class:`ContextGating`.

    Shapes: ``x [B, H_in] -> y [B, H_out]``.
    """

    def __init__(self, input_size: int, output_size: int | None = None, add_batch_norm: bool = False) -> None:
        super().__init__()
        output_size = input_size if output_size is None else output_size
        self.input_size = input_size
        self.output_size = output_size
        std = 1.0 / math.sqrt(input_size)
        self.linear_weight = nn.Parameter(torch.empty(input_size, output_size).normal_(0.0, std))
        self.linear_bias = nn.Parameter(torch.zeros(output_size))
        self.gate_weight = nn.Parameter(torch.empty(input_size, output_size).normal_(0.0, std))
        if add_batch_norm:
            self.gate_batch_norm = nn.BatchNorm1d(output_size, eps=BN_EPS, momentum=BN_MOMENTUM)
            self.register_parameter("gate_bias", None)
        else:
            self.gate_batch_norm = None
            self.gate_bias = nn.Parameter(torch.zeros(output_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = x @ self.gate_weight
        gates = self.gate_batch_norm(gates) if self.gate_batch_norm is not None else gates + self.gate_bias
        return (x @ self.linear_weight + self.linear_bias) * torch.sigmoid(gates)

    def extra_repr(self) -> str:
        return f"{self.input_size} -> {self.output_size}, batch_norm={self.gate_batch_norm is not None}"


class SEContextGating(nn.Module):
    """SE Context Gating (NeXtVLAD, arXiv 1811.05014 §3.3): ``y = x ⊙ σ(ReLU(BN(x W₁)) W₂)``.

    ``W₁ = reduce_weight [H, H/r]`` and ``W₂ = weight [H/r, H]`` have no bias; the batch norm over the ``H/r``
    bottleneck units is followed by a ReLU. Parameters ``2·H²/r + 2·H/r`` (H = 2048, r = 8: 1,049,088) against
    Context Gating's ``H² + 2H``. TF names (linrongc/youtube-8m, scope ``tower/``): ``gating_weights_1`` →
    ``reduce_weight``, ``gating_bn/*`` → ``batch_norm.*``, ``gating_weights_2`` → ``weight`` (the names
    ``gating_bn`` and ``gating_weights_2`` map as for :class:`ContextGating`). Both weights start from TF-slim's
    variance scaling, as the reference.

    Shapes: ``x [B, H] -> y [B, H]``.
    """

    def __init__(self, input_size: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1 or input_size // reduction < 1:
            raise ValueError(f"SE gating needs 1 <= reduction <= input_size, got reduction={reduction} for "
                             f"input_size={input_size}")
        self.input_size = input_size
        self.output_size = input_size
        self.reduction = reduction
        bottleneck = input_size // reduction  # the reference's hidden_size // gating_reduction
        self.reduce_weight = nn.Parameter(variance_scaling_(torch.empty(input_size, bottleneck)))
        self.batch_norm = nn.BatchNorm1d(bottleneck, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.weight = nn.Parameter(variance_scaling_(torch.empty(bottleneck, input_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = torch.relu(self.batch_norm(x @ self.reduce_weight))
        return x * torch.sigmoid(squeezed @ self.weight)

    def extra_repr(self) -> str:
        return f"{self.input_size}, reduction={self.reduction}"


def make_gating(kind: str, input_size: int, *, add_batch_norm: bool = True, remove_diagonal: bool = False,
                reduction: int = 8) -> nn.Module:
    """The gate on the video vector named by ``kind`` (one of :data:`GATINGS`); ``none`` is the identity.

    ``add_batch_norm``/``remove_diagonal`` are Context Gating's (``add_batch_norm`` also the GLU's), ``reduction``
    the bottleneck ratio ``r`` of SE Context Gating (``se``, always with its batch norm)."""
    if kind == "se":
        return SEContextGating(input_size, reduction=reduction)
    if kind == "context":
        return ContextGating(input_size, add_batch_norm=add_batch_norm, remove_diagonal=remove_diagonal)
    if kind == "glu":
        return GatedLinearUnit(input_size, add_batch_norm=add_batch_norm)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown gating {kind!r}; choose one of {list(GATINGS)}")
