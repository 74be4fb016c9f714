"""Second-order, function-approximation NetVLAD (Kmiec, Bae & An, "Learnable Pooling Methods for Video
Classification", arXiv 1810.00530, §2.3-2.4, §3.3, Fig. 3): NetVLAD with residual normalisation and whitening
(triangulation embedding, Jégou & Zisserman, CVPR 2014) and the second-order terms of FAemb (Do, Tran & Cheung,
CVPR 2015) on a low-rank projection of the frames. The released code has no implementation ("TBD")."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.masking import zero_padding
from videopool.layers.norm import l2_normalize
from videopool.layers.registry import register_pooling
from videopool.layers.soft_assignment import SoftAssignmentPooling

WHITENINGS = ("shared", "cluster", "none")


class ClusterWhitening(nn.Module):
    """Learned whitening of per-cluster vectors ``x [B, E, K]``: ``y_{:,k} = P_k (x_{:,k} − μ_k)``.

    ``μ = whitening_mean [1, E, K]`` (the per-cluster mean E[R], zero at start); ``P = whitening_weights``:
    one ``[E, E]`` matrix for all clusters (``"shared"``) or one per cluster ``[K, E, E]`` (``"cluster"``, the
    per-centre decorrelation of the triangulation embedding; ``K·E²`` parameters), identity at start.
    ``"none"`` is the identity map.
    """

    def __init__(self, size: int, clusters: int, kind: str = "shared") -> None:
        super().__init__()
        if kind not in WHITENINGS:
            raise ValueError(f"whitening must be one of {list(WHITENINGS)}, got {kind!r}")
        self.kind = kind
        if kind == "none":
            self.register_parameter("whitening_mean", None)
            self.register_parameter("whitening_weights", None)
            return
        self.whitening_mean = nn.Parameter(torch.zeros(1, size, clusters))
        eye = torch.eye(size)
        self.whitening_weights = nn.Parameter(eye if kind == "shared" else eye.repeat(clusters, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "none":
            return x
        centred = x - self.whitening_mean
        if self.kind == "shared":
            return torch.matmul(self.whitening_weights, centred)
        return torch.einsum("kef,bfk->bek", self.whitening_weights, centred)


def _residual_weights(frames: Tensor, assignment: Tensor, centroids: Tensor, power: int) -> Tensor:
    """``a_{n,k} / ‖x_n − c_k‖^power`` ``[B, N, K]`` from ``‖x‖² − 2x·c + ‖c‖²`` (no B×N×K×E tensor).

    The squared norm is clamped at 1e-12, TF's L2 epsilon."""
    squared = (frames.pow(2).sum(-1, keepdim=True) - 2.0 * (frames @ centroids[0])
               + centroids.pow(2).sum(1))
    return assignment * squared.clamp_min(1e-12).pow(-0.5 * power)


@register_pooling("second_order_netvlad")
class SecondOrderNetVLAD(SoftAssignmentPooling):
    """First-order NetVLAD with normalised residuals and whitening, concatenated with second-order terms::

        a = softmax(BN(x W_a)),  r_{n,k} = (x_n − c_k)/‖x_n − c_k‖            [B, N, K]   (residual_norm)
        R_{:,k} = Σ_n a_{n,k} r_{n,k}                                          [B, D, K]   one bmm
        v₁ = L2(flatten(P₁(intra-L2(R) − μ₁)))                                 [B, D·K]    d·K + k, learned
                                                                                            whitening P₁, μ₁
        z = x W_p                                                              [B, N, p]   low-rank projection
        b = softmax(BN'(z W'_a)),  u_{n,j} = (z_n − c'_j)/‖z_n − c'_j‖         own centres c' and assignments
        S_j = Σ_n b_{n,j} vec(u_{n,j} u_{n,j}ᵀ)                                [B, p², K'] e = p·i + i'
        v₂ = L2(flatten(P₂(intra-L2(S) − μ₂)))                                 [B, p²·K']  e·K' + j
        v  = [v₁, v₂]                                                          [B, D·K + p²·K']

    ``S`` is expanded as ``Σ b z zᵀ − (Σ b z) c'ᵀ − c' (Σ b z)ᵀ + (Σ b) c' c'ᵀ`` with ``b`` already divided
    by ``‖z − c'‖²``: the largest intermediate is ``[B, N, p²]`` (the frames' outer products), never the
    ``B×N×K×D×D`` (or ``B×N×K'×p×p``) tensor of the formula. ``residual_norm=False`` uses the raw residuals
    (plain NetVLAD sums and FAemb's unnormalised terms). FAemb's zeroth-order entries ``a_j`` are left out
    (after the per-cluster L2 they are constant); democratic weights and FAemb's regularisers are not used
    (paper §3.3). The projection width, ``K'`` and the whitening form are not published; ``whitening`` is
    :class:`ClusterWhitening` (``"shared"``: one ``E×E`` matrix per branch and a mean per cluster).

    Parameters ``W_a [D, K]``, ``cluster_bn``/``cluster_biases``, ``C = cluster_weights2 [1, D, K]``,
    ``first_whitening``; ``projection_weights W_p [D, p]`` ~ N(0, 1/D); ``second_order`` (the soft assignment of
    ``z``: ``cluster_weights [p, K']``, its BN), ``second_order_centroids [1, p, K']`` ~ N(0, 1/p),
    ``second_whitening``. Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, D·K + p²·K']``. Orderless.
    """

    accepts_frame_affine = False  # the residual norms and the outer products need the frames themselves

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool = True,
                 projection_size: int = 32, second_order_clusters: int | None = None,
                 residual_norm: bool = True, whitening: str = "shared") -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        clusters2 = cluster_size if second_order_clusters is None else second_order_clusters
        if projection_size < 1 or clusters2 < 1:
            raise ValueError(f"projection_size and second_order_clusters must be positive, got "
                             f"{projection_size}, {clusters2}")
        self.projection_size, self.second_order_clusters = projection_size, clusters2
        self.residual_norm = residual_norm
        self.cluster_weights2 = nn.Parameter(torch.randn(1, feature_size, cluster_size) / math.sqrt(feature_size))
        self.first_whitening = ClusterWhitening(feature_size, cluster_size, whitening)
        self.projection_weights = nn.Parameter(torch.randn(feature_size, projection_size) / math.sqrt(feature_size))
        self.second_order = SoftAssignmentPooling(projection_size, clusters2, add_batch_norm)
        self.second_order_centroids = nn.Parameter(torch.randn(1, projection_size, clusters2)
                                                   / math.sqrt(projection_size))
        self.second_whitening = ClusterWhitening(projection_size**2, clusters2, whitening)
        self.output_size = feature_size * cluster_size + projection_size**2 * clusters2

    def _finish(self, sums: Tensor, whitening: ClusterWhitening) -> Tensor:
        """``[B, E, K]`` → ``L2(flatten(P(intra-L2 − μ)))`` ``[B, E·K]``."""
        whitened = whitening(l2_normalize(sums, dim=1))
        return l2_normalize(whitened.reshape(whitened.shape[0], -1), dim=1)

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        frames = zero_padding(frames, mask)
        first = self._first_order(frames, mask)
        second = self._second_order(frames @ self.projection_weights, mask)
        return torch.cat([first, second], dim=1)

    def _first_order(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        weights = self.assign(frames, mask)
        if self.residual_norm:
            weights = _residual_weights(frames, weights, self.cluster_weights2, power=1)
        return self._finish(self.aggregate(frames, weights, centroids=self.cluster_weights2), self.first_whitening)

    def _second_order(self, projected: Tensor, mask: Tensor | None) -> Tensor:
        batch, num_frames, width = projected.shape
        centroids = self.second_order_centroids  # [1, p, K']
        weights = self.second_order.assign(projected, mask)
        if self.residual_norm:
            weights = _residual_weights(projected, weights, centroids, power=2)
        outer = (projected.unsqueeze(-1) * projected.unsqueeze(-2)).view(batch, num_frames, width * width)
        sums = torch.bmm(outer.transpose(1, 2), weights).view(batch, width, width, -1)  # Σ b z zᵀ  [B, p, p, K']
        first = torch.bmm(projected.transpose(1, 2), weights)  # Σ b z  [B, p, K']
        cross = first.unsqueeze(2) * centroids.unsqueeze(1)  # (Σ b z)_i c'_i'
        mass = weights.sum(1).view(batch, 1, 1, -1)
        sums = sums - cross - cross.transpose(1, 2) + mass * (centroids.unsqueeze(2) * centroids.unsqueeze(1))
        return self._finish(sums.reshape(batch, width * width, -1), self.second_whitening)

    def extra_repr(self) -> str:
        return (f"{self.feature_size}, clusters={self.cluster_size}, projection_size={self.projection_size}, "
                f"second_order_clusters={self.second_order_clusters}, residual_norm={self.residual_norm}, "
                f"whitening={self.first_whitening.kind!r}")
