"""Segment-level evaluation: the 2019 metric (segment mAP@100,000, spec §8.6) of a segment model on rated segments.

Every rated segment of the data is scored for the evaluated classes; each class's submission is its segments in
descending score (ties in segment-id order), cut at ``top_n`` and scored by
:func:`videopool.metrics.segment.segment_average_precisions`, which drops the unrated pairs as the official script
does. Only rated segments are scored (not every 5 seconds of every video, as ``videopool localize`` does), so a
segment rated for no class never enters a ranking. A segment rated only for other classes does enter class
``c``'s ranking, and the official cut is applied before the unrated pairs are dropped, so once more segments are
scored than ``top_n`` (the 2019 validate set: 237,788 rated segments > 100,000) the cut can drop a rated pair
ranked below it. That is also why every segment's score of every class is kept below, not only the rated pairs':
the cut needs each rated pair's rank among all scored segments of its class.

Memory: three ``segments × V`` arrays (float32 scores and targets, the bool rated mask): 9 bytes per segment and
class, 7.5 MB for the demo's 3,240 held-out segments × 256 classes, 8.3 GB for the 237,788 rated segments of the
2019 validate set at V = 3,862 (not bounded: ``videopool localize`` keeps a fixed-size top-k instead).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from videopool.core.precision import autocast
from videopool.metrics.segment import segment_average_precisions

__all__ = ["WholeVideo", "score_rated_segments", "segment_metrics", "video_context"]


@torch.no_grad()
def score_rated_segments(model: nn.Module, batches: Iterable, *, device: torch.device | str = "cpu",
                         precision: str = "fp32",
                         context_once: bool = True) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(segment ids, probabilities [S, V], targets [S, V], rated [S, V])`` of the batches of a
    :class:`~videopool.data.segments.SegmentLoader`; the model runs in eval mode and gets the whole video
    only when it needs it (``needs_video_context``): encoded once per video of a batch and gathered per segment
    (:func:`video_context`), or with ``context_once=False`` handed row for row (the same scores)."""
    was_training = model.training
    model.eval()
    needs_video = bool(getattr(model, "needs_video_context", False))
    ids: list[str] = []
    scores, targets, rated = [], [], []
    try:
        for batch in batches:
            batch = batch.to(device)
            with autocast(torch.device(device), precision):
                if needs_video and context_once:
                    extra = {"context": video_context(model, batch)}
                else:
                    extra = batch.model_inputs() if needs_video else {}
                probabilities = model(batch.frames, batch.mask, **extra)
            probabilities = probabilities.float().cpu()
            if not bool(torch.isfinite(probabilities).all()):
                raise ValueError(f"the model gave non-finite scores for segments {batch.ids[:4]}")
            ids.extend(batch.ids)
            scores.append(probabilities.numpy())
            targets.append(batch.targets.cpu().numpy())
            rated.append(batch.rated.cpu().numpy())
    finally:
        model.train(was_training)
    if not ids:
        raise ValueError("no rated segment to evaluate: the data holds no segment ratings "
                         "(segment_labels / segment_start_times / segment_scores)")
    return ids, np.concatenate(scores), np.concatenate(targets), np.concatenate(rated)


def video_context(model: nn.Module, batch) -> torch.Tensor:
    """``model.encode_context`` of each distinct video of a segment batch (ids ``videoId:start``; the rows of one
    video carry the same whole video), gathered back to one row per segment: ``[B, C]``."""
    videos = [segment_id.rsplit(":", 1)[0] for segment_id in batch.ids]
    first: dict[str, int] = {}
    for row, video in enumerate(videos):
        first.setdefault(video, row)
    unique = torch.tensor(list(first.values()), device=batch.mask.device)
    position = {video: i for i, video in enumerate(first)}
    inverse = torch.tensor([position[v] for v in videos], device=batch.mask.device)
    frames = {name: x.index_select(0, unique) for name, x in batch.video_frames.items()}
    encoded = model.encode_context(frames, batch.video_mask.index_select(0, unique))
    return encoded.index_select(0, inverse)


def segment_metrics(ids: Sequence[str], scores: np.ndarray, targets: np.ndarray, rated: np.ndarray, *,
                    classes: Sequence[int] | None = None, top_n: int = 100_000) -> dict[str, Any]:
    """Segment mAP@``top_n`` over ``classes`` (default: every class with a rated positive) and the per-class APs.

    Returns ``segment_map``, ``per_class_ap`` (class id -> AP), ``num_segments``, ``num_rated_pairs``,
    ``num_positive_pairs``, ``num_classes`` (evaluated), ``rated_pair_loss`` (mean BCE over rated pairs)."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("a segment appears twice in the evaluation data (the same video in two files?)")
    rows, cols = np.nonzero(rated)
    truth = {(ids[r], int(c)): float(targets[r, c]) for r, c in zip(rows, cols)}
    positives = set(int(c) for r, c in zip(rows, cols) if targets[r, c] > 0)
    wanted = sorted(positives) if classes is None else [int(c) for c in classes if int(c) in positives]
    if not wanted:
        raise ValueError("no evaluated class has a rated positive segment: segment mAP is undefined")
    order_ids = np.asarray(ids)
    submission = {}
    for c in wanted:
        order = np.lexsort((order_ids, -scores[:, c]))[:top_n]  # score descending, then segment id
        submission[c] = order_ids[order].tolist()
    aps = segment_average_precisions(submission, truth, top_n, missing_positives="skip")
    p = np.clip(scores[rows, cols].astype(np.float64), 1e-7, 1 - 1e-7)
    y = targets[rows, cols].astype(np.float64)
    loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if len(p) else float("nan")
    return {"segment_map": float(np.mean(list(aps.values()))), "per_class_ap": aps, "num_segments": len(ids),
            "num_rated_pairs": int(len(rows)), "num_positive_pairs": int((y > 0).sum()), "num_classes": len(aps),
            "rated_pair_loss": loss, "top_n": top_n}


class WholeVideo(nn.Module):
    """A segment model applied to whole videos (the video is both the segment and its context), so the
    video-level metrics of :func:`videopool.inference.evaluate` can be computed for it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.output_size = model.output_size

    def forward(self, frames, mask=None):
        return self.model(frames, mask, frames, mask)
