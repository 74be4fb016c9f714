"""Non-local NetVLAD and NetRVLAD (Tang et al., "Non-local NetVLAD Encoding for Video Classification", 4th place
of the 2nd YouTube-8M challenge, §2.1; released code: YongyiTang92/youtube-8m ``NetVLAD_NonLocal``).

The K cluster descriptors of NetVLAD (or NetRVLAD) are treated as K tokens and passed through the
embedded-Gaussian non-local block of Wang et al. ("Non-local neural networks", CVPR 2018) before the final
normalisation, so every cluster descriptor can borrow from the others.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.norm import intra_global_l2_normalize, l2_normalize
from videopool.layers.registry import register_pooling
from videopool.layers.soft_assignment import SoftAssignmentPooling

INTRA_NORMS = ("after_block", "before_block", "none")
REDUCTIONS = ("flatten", "avg", "max")
VALUE_WEIGHTS = ("g", "phi")


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block over ``tokens Y [B, K, D]`` (embedding size K, as in the reference):

        A = softmax_j((Y W_θ)(Y W_φ)ᵀ / sqrt(D))          [B, K, K]   (the scale uses D, not the embedding size)
        Y ← Y + (A · (Y W_v)) W_out                        W_v = W_g (the paper), or W_φ (the released code)

    Parameters (TF names and layout): ``nonlocal_theta``, ``nonlocal_phi``, ``nonlocal_g`` ``[D, K]`` ~ N(0, 1/D),
    ``nonlocal_out [K, D]`` ~ N(0, 1/K); no biases, no batch norm. With ``value_weights="phi"`` the reference's
    bug is reproduced: ``nonlocal_g`` is not used, and is kept as a (non-trainable) buffer only so that a TF
    checkpoint, which holds it, loads by name.
    """

    def __init__(self, feature_size: int, cluster_size: int, value_weights: str = "g") -> None:
        super().__init__()
        if value_weights not in VALUE_WEIGHTS:
            raise ValueError(f"value_weights must be one of {list(VALUE_WEIGHTS)}, got {value_weights!r}")
        self.feature_size = feature_size
        self.cluster_size = cluster_size
        self.value_weights = value_weights
        std = 1.0 / math.sqrt(feature_size)
        self.nonlocal_theta = nn.Parameter(torch.randn(feature_size, cluster_size) * std)
        self.nonlocal_phi = nn.Parameter(torch.randn(feature_size, cluster_size) * std)
        g = torch.randn(feature_size, cluster_size) * std
        if value_weights == "g":
            self.nonlocal_g = nn.Parameter(g)
        else:
            self.register_buffer("nonlocal_g", g)
        self.nonlocal_out = nn.Parameter(torch.randn(cluster_size, feature_size) / math.sqrt(cluster_size))

    def forward(self, tokens: Tensor) -> Tensor:
        theta = tokens @ self.nonlocal_theta  # [B, K, K]
        phi = tokens @ self.nonlocal_phi
        attention = torch.softmax(theta @ phi.transpose(1, 2) * (1.0 / math.sqrt(self.feature_size)), dim=-1)
        values = phi if self.value_weights == "phi" else tokens @ self.nonlocal_g
        return tokens + (attention @ values) @ self.nonlocal_out

    def extra_repr(self) -> str:
        return f"{self.feature_size}, tokens={self.cluster_size}, value_weights={self.value_weights!r}"


@register_pooling("nonlocal_netrvlad", centroids=False)
@register_pooling("nonlocal_netvlad")
class NonLocalNetVLAD(SoftAssignmentPooling):
    """NetVLAD (``centroids=True``) or NetRVLAD (``centroids=False``) whose cluster descriptors pass through
    ``num_blocks`` non-local blocks (:class:`NonLocalBlock`) before the final normalisation.

    With soft assignments ``a`` (see :class:`SoftAssignmentPooling`) and ``R = xᵀa − s⊙C`` (``[B, D, K]``; NetRVLAD
    without ``− s⊙C``), the K columns of ``R`` are the tokens ``Y [B, K, D]``:

        Y ← intra-L2(Y)                        intra_norm="before_block"  (reference ``--afterNorm``)
        Y ← block_i(Y),  i = 1..num_blocks     shared_weights: one block applied num_blocks times (``_shared``)
        Y ← intra-L2(Y)                        intra_norm="after_block"   (``--beforeNorm``, the run scripts;
                                                                           default)
        v = flatten(Yᵀ) (feature-major d·K + k, D·K)  |  mean_k Y (D)  |  max_k Y (D)    reduction
        v ← L2(v)

    ``intra_norm="none"`` is the reference with its default flags (neither ``--beforeNorm`` nor ``--afterNorm``).
    ``value_weights="phi"`` reproduces the released code, which takes the block's values from ``W_φ`` and never
    uses ``W_g``; the default ``"g"`` is the paper's block.

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, D·K]`` (flatten) or ``[B, D]``. Parameters: NetVLAD's
    ``2·D·K + 2·K`` (NetRVLAD ``D·K + 2·K``) plus ``4·D·K`` per distinct block (``3·D·K`` trainable with
    ``value_weights="phi"``). Padded frames have zero assignment, so they change no descriptor.
    """

    def __init__(
        self,
        feature_size: int,
        cluster_size: int,
        add_batch_norm: bool = True,
        centroids: bool = True,
        num_blocks: int = 1,
        shared_weights: bool = False,
        value_weights: str = "g",
        intra_norm: str = "after_block",
        reduction: str = "flatten",
    ) -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if intra_norm not in INTRA_NORMS:
            raise ValueError(f"intra_norm must be one of {list(INTRA_NORMS)}, got {intra_norm!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        if centroids:
            self.cluster_weights2 = nn.Parameter(torch.randn(1, feature_size, cluster_size) / math.sqrt(feature_size))
        else:
            self.register_parameter("cluster_weights2", None)
        self.num_blocks = num_blocks
        self.shared_weights = shared_weights
        self.intra_norm = intra_norm
        self.reduction = reduction
        distinct = 1 if shared_weights else num_blocks
        self.nonlocal_blocks = nn.ModuleList(
            NonLocalBlock(feature_size, cluster_size, value_weights) for _ in range(distinct)
        )
        self.output_size = feature_size * cluster_size if reduction == "flatten" else feature_size

    def pool(self, frames: Tensor, mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        frames = self.autocast_frames(frames)
        residuals = self.aggregate(frames, self.assign(frames, mask, affine), affine, self.cluster_weights2)
        tokens = residuals.transpose(1, 2)  # [B, K, D]: one token per cluster
        if self.intra_norm == "before_block":
            tokens = l2_normalize(tokens, dim=-1)
        for i in range(self.num_blocks):
            tokens = self.nonlocal_blocks[0 if self.shared_weights else i](tokens)
        after = self.intra_norm == "after_block"
        if self.reduction == "flatten":
            descriptors = tokens.transpose(1, 2)  # [B, D, K]
            if after:
                return intra_global_l2_normalize(descriptors)
            return l2_normalize(descriptors.reshape(descriptors.shape[0], -1), dim=1)
        if after:
            tokens = l2_normalize(tokens, dim=-1)
        pooled = tokens.mean(1) if self.reduction == "avg" else tokens.amax(1)
        return l2_normalize(pooled, dim=1)

    def extra_repr(self) -> str:
        return (f"{self.feature_size}, clusters={self.cluster_size}, centroids={self.cluster_weights2 is not None}, "
                f"num_blocks={self.num_blocks}, shared_weights={self.shared_weights}, intra_norm={self.intra_norm!r}, "
                f"reduction={self.reduction!r}")
