"""Fusion of pooled per-modality vectors into one video vector.

Every fusion layer is built from an ordered mapping ``{modality: pooled size}`` and called with a dict
``{modality: Tensor [B, d_i]}``; the mapping's order fixes the concatenation order (rgb before audio in
the published models). Each exposes ``output_size``.

The three variants are the ones compared by Liu, Yuan, Wang, "Towards Good Practices for Multi-modal Fusion in
Large-scale Video Classification" (arXiv 1809.05848, Tables 1–3): plain concatenation,
FC-concatenation (a linear projection per modality, then concatenation, with the same weight shapes as
MFB so the comparison has equal parameters) and multi-modal factorized bilinear pooling (Yu et al. 2017).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from videopool.layers.activations import ACTIVATIONS, make_activation
from videopool.layers.norm import l2_normalize

FUSIONS = ("concat", "fc_concat", "mfb")
FUSION_STAGES = ("late", "early")
MFB_NORMALIZATIONS = ("relu", "signed_sqrt")


def _check_inputs(layer: str, expected: Mapping[str, int], pooled: Mapping[str, torch.Tensor]) -> None:
    if set(pooled) != set(expected):
        raise KeyError(f"{layer} was built for modalities {list(expected)} but got {list(pooled)}")


class ConcatFusion(nn.Module):
    """``y = [x_1, x_2, …]`` in the order of ``input_sizes``. ``{m: [B, d_m]} -> [B, Σ d_m]``. No parameters."""

    def __init__(self, input_sizes: Mapping[str, int]) -> None:
        super().__init__()
        if not input_sizes:
            raise ValueError("ConcatFusion needs at least one modality")
        self.input_sizes = dict(input_sizes)
        self.output_size = sum(self.input_sizes.values())

    def forward(self, pooled: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _check_inputs(type(self).__name__, self.input_sizes, pooled)
        if len(self.input_sizes) == 1:
            return next(iter(pooled.values()))
        return torch.cat([pooled[name] for name in self.input_sizes], dim=1)


class FCConcatFusion(nn.Module):
    """Per-modality fully-connected projection, then concatenation (Liu et al. 2018, "FC + Concatenation").

    ``y = [act(x_1 U_1 + b_1), act(x_2 U_2 + b_2), …]`` with ``U_m [d_m, P]``. The paper gives the FC
    layers "the same parameter settings" as MFB, so the default ``projection_size`` is MFB's
    ``factor · output_size`` = 5·1000 and the parameter count equals MFB's. The paper names no
    activation, so the default is linear (``activation="none"``).

    Shapes: ``{m: [B, d_m]} -> [B, M·P]`` for ``M`` modalities.
    """

    def __init__(
        self, input_sizes: Mapping[str, int], projection_size: int = 5000, activation: str = "none", bias: bool = True
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"FCConcatFusion activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        self.input_sizes = dict(input_sizes)
        self.projection_size = projection_size
        self.projections = nn.ModuleDict(
            {name: nn.Linear(size, projection_size, bias=bias) for name, size in input_sizes.items()}
        )
        self.activation = make_activation(activation)
        self.output_size = projection_size * len(self.input_sizes)

    def forward(self, pooled: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _check_inputs(type(self).__name__, self.input_sizes, pooled)
        return torch.cat([self.activation(self.projections[name](pooled[name])) for name in self.input_sizes], dim=1)


class MFBFusion(nn.Module):
    """Multi-modal Factorized Bilinear pooling (Yu et al. 2017, arXiv 1708.01471, as Liu et al. 2018
    adapt it to audio and video, arXiv 1809.05848 §3.1).

    With two modalities ``x_v [B, D_v]``, ``x_a [B, D_a]``, ``U [D_v, k·o]``, ``W [D_a, k·o]`` (+ biases)::

        z = dropout((x_v U + b_U) ⊙ (x_a W + b_W))        [B, k·o]
        f_j = Σ_{i<k} z_{j·k + i}                           sum-pool the k consecutive factors of unit j
        f = ReLU(f)            (normalization="relu", the paper's choice)
          | sign(f)·sqrt(|f|)  (normalization="signed_sqrt", the original MFB power normalization)
        y = L2(f)                                           [B, o]

    More than two modalities multiply all projections elementwise (the natural extension). Parameters:
    ``(Σ d_m)·k·o + M·k·o``; with 1024/128, k=5, o=1000 that is 5,770,000.

    Shapes: ``{m: [B, d_m]} -> [B, o]``.
    """

    def __init__(
        self,
        input_sizes: Mapping[str, int],
        factor: int = 5,
        output_size: int = 1000,
        dropout: float = 0.1,
        normalization: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if len(input_sizes) < 2:
            raise ValueError(
                f"MFBFusion fuses two or more modalities, got {list(input_sizes)}; use ConcatFusion for one modality"
            )
        if normalization not in MFB_NORMALIZATIONS:
            raise ValueError(f"MFBFusion normalization must be 'relu' or 'signed_sqrt', got {normalization!r}")
        self.input_sizes = dict(input_sizes)
        self.factor = factor
        self.output_size = output_size
        self.normalization = normalization
        self.projections = nn.ModuleDict(
            {name: nn.Linear(size, factor * output_size, bias=bias) for name, size in input_sizes.items()}
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, pooled: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _check_inputs(type(self).__name__, self.input_sizes, pooled)
        names = list(self.input_sizes)
        joint = self.projections[names[0]](pooled[names[0]])
        for name in names[1:]:
            joint = joint * self.projections[name](pooled[name])
        joint = self.dropout(joint)
        fused = joint.view(joint.shape[0], self.output_size, self.factor).sum(dim=-1)
        if self.normalization == "relu":
            fused = F.relu(fused)
        else:
            # The two relu branches keep the gradient finite where fused == 0 (sqrt'(0) is infinite).
            fused = torch.sqrt(F.relu(fused)) - torch.sqrt(F.relu(-fused))
        return l2_normalize(fused, dim=1)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, output_size={self.output_size}, normalization={self.normalization!r}"


def make_fusion(kind: str, input_sizes: Mapping[str, int], *, factor: int = 5, output_size: int = 1000,
                dropout: float = 0.1, normalization: str = "relu", projection_size: int | None = None,
                activation: str = "none") -> nn.Module:
    """The fusion of pooled modalities named by ``kind`` (one of :data:`FUSIONS`). ``factor``, ``output_size``,
    ``dropout`` and ``normalization`` are MFB's; ``projection_size`` (default ``factor · output_size``, MFB's
    parameter count) and ``activation`` are FC-concatenation's."""
    if kind == "concat":
        return ConcatFusion(input_sizes)
    if kind == "fc_concat":
        return FCConcatFusion(input_sizes, projection_size or factor * output_size, activation)
    if kind == "mfb":
        return MFBFusion(input_sizes, factor, output_size, dropout, normalization)
    raise ValueError(f"unknown fusion {kind!r}; choose one of {list(FUSIONS)}")
