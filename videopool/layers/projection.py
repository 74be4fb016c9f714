"""The per-frame projection onto K clusters that the soft-assignment layers and DBoF share."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.base import FramePooling
from videopool.layers.norm import MaskedBatchNorm1d


class ClusterProjection(FramePooling):
    """``z = BN(x W)`` over the real frame rows, or ``z = x W + b`` without batch norm.

    ``W = cluster_weights [D, K]`` ~ N(0, 1/D) in TF's ``[in, out]`` layout; ``cluster_bn`` is a
    :class:`MaskedBatchNorm1d` over K (it replaces the bias, as in the references) and ``cluster_biases [K]``
    ~ N(0, 1/D) is used only when ``add_batch_norm=False``. Subclasses keep these parameter names, which are
    the variable names of WILLOW's TF checkpoints.
    """

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool = True) -> None:
        super().__init__()
        if feature_size < 1 or cluster_size < 1:
            raise ValueError(f"feature_size and cluster_size must be positive, got {feature_size}, {cluster_size}")
        self.feature_size = feature_size
        self.cluster_size = cluster_size
        self.add_batch_norm = add_batch_norm
        init_std = 1.0 / math.sqrt(feature_size)
        self.cluster_weights = nn.Parameter(torch.randn(feature_size, cluster_size) * init_std)
        if add_batch_norm:
            self.cluster_bn = MaskedBatchNorm1d(cluster_size)
            self.register_parameter("cluster_biases", None)
        else:
            self.cluster_bn = None
            self.cluster_biases = nn.Parameter(torch.randn(cluster_size) * init_std)

    def project(self, rows: Tensor, row_mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        """``rows [R, D]`` (frames flattened over the batch) -> ``[R, K]``; ``row_mask [R]`` marks real rows.

        With ``affine`` the rows are first mapped by it (:class:`~videopool.layers.affine.FrameAffine`).
        """
        # contiguous [R, K] for the BN: on a strided view its backward is ~20x slower on CPU
        projected = rows @ self.cluster_weights if affine is None else affine.project(rows, self.cluster_weights)
        if self.cluster_bn is not None:
            return self.cluster_bn(projected, row_mask)
        return projected + self.cluster_biases
