"""Segment-rated records (YouTube-8M Segments, 2019) as training and evaluation samples.

One sample per rated segment (unique start time) of a video, as the reference reader builds it (spec §1.4)::

    frames   {m: [5 + 2t, D_m]}   frames start − t … start + 4 + t (t = ``context``; zero rows outside the video)
    mask     [5 + 2t] bool        True on frames inside the video
    targets  [V] float32          the rated score at each rated class, 0 elsewhere
    rated    [V] bool             True exactly at the rated (segment, class) pairs
    mined    [V] bool             with ``mined_negatives``: classes in neither the video's labels nor any
                                  positive rating of the video (CESHINE's mined negatives, spec §7.4)
    video    {m: [T, D_m]}        the whole video (at most ``video_frames`` frames, evenly spaced), for
                                  context-aware models only

Only rated pairs carry a label: the ratings are not exhaustive, so an unrated pair is never a negative unless the
caller asks for mined negatives (spec §12 P28 — the TF1 starter code trains every unrated pair as a negative).
A segment whose start lies at or beyond the video's last frame is skipped, as CESHINE does; a rated class id
outside ``[0, V)`` is an error naming the video (it would otherwise index past the label vector).

The 2019 whitelist of 1,000 rated classes ships as ``segment_label_ids.csv`` (:func:`segment_class_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Iterator, Sequence

import numpy as np
import torch

from videopool.data.errors import RecordError
from videopool.data.io import iter_videos
from videopool.data.sharding import shuffle_buffer as buffered_shuffle
from videopool.data.video import Video

SEGMENT_FRAMES = 5  # the 2019 ratings are of 5-second segments, one frame per second
WHITELIST_FILE = "segment_label_ids.csv"


def segment_class_ids() -> np.ndarray:
    """The 1,000 class ids of the 2019 segment task (google/youtube-8m ``segment_label_ids.csv``, copied into
    the package so nothing is downloaded at run time), in the file's order."""
    text = (resources.files("videopool.data") / WHITELIST_FILE).read_text(encoding="utf-8")
    lines = text.split()
    if not lines or lines[0] != "Index":
        raise ValueError(f"{WHITELIST_FILE}: expected the header 'Index'")
    return np.asarray([int(line) for line in lines[1:]], dtype=np.int64)


def segment_window(features: np.ndarray, start: int, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``start - context … start + 4 + context`` of ``features [N, D]`` and their mask; rows outside
    ``[0, N)`` are zeros with mask False."""
    length = SEGMENT_FRAMES + 2 * context
    out = np.zeros((length, features.shape[1]), dtype=np.float32)
    mask = np.zeros(length, dtype=bool)
    first, last = max(start - context, 0), min(start + SEGMENT_FRAMES + context, features.shape[0])
    if last > first:
        offset = first - (start - context)
        out[offset:offset + last - first] = features[first:last]
        mask[offset:offset + last - first] = True
    return out, mask


def even_frames(num_frames: int, limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` evenly spaced frames of a video (all of them when it is short enough)."""
    if limit is None or num_frames <= limit:
        return np.arange(num_frames)
    return np.floor(np.arange(limit) * (num_frames / limit)).astype(np.int64)


def segment_samples(video: Video, num_classes: int, *, context: int = 0, with_video: bool = False,
                    video_frames: int | None = 300, mined_negatives: bool = False) -> list[dict]:
    """The samples of one video's rated segments (see the module docstring), in start-time order."""
    segments = video.segments
    if segments is None or len(segments.labels) == 0:
        return []
    labels = np.asarray(segments.labels, dtype=np.int64)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise RecordError(f"video {video.id!r}: segment label {int(bad[0])} is outside [0, {num_classes}) "
                          "(the model's label space)", kind="label_range")
    scores = np.asarray(segments.scores, dtype=np.float32)
    if not np.isfinite(scores).all():
        raise RecordError(f"video {video.id!r}: a segment score is not finite", kind="not_a_record")
    starts = np.asarray(segments.start_times, dtype=np.int64)
    num_frames = video.num_frames
    whole = None
    if with_video:
        keep = even_frames(num_frames, video_frames)
        whole = {name: torch.from_numpy(np.ascontiguousarray(x[keep], dtype=np.float32))
                 for name, x in video.features.items()}
    negatives = None
    if mined_negatives:
        known = set(int(c) for c in video.labels) | set(int(c) for c in labels[scores > 0])
        negatives = np.ones(num_classes, dtype=bool)
        negatives[list(known)] = False
    samples = []
    for start in np.unique(starts):
        if start >= num_frames or start < 0:
            continue
        rows = starts == start
        targets = np.zeros(num_classes, dtype=np.float32)
        rated = np.zeros(num_classes, dtype=bool)
        targets[labels[rows]] = scores[rows]
        rated[labels[rows]] = True
        frames, mask = {}, None
        for name, x in video.features.items():
            frames[name], mask = segment_window(x, int(start), context)
        mined = np.zeros(num_classes, dtype=bool) if negatives is None else negatives & ~rated
        samples.append({"id": f"{video.id}:{int(start)}", "frames": {k: torch.from_numpy(v) for k, v in frames.items()},
                        "mask": torch.from_numpy(mask), "targets": torch.from_numpy(targets),
                        "rated": torch.from_numpy(rated), "mined": torch.from_numpy(mined), "video": whole})
    return samples


@dataclass
class SegmentBatch:
    """Padded samples: ``frames {m: [B, L, D]}``, ``mask [B, L]``, ``targets``/``rated``/``mined [B, V]`` and,
    for context-aware models, ``video_frames {m: [B, T, D]}`` (zero padded) with ``video_mask [B, T]``."""

    ids: list[str]
    frames: dict[str, torch.Tensor]
    mask: torch.Tensor
    targets: torch.Tensor
    rated: torch.Tensor
    mined: torch.Tensor
    video_frames: dict[str, torch.Tensor] | None = None
    video_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "SegmentBatch":
        def move(x):
            return None if x is None else x.to(device, non_blocking=non_blocking)

        video = None if self.video_frames is None else {k: move(v) for k, v in self.video_frames.items()}
        return SegmentBatch(self.ids, {k: move(v) for k, v in self.frames.items()}, move(self.mask),
                            move(self.targets), move(self.rated), move(self.mined), video, move(self.video_mask))

    def packed_labels(self, positive_weight: float = 1.0, negative_weight: float = 1.0,
                      mined_weight: float = 0.0) -> torch.Tensor:
        """``[B, 3, V]``: the targets, each rated pair's loss weight (``positive_weight`` for a positive rating,
        ``negative_weight`` for a negative one, 0 for an unrated pair) and each mined negative's weight — what a
        segment model's ``loss`` takes (``videopool.models.segment.rated_pair_loss``)."""
        weights = torch.where(self.targets > 0, positive_weight, negative_weight) * self.rated
        return torch.stack([self.targets, weights.float(), self.mined.float() * mined_weight], dim=1)

    def model_inputs(self) -> dict[str, torch.Tensor | dict | None]:
        """The keyword arguments a segment model's forward takes besides ``frames``/``mask``."""
        return {"video_frames": self.video_frames, "video_mask": self.video_mask}


def collate_segments(samples: Sequence[dict]) -> SegmentBatch:
    """Stack samples of equal window length; whole videos are zero padded to the longest in the batch."""
    frames = {name: torch.stack([s["frames"][name] for s in samples]) for name in samples[0]["frames"]}
    video_frames = video_mask = None
    if samples[0]["video"] is not None:
        longest = max(next(iter(s["video"].values())).shape[0] for s in samples)
        video_mask = torch.zeros(len(samples), longest, dtype=torch.bool)
        video_frames = {}
        for name, first in samples[0]["video"].items():
            padded = torch.zeros(len(samples), longest, first.shape[1])
            for row, s in enumerate(samples):
                n = s["video"][name].shape[0]
                padded[row, :n] = s["video"][name]
                video_mask[row, :n] = True
            video_frames[name] = padded
    return SegmentBatch([s["id"] for s in samples], frames, torch.stack([s["mask"] for s in samples]),
                        torch.stack([s["targets"] for s in samples]), torch.stack([s["rated"] for s in samples]),
                        torch.stack([s["mined"] for s in samples]), video_frames, video_mask)


class SegmentLoader:
    """Batches of rated segments from TFRecord shards, streamed in bounded memory, in one process.

    With ``shuffle`` the file order is permuted and samples pass through a shuffle buffer of
    ``shuffle_buffer`` samples, both from a generator seeded by ``(seed, epoch)`` alone — so an epoch's batches
    are the same in every run, which ``--resume`` relies on to skip the batches already trained on.
    ``features``: the modalities to keep (others are dropped before batching)."""

    def __init__(self, files: Sequence[str], num_classes: int, *, batch_size: int, context: int = 0,
                 with_video: bool = False, video_frames: int | None = 300, mined_negatives: bool = False,
                 shuffle: bool = False, seed: int = 0, epoch: int = 0, shuffle_buffer: int = 4096,
                 features: Sequence[str] | None = None, on_error: str = "error") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.files, self.num_classes, self.batch_size = list(files), num_classes, batch_size
        self.options = {"context": context, "with_video": with_video, "video_frames": video_frames,
                        "mined_negatives": mined_negatives}
        self.shuffle, self.seed, self.epoch, self.shuffle_buffer = shuffle, seed, epoch, shuffle_buffer
        self.features, self.on_error = None if features is None else list(features), on_error

    def samples(self) -> Iterator[dict]:
        rng = np.random.default_rng([self.seed, self.epoch])
        files = [self.files[i] for i in rng.permutation(len(self.files))] if self.shuffle else self.files
        for video in iter_videos(files, num_classes=None, on_error=self.on_error):
            if self.features is not None:
                missing = [name for name in self.features if name not in video.features]
                if missing:
                    raise RecordError(f"video {video.id!r} has no feature {missing[0]!r} "
                                      f"(it has {sorted(video.features)})", kind="missing_feature")
                video.features = {name: video.features[name] for name in self.features}
            yield from segment_samples(video, self.num_classes, **self.options)

    def __iter__(self) -> Iterator[SegmentBatch]:
        stream = self.samples()
        if self.shuffle:
            stream = buffered_shuffle(stream, self.shuffle_buffer, np.random.default_rng([self.seed, self.epoch, 1]))
        batch: list[dict] = []
        for sample in stream:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield collate_segments(batch)
                batch = []
        if batch:
            yield collate_segments(batch)
