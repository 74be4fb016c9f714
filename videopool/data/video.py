"""The in-memory record of one video, shared by every reader and writer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentAnnotations:
    """Rated segments of one video (YouTube-8M Segments, 2019 format).

    All arrays have one entry per rated (segment, class) pair. Times are frame
    indices (= seconds at 1 frame/s). ``end_times`` is ``None`` when the record
    does not store it (the reference reader assumes 5-frame segments).
    """

    labels: np.ndarray  # int64 [S]
    start_times: np.ndarray  # int64 [S]
    scores: np.ndarray  # float32 [S]; 1.0 positive, 0.0 negative
    end_times: np.ndarray | None = None  # int64 [S]


@dataclass
class Video:
    """One video: id, labels and per-feature frame matrices.

    ``features`` maps a feature name (``"rgb"``, ``"audio"``, ...) to an array of
    shape ``[num_frames, D]``: float32 when dequantized, uint8 when the reader
    was asked to keep the quantized bytes. Video-level records have
    ``num_frames == 1``.
    """

    id: str
    labels: list[int]
    features: dict[str, np.ndarray]
    segments: SegmentAnnotations | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        if not self.features:
            return 0
        return int(next(iter(self.features.values())).shape[0])
