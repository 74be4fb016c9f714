"""A padded batch of videos, as produced by :func:`videopool.data.collate_videos`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class VideoBatch:
    """Frames of several videos padded to a common length.

    Attributes:
        ids: video ids, length B.
        frames: feature name -> float tensor ``[B, N, D]`` (padding rows are 0).
        mask: bool ``[B, N]``, True where the row is a real (selected) frame.
        num_frames: int64 ``[B]``, frames of each video before selection.
        labels: float ``[B, V]`` multi-hot targets (all zero when unlabelled).
        segments: optional per-video segment annotations (list of
            :class:`~videopool.data.video.SegmentAnnotations` or None).
    """

    ids: list[str]
    frames: dict[str, torch.Tensor]
    mask: torch.Tensor
    num_frames: torch.Tensor
    labels: torch.Tensor
    segments: list | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "VideoBatch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return VideoBatch(
            ids=self.ids,
            frames={k: move(v) for k, v in self.frames.items()},
            mask=move(self.mask),
            num_frames=move(self.num_frames),
            labels=move(self.labels),
            segments=self.segments,
            extra=self.extra,
        )
