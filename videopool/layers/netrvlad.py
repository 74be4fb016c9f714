"""NetRVLAD, the residual-less NetVLAD of WILLOW (``--lightvlad``) and LOUPE (Miech et al., arXiv 1706.06905)."""

from __future__ import annotations

from torch import Tensor

from videopool.layers.affine import FrameAffine
from videopool.layers.norm import intra_global_l2_normalize
from videopool.layers.registry import register_pooling
from videopool.layers.soft_assignment import SoftAssignmentPooling


@register_pooling("netrvlad")
class NetRVLAD(SoftAssignmentPooling):
    """NetVLAD without centroids: the soft-assignment-weighted sum of the frames themselves.

        R_{d,k} = Σ_n a_{n,k} x_{n,d}        (one bmm, ``xᵀa``)
        R_{:,k} ← L2(R_{:,k})                (intra-normalisation over D)
        v = L2(flatten(R))                   (feature-major: index d·K + k)

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, D·K]``. Parameters: ``D·K + 2·K`` (BN) or
    ``D·K + K`` (bias). Padded frames have zero assignment and do not enter the BN statistics.
    """

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool = True) -> None:
        super().__init__(feature_size, cluster_size, add_batch_norm)
        self.output_size = feature_size * cluster_size

    def pool(self, frames: Tensor, mask: Tensor | None, affine: FrameAffine | None = None) -> Tensor:
        frames = self.autocast_frames(frames)
        return intra_global_l2_normalize(self.aggregate(frames, self.assign(frames, mask, affine), affine))
