"""Temporal localisation (YouTube-8M Segments, 2019): score every 5-second segment of every video for every
whitelisted class in one batched pass, keep each class's best segments in bounded memory, write the
``Class,Segments`` submission (spec §9, seed paper 004 §4.2).

Segments follow the 2019 convention: a video of ``n`` frames (one frame per second) is cut into consecutive
segments starting at frames ``0, 5, 10, ...`` while ``start < n``; a segment's id is ``videoId:start``. A
trailing partial segment (``n`` not a multiple of 5) is kept and scored on its real frames only (its missing
frames are masked), as the TF1 starter code does (it gives such a segment ``num_frames = n - start``); it can
only match a rating if the ratings cover it. ``context_frames = t`` widens each segment by ``t`` frames on each
side (seed 004 and CESHINE use 3); frames before the video's start or after its end are masked, never invented.
``drop_edge_segments`` leaves out the first 6 and the last 2 segments of every video, which the 2019 raters never
rated (spec §1.4; the last 2 counted after the partial segment, as CESHINE's unfold does).

Batching: the segments of all the videos of a loader batch are scored together, in chunks of ``batch_size``
segments, through the model's forward on frames ``[S, 5 + 2t, D]`` and mask ``[S, 5 + 2t]`` (the segment-model
contract of :mod:`videopool.models.segment`; an ordinary video-level model is a context-ignoring segment
scorer). A model with ``needs_video_context = True`` gets each segment's whole video (at most ``video_frames``
evenly spaced frames, as in its training) as a precomputed context: ``model.encode_context`` runs once per loader
batch on its unique videos, and each chunk gathers the rows of its segments (``forward(..., context=[S, C])``),
so a 300-frame video is encoded once, not once per each of its 60 segments. ``context_once=False`` keeps the
former path, the video handed row for row to ``forward`` (its chunks capped at :data:`CONTEXT_CHUNK` segments:
256 x 300 frames x 1152 x 4 B = 354 MB of gathered frames), for comparison. There is never one pass per class: the
whitelist is a column selection of each chunk's scores, which go to a
:class:`~videopool.inference.topk.StreamingTopK` (memory: its docstring).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videopool.core.files import atomic_write
from videopool.core.errors import UserError
from videopool.data.segments import even_frames
from videopool.inference.formats import write_segment_rows
from videopool.inference.predict import bf16_copy, check_finite_scores
from videopool.inference.topk import StreamingTopK
from videopool.models.output import probabilities_of
from videopool.models.segment import encode_member_contexts, member_context_inputs

SEGMENT_FRAMES = 5  # the 2019 segments are 5 one-second frames
DROPPED_EDGE_SEGMENTS = (6, 2)  # first / last segments of a video that were never rated (spec §1.4)
CONTEXT_CHUNK = 256  # segments per forward when each row carries its whole video (context_once=False)
DEFAULT_TOP_N = 100_000  # segments per class in a Kaggle submission


@dataclass
class VideoSegments:
    """The segments of a batch of videos: ``frames {name: [S, W, D]}``, ``mask [S, W]`` (``W = 5 + 2t``),
    ``video_rows [S]`` (the batch row of each segment's video) and ``starts [S]`` (its first frame)."""

    frames: dict[str, torch.Tensor]
    mask: torch.Tensor
    video_rows: torch.Tensor
    starts: torch.Tensor


def split_segments(frames: dict[str, torch.Tensor], mask: torch.Tensor, context_frames: int = 0,
                   drop_edge_segments: bool = False) -> VideoSegments:
    """Cut each video of a batch (frames ``[B, N, D]``, real frames first as ``mask [B, N]`` says) into its
    5-frame segments, widened by ``context_frames`` masked-at-the-edges frames on each side (module docstring)."""
    if context_frames < 0:
        raise ValueError(f"context_frames must be >= 0, got {context_frames}")
    lengths = mask.sum(dim=1)
    counts = (lengths + SEGMENT_FRAMES - 1) // SEGMENT_FRAMES
    num_slots = int(counts.max()) if counts.numel() else 0
    width, t = SEGMENT_FRAMES + 2 * context_frames, context_frames
    index = torch.arange(num_slots, device=mask.device)
    keep = index[None, :] < counts[:, None]
    if drop_edge_segments:
        first, last = DROPPED_EDGE_SEGMENTS
        keep &= (index[None, :] >= first) & (index[None, :] < counts[:, None] - last)
    rows, slots = keep.nonzero(as_tuple=True)
    # Pad the time axis to t + (a multiple of 5) + t, so that window s covers frames 5s - t .. 5s + 4 + t.
    right = num_slots * SEGMENT_FRAMES - mask.shape[1] + t
    windows = {}
    for name, x in frames.items():
        unfolded = F.pad(x, (0, 0, t, right)).unfold(1, width, SEGMENT_FRAMES)  # [B, slots, D, W]
        windows[name] = unfolded[rows, slots].transpose(1, 2).contiguous()  # [S, W, D]
    segment_mask = F.pad(mask, (t, right), value=False).unfold(1, width, SEGMENT_FRAMES)[rows, slots]
    return VideoSegments(windows, segment_mask, rows, slots * SEGMENT_FRAMES)


class AveragedScorer(nn.Module):
    """The mean of several models' probabilities (seed 004's final prediction averages its context-ignoring and
    context-aware classifiers); unlike :class:`videopool.models.segment.AveragedSegmentClassifier` it takes any
    models, video-level runs included, and is never saved."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.needs_video_context = any(getattr(m, "needs_video_context", False) for m in members)

    @property
    def context_size(self) -> int:
        return sum(m.context_size for m in self.members if getattr(m, "needs_video_context", False))

    def encode_context(self, video_frames, video_mask) -> torch.Tensor:
        return encode_member_contexts(self.members, video_frames, video_mask)

    def forward(self, frames, mask, video_frames=None, video_mask=None, *, context=None) -> torch.Tensor:
        extras = member_context_inputs(self.members, video_frames, video_mask, context)
        return torch.stack([probabilities_of(m(frames, mask, **extra)) for m, extra in zip(self.members, extras)]
                           ).mean(dim=0)


@dataclass
class Timeline:
    """One video's per-segment scores over the whole label space, and its ratings (None if the data has none)."""

    video_id: str
    starts: np.ndarray  # int64 [S]
    scores: np.ndarray  # float32 [S, V]
    ratings: object = None  # videopool.data.SegmentAnnotations


@dataclass
class Localization:
    """What :func:`localize` found: each class's best segments (:meth:`ranked`) and the counts."""

    class_ids: list[int]
    top_k: StreamingTopK
    names: list[str]  # segment number -> "videoId:start"
    num_videos: int = 0
    timeline: Timeline | None = None
    _result: tuple | None = field(default=None, repr=False)

    @property
    def num_segments(self) -> int:
        return len(self.names)

    def ranked(self) -> Iterator[tuple[int, list[str]]]:
        """``(class id, segment ids best first)`` for every class of the whitelist, in increasing class id."""
        if self._result is None:
            self._result = self.top_k.result()
        _, items, counts = self._result
        for column in np.argsort(self.class_ids, kind="stable").tolist():
            kept = items[column, : int(counts[column])].tolist()
            yield self.class_ids[column], [self.names[i] for i in kept]

    def write(self, out: str | os.PathLike) -> None:
        """Write the ``Class,Segments`` CSV atomically (an error mid-way leaves no partial file)."""
        with atomic_write(out, "w", newline="", encoding="utf-8") as handle:
            write_segment_rows(handle, self.ranked())


def localize(
    model: nn.Module,
    loader: Iterable,
    class_ids: Sequence[int],
    *,
    top_n: int = DEFAULT_TOP_N,
    batch_size: int = 2048,
    context_frames: int = 0,
    video_frames: int | None = None,
    drop_edge_segments: bool = False,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    timeline_video: str | None = None,
    progress: bool = False,
    pending: int | None = None,
    context_once: bool = True,
) -> Localization:
    """Score every segment of every video of ``loader`` (batches of whole videos: ``strategy="all"``) for the
    classes ``class_ids`` and keep each class's ``top_n`` best (module docstring). A model that needs the whole
    video gets at most ``video_frames`` evenly spaced frames of it (None: all), as in its training
    (:func:`videopool.data.segments.even_frames`). ``timeline_video`` keeps that video's per-segment scores for
    :func:`videopool.inference.timeline.plot_timeline`. ``context_once=False``: the former per-row context
    path (module docstring), same scores."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"inference precision must be 'fp32' or 'bf16', got {precision!r}")
    class_ids = [int(c) for c in class_ids]
    if not class_ids or len(set(class_ids)) != len(class_ids):
        raise ValueError("class_ids must be a non-empty list of distinct class ids")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    needs_context = bool(getattr(model, "needs_video_context", False))
    per_row = needs_context and not context_once
    chunk = min(batch_size, CONTEXT_CHUNK) if per_row else batch_size
    columns = torch.tensor(class_ids)
    result = Localization(class_ids, StreamingTopK(len(class_ids), top_n, pending), [])
    was_training = model.training
    runner = bf16_copy(model) if precision == "bf16" else model
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    runner.eval()
    from tqdm.auto import tqdm

    bar = tqdm(desc="localize", unit="video", disable=not progress, dynamic_ncols=True)
    try:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            frames = {name: x.to(dtype) for name, x in batch.frames.items()}
            segments = split_segments(frames, batch.mask, context_frames, drop_edge_segments)
            if needs_context:
                context, context_mask = even_context(frames, batch.mask, video_frames)
                if not per_row:
                    with torch.inference_mode():  # one encoding per video of the batch: [videos, C]
                        encoded = runner.encode_context(context, context_mask)
            names = [f"{batch.ids[r]}:{s}" for r, s in zip(segments.video_rows.tolist(), segments.starts.tolist())]
            for start in range(0, len(names), chunk):
                part = slice(start, start + chunk)
                inputs = {name: x[part] for name, x in segments.frames.items()}
                extra = {}
                if needs_context:
                    rows = segments.video_rows[part]
                    extra = {"video_frames": {name: x.index_select(0, rows) for name, x in context.items()},
                             "video_mask": context_mask.index_select(0, rows)} if per_row \
                        else {"context": encoded.index_select(0, rows)}
                with torch.inference_mode():  # the top-k state stays an ordinary tensor, updated outside
                    scores = probabilities_of(runner(inputs, segments.mask[part], **extra)).float().cpu()
                check_finite_scores(names[part], scores)
                if scores.shape[1] <= max(class_ids):
                    raise UserError(f"class id {max(class_ids)} of the whitelist is outside the model's "
                                    f"{scores.shape[1]} classes; give --classes the ids of its label space")
                first = len(result.names)
                result.names.extend(names[part])
                result.top_k.add(scores[:, columns], torch.arange(first, first + scores.shape[0]))
                if timeline_video is not None:
                    _record_timeline(result, batch, segments, part, scores, timeline_video)
            result.num_videos += len(batch.ids)
            bar.update(len(batch.ids))
            bar.set_postfix(segments=len(result.names), refresh=False)
    finally:
        bar.close()
        model.train(was_training)
    return result


def even_context(frames: dict[str, torch.Tensor], mask: torch.Tensor,
                 limit: int | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The whole videos of a batch as a context model saw them in training: at most ``limit`` evenly spaced real
    frames each (all of them when None or when the video is short enough), real frames first, then padding."""
    lengths = mask.sum(dim=1).tolist()
    if limit is None or max(lengths, default=0) <= limit:
        return frames, mask
    picks = [torch.from_numpy(even_frames(n, limit)).to(mask.device) for n in lengths]
    width = max(len(p) for p in picks)
    index = torch.zeros(len(picks), width, dtype=torch.int64, device=mask.device)
    kept = torch.zeros(len(picks), width, dtype=torch.bool, device=mask.device)
    for row, pick in enumerate(picks):
        index[row, :len(pick)], kept[row, :len(pick)] = pick, True
    gathered = {name: x.gather(1, index[..., None].expand(-1, -1, x.shape[-1])) * kept[..., None]
                for name, x in frames.items()}
    return gathered, kept


def _record_timeline(result: Localization, batch, segments: VideoSegments, part: slice, scores: torch.Tensor,
                     video_id: str) -> None:
    if video_id not in batch.ids:
        return
    row = batch.ids.index(video_id)
    mine = (segments.video_rows[part] == row).cpu().numpy()
    if not mine.any():
        return
    starts = segments.starts[part].cpu().numpy()[mine]
    values = scores.numpy()[mine]
    if result.timeline is None:
        ratings = batch.segments[row] if batch.segments is not None else None
        result.timeline = Timeline(video_id, starts, values, ratings)
    else:  # the video's segments spanned two chunks
        result.timeline.starts = np.concatenate([result.timeline.starts, starts])
        result.timeline.scores = np.concatenate([result.timeline.scores, values])
