"""Parameter-free pooling over the real frames: their mean or their per-dimension maximum."""

from __future__ import annotations

from torch import Tensor

from videopool.layers.base import FramePooling
from videopool.layers.masking import masked_max, masked_mean
from videopool.layers.registry import register_pooling

STATISTICS = ("mean", "max")


@register_pooling("average", statistic="mean")
@register_pooling("max", statistic="max")
class SimplePooling(FramePooling):
    """``y = (1/|real|) Σ_n x_n`` (``statistic="mean"``) or ``y_d = max_n x_{n,d}`` (``"max"``) over the real frames.

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` → ``[B, D]``. No parameters. A video without real frames gives 0.
    """

    def __init__(self, feature_size: int, statistic: str = "mean") -> None:
        super().__init__()
        if statistic not in STATISTICS:
            raise ValueError(f"SimplePooling statistic must be one of {list(STATISTICS)}, got {statistic!r}")
        self.feature_size = feature_size
        self.output_size = feature_size
        self.statistic = statistic

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        return masked_mean(frames, mask) if self.statistic == "mean" else masked_max(frames, mask)

    def extra_repr(self) -> str:
        return f"{self.feature_size}, statistic={self.statistic!r}"
