"""Transformer encoders around and inside NetVLAD (Kmiec, Bae & An, "Learnable Pooling Methods for Video
Classification", arXiv 1810.00530, §3.1-3.2; released code: pomonam/LearnablePoolingMethods ``NetVladV1``,
``NetVladAttenCluster``, ``TransformerEncoder``, ``MultiHeadAttentionBN``).

The encoder is the one of Vaswani et al. ("Attention Is All You Need", arXiv 1706.03762) with, as the paper
says, batch normalisation inside the multi-head attention. It is mask-aware: a padded frame is never attended
(its key gets no weight), its own output row is never used, and it is left out of every batch-norm statistic.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.base import FramePooling
from videopool.layers.masking import zero_padding
from videopool.layers.norm import MaskedBatchNorm1d, intra_global_l2_normalize
from videopool.layers.registry import register_pooling
from videopool.layers.soft_assignment import SoftAssignmentPooling

ENCODER_LAYOUTS = ("paper", "released")


def _dense(inputs: int, outputs: int, bias: bool = True) -> nn.Linear:
    """A TF ``dense`` layer: Glorot-uniform weight, zero bias."""
    layer = nn.Linear(inputs, outputs, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class MaskedMultiHeadAttention(nn.Module):
    """Multi-head self-attention over ``tokens [B, L, F]`` with ``h`` heads of depth ``d = F/h``::

        q, k, u = x W_q, x W_k, x W_v                     bias-free [F, F] projections, split into heads
        e = q kᵀ / sqrt(d)                                [B, h, L, L]   (batch_norm=False)
        e = BN_h(q kᵀ)                                    batch_norm=True: one BN channel per head, statistics
                                                          over the real (query, key) pairs (``logits_bn``)
        A = softmax_keys(e),  A = 0 on padded keys
        o = concat_heads(A u);  o ← BN_F(o)  (batch_norm)  ``attention_bn``, over the real tokens
        y = o W_o + b_o
    """

    def __init__(self, size: int, num_heads: int, batch_norm: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or size % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must be positive and divide the token size ({size})")
        self.size, self.num_heads = size, num_heads
        self.query, self.key, self.value = (_dense(size, size, bias=False) for _ in range(3))
        self.output = _dense(size, size)
        self.logits_bn = MaskedBatchNorm1d(num_heads) if batch_norm else None
        self.attention_bn = MaskedBatchNorm1d(size) if batch_norm else None

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        batch, length, size = tokens.shape
        heads, depth = self.num_heads, size // self.num_heads

        def split(x: Tensor) -> Tensor:
            return x.view(batch, length, heads, depth).transpose(1, 2)  # [B, h, L, d]

        query, key, value = split(self.query(tokens)), split(self.key(tokens)), split(self.value(tokens))
        logits = query @ key.transpose(-1, -2)  # [B, h, L, L]
        if self.logits_bn is None:
            logits = logits * (1.0 / math.sqrt(depth))
        else:
            pairs = None if mask is None else mask.unsqueeze(2) & mask.unsqueeze(1)  # [B, L, L]
            logits = self.logits_bn(logits.permute(0, 2, 3, 1), pairs).permute(0, 3, 1, 2)
        if mask is not None:  # finfo.min, not -inf: a video without real frames stays finite
            logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
        attended = (torch.softmax(logits, dim=-1) @ value).transpose(1, 2).reshape(batch, length, size)
        if self.attention_bn is not None:
            attended = self.attention_bn(attended, mask)
        return self.output(attended)


class TransformerEncoder(nn.Module):
    """One encoder layer over ``tokens [B, L, F]`` (no positional encoding: order-equivariant).

    ``layout="paper"`` (Vaswani et al., post-LN)::

        y₁ = LN(x + drop(MHA(x)));   y = LN(y₁ + drop(ReLU(y₁ W₁ + b₁) W₂ + b₂))           W₁ [F, 4F], W₂ [4F, F]

    ``layout="released"`` (POMONAM ``TransformerEncoder``: ReLU on the second FFN layer, the residual added twice,
    three LayerNorms)::

        y₁ = LN(x + MHA(x));   y₂ = LN(y₁ + ReLU(ReLU(y₁ W₁ + b₁) W₂ + b₂));   y = LN(y₂ + y₁)

    ``output_size=C`` gives the similarity encoder of §3.2 (``TransformerEncoderMod``): the final layer maps to
    ``C`` and has no residual, ``y = BN(ReLU(BN(ReLU(y₁ W₁ + b₁)) W₂ + b₂))`` with ``W₂ [4F, C]``.
    The attention is :class:`MaskedMultiHeadAttention` (``attention_batch_norm``). Padded rows of the output
    are finite but meaningless; the caller drops them. ``ffn_size`` replaces the FFN width ``4F`` (small models).
    """

    def __init__(self, size: int, num_heads: int, output_size: int | None = None, layout: str = "paper",
                 attention_batch_norm: bool = True, dropout: float = 0.0, ffn_size: int | None = None) -> None:
        super().__init__()
        if layout not in ENCODER_LAYOUTS:
            raise ValueError(f"encoder layout must be one of {list(ENCODER_LAYOUTS)}, got {layout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is a drop rate in [0, 1), got {dropout}")
        self.layout, self.output_size = layout, output_size
        self.attention = MaskedMultiHeadAttention(size, num_heads, attention_batch_norm)
        self.dropout = nn.Dropout(dropout)
        self.attention_norm = nn.LayerNorm(size, eps=1e-6)
        inner = 4 * size if ffn_size is None else ffn_size
        self.ffn_in = _dense(size, inner)
        self.ffn_out = _dense(inner, output_size or size)
        if output_size is not None:
            self.ffn_in_bn, self.ffn_out_bn = MaskedBatchNorm1d(inner), MaskedBatchNorm1d(output_size)
        else:
            self.ffn_norm = nn.LayerNorm(size, eps=1e-6)
            self.output_norm = nn.LayerNorm(size, eps=1e-6) if layout == "released" else None

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        first = self.attention_norm(tokens + self.dropout(self.attention(tokens, mask)))
        inner = torch.relu(self.ffn_in(first))
        if self.output_size is not None:
            return self.ffn_out_bn(torch.relu(self.ffn_out(self.ffn_in_bn(inner, mask))), mask)
        if self.layout == "paper":
            return self.ffn_norm(first + self.dropout(self.ffn_out(inner)))
        second = self.ffn_norm(first + torch.relu(self.ffn_out(inner)))
        return self.output_norm(second + first)


@register_pooling("transformer_netvlad")
class TransformerNetVLAD(SoftAssignmentPooling):
    """Attention-enhanced NetVLAD (§3.1, Fig. 1): a Transformer encoder over the frames before NetVLAD
    (``frame_encoder``, mask-aware) and one over the ``K`` cluster descriptors after it (``cluster_encoder``)::

        x ← f₁(x)                                   [B, N, D]   frame_encoder=True (padding neither attends nor
                                                                is attended)
        V = NetVLAD(x) as [B, K, D]                             a = softmax(BN(x W_a)), R = xᵀa − s⊙C,
                                                                intra-L2, global L2; token k = V[:, k, :]
        v = flatten(f₂(V))                          [B, K·D]    cluster-major: index k·D + d

    Without ``cluster_encoder`` the output is the NetVLAD vector itself (feature-major ``d·K + k``). A video without
    real frames gives zeros (its tokens are left out of the cluster encoder's batch statistics).
    ``encoder``/``attention_batch_norm``/``dropout``/``num_heads``/``ffn_size`` configure both encoders
    (:class:`TransformerEncoder`; the paper's encoder by default). The released ``NetVladV1`` does not run
    (spec §4.11): it gives NetVLAD a scope argument it does not take and gets a flat vector back, not tokens.
    Parameters: NetVLAD's ``2·D·K + 2·K`` plus per encoder ``12·D² + 6·D + 4·D`` (two LayerNorms; ``+2·D``
    with ``encoder="released"``) ``+ 2·h + 2·D`` (attention BN).
    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, D·K]``. Orderless.
    """

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool = True, num_heads: int = 8,
                 frame_encoder: bool = False, cluster_encoder: bool = True, encoder: str = "paper",
                 attention_batch_norm: bool = True, dropout: float = 0.0, ffn_size: int | None = None) -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        self.cluster_weights2 = nn.Parameter(torch.randn(1, feature_size, cluster_size) / math.sqrt(feature_size))
        settings = dict(layout=encoder, attention_batch_norm=attention_batch_norm, dropout=dropout, ffn_size=ffn_size)
        self.frame_encoder = TransformerEncoder(feature_size, num_heads, **settings) if frame_encoder else None
        self.cluster_encoder = TransformerEncoder(feature_size, num_heads, **settings) if cluster_encoder else None
        self.accepts_frame_affine = not frame_encoder  # the frame encoder needs the mapped frames themselves
        self.output_size = feature_size * cluster_size

    def pool(self, frames: Tensor, mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        if self.frame_encoder is not None:
            frames = self.frame_encoder(zero_padding(frames, mask), mask)
        else:
            frames = self.autocast_frames(frames)
        residuals = self.aggregate(frames, self.assign(frames, mask, affine), affine, self.cluster_weights2)
        vlad = intra_global_l2_normalize(residuals)
        if self.cluster_encoder is None:
            return vlad
        tokens = vlad.view(-1, self.feature_size, self.cluster_size).transpose(1, 2)  # [B, K, D]
        if mask is None:
            return self.cluster_encoder(tokens).reshape(tokens.shape[0], self.output_size)
        # a video without real frames has no tokens: out of the encoder's statistics, and zeros out
        token_mask = mask.any(1, keepdim=True).expand(-1, self.cluster_size)
        encoded = torch.where(token_mask.unsqueeze(-1), self.cluster_encoder(tokens, token_mask), 0.0)
        return encoded.reshape(tokens.shape[0], self.output_size)


@register_pooling("attention_netvlad")
class AttentionNetVLAD(FramePooling):
    """NetVLAD whose cluster similarities come from Transformer encoders (§3.2, Fig. 2)::

        h = g₁(x)                                   [B, N, D]   frame encoder (``frame_encoder=True``, paper)
        a = g₂(h)                                   [B, N, K]   similarity encoder: FFN to K, no final residual,
                                                                no softmax; a = 0 on padding
        R_{d,k} = Σ_n a_{n,k} (x_{n,d} − C_{d,k})   [B, D, K]   one bmm, ``xᵀa − s⊙C``
        v = L2(flatten(intra-L2(R)))                [B, D·K]    feature-major d·K + k

    ``g₁`` is :class:`TransformerEncoder` (``encoder`` layout), ``g₂`` its similarity form (``output_size=K``);
    both have the attention batch norm (``attention_batch_norm``), ``dropout`` after the attention and the FFN
    width ``ffn_size`` (default 4D).
    ``C = cluster_weights2 [1, D, K]`` ~ N(0, 1/D). The released ``NetVladAttenCluster`` (one encoder, g₂ only:
    ``frame_encoder=False``) has two bugs fixed here (spec §4.12): it multiplies ``a [B, N, K, 1]`` with the
    residuals ``[B, N, D, K]``, which broadcasts only when D = K (here the sum runs over frames per cluster,
    as the formula says), and passes the keep-probability 0.9 to a drop-rate argument (90 % dropout; here
    ``dropout=0.1`` means 10 %). Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, D·K]``. Orderless.
    """

    def __init__(self, feature_size: int, cluster_size: int, num_heads: int = 8, frame_encoder: bool = True,
                 encoder: str = "paper", attention_batch_norm: bool = True, dropout: float = 0.1,
                 ffn_size: int | None = None) -> None:
        super().__init__()
        if feature_size < 1 or cluster_size < 1:
            raise ValueError(f"feature_size and cluster_size must be positive, got {feature_size}, {cluster_size}")
        self.feature_size, self.cluster_size = feature_size, cluster_size
        self.output_size = feature_size * cluster_size
        settings = dict(attention_batch_norm=attention_batch_norm, dropout=dropout, ffn_size=ffn_size)
        self.frame_encoder = (TransformerEncoder(feature_size, num_heads, layout=encoder, **settings)
                              if frame_encoder else None)
        self.similarity_encoder = TransformerEncoder(feature_size, num_heads, output_size=cluster_size, **settings)
        self.cluster_weights2 = nn.Parameter(torch.randn(1, feature_size, cluster_size) / math.sqrt(feature_size))

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        frames = zero_padding(frames, mask)
        hidden = frames if self.frame_encoder is None else self.frame_encoder(frames, mask)
        similarity = self.similarity_encoder(hidden, mask)  # [B, N, K]
        if mask is not None:
            similarity = torch.where(mask.unsqueeze(-1), similarity, 0.0)
        residuals = torch.bmm(frames.transpose(1, 2), similarity)
        residuals = torch.addcmul(residuals, similarity.sum(1, keepdim=True), self.cluster_weights2, value=-1.0)
        return intra_global_l2_normalize(residuals)
