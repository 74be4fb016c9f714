"""Deep Bag-of-Frames pooling (the TF1 starter code's ``DbofModel`` cluster layer, WILLOW ``DBoF``), from
Abu-El-Haija et al., "YouTube-8M: A Large-Scale Video Classification Benchmark" (arXiv 1609.08675)."""

from __future__ import annotations


import torch
from torch import Tensor

from videopool.layers.activations import ACTIVATIONS, make_activation
from videopool.layers.masking import masked_max, masked_mean
from videopool.layers.norm import l2_normalize
from videopool.layers.projection import ClusterProjection
from videopool.layers.registry import register_pooling

_POOLINGS = ("max", "average", "max_average")


@register_pooling("dbof")
class DBoF(ClusterProjection):
    """Per-frame up-projection to K "clusters", activation, then pooling over the real frames.

        h_n = act(BN(x_n W_c))                      (W_c = cluster_weights [D, K] ~ N(0, 1/D))
        v   = max_n h_n                             (pooling="max", TF1 starter code default)
        v   = mean_n h_n                            (pooling="average", TF2 starter code default)
        v   = [L2(mean_n h_n), L2(max_n h_n)]       (pooling="max_average", WILLOW ``DbofModelLF``)

    Without BN a bias ``cluster_biases [K]`` ~ N(0, 1/D) is added instead. ``activation`` is one of
    ``relu``, ``relu6``, ``sigmoid`` (TF1 starter code default) or ``none`` — WILLOW's released ``DbofModelLF`` applies no
    activation (it compares the activation with the strings 'relu'/'glu', which never match), so reproduce it with ``activation="none", pooling="max_average"``. The hidden FC that
    follows in the reference models belongs to the model, not to this layer.

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, K]`` (``[B, 2K]`` for max_average). Parameters:
    ``D·K + 2·K`` (BN) or ``D·K + K`` (bias). Means and maxima run over real frames only and padded frames are
    excluded from the BN statistics.
    """

    def __init__(
        self,
        feature_size: int,
        cluster_size: int,
        add_batch_norm: bool = True,
        activation: str = "sigmoid",
        pooling: str = "max",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"DBoF activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        if pooling not in _POOLINGS:
            raise ValueError(f"DBoF pooling must be one of {list(_POOLINGS)}, got {pooling!r}")
        super().__init__(feature_size, cluster_size, add_batch_norm)
        self.activation = activation
        self.nonlinearity = make_activation(activation)
        self.pooling = pooling
        self.output_size = 2 * cluster_size if pooling == "max_average" else cluster_size

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        batch, num_frames, _ = frames.shape
        rows = frames.reshape(batch * num_frames, self.feature_size)
        hidden = self.project(rows, None if mask is None else mask.reshape(-1))
        hidden = self.nonlinearity(hidden).view(batch, num_frames, self.cluster_size)
        if self.pooling == "max":
            return masked_max(hidden, mask)
        if self.pooling == "average":
            return masked_mean(hidden, mask)
        return torch.cat([l2_normalize(masked_mean(hidden, mask), 1), l2_normalize(masked_max(hidden, mask), 1)], 1)

    def extra_repr(self) -> str:
        return (
            f"feature_size={self.feature_size}, cluster_size={self.cluster_size}, "
            f"activation={self.activation!r}, pooling={self.pooling!r}"
        )
