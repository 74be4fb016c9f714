"""Ranking primitives shared by every metric: array conversion, a top-k with a
fixed tie order, sort keys, and the precision sum that turns a ranked label list
into an average precision.

Tie orders (``tie_order`` argument of the public metrics):

* ``"pessimistic"`` (default): among equal scores, negatives are ranked before
  positives. The result is a deterministic lower bound that does not depend on
  the order in which videos arrive, on batch boundaries, or on how videos are
  split across DDP ranks. Without ties it equals every other order.
* ``"tf1"``: replays the TF1 starter code (``average_precision_calculator``):
  a ``heapq`` of ``(score, label)`` tuples filled in the starter code's
  insertion order, a ``random.seed(0)`` shuffle, then a stable descending sort.
  See ``docs/metrics.md`` for what is and is not bit-exact.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

import numpy as np
import torch

TIE_ORDERS = ("pessimistic", "tf1")


def check_tie_order(tie_order: str) -> str:
    if tie_order not in TIE_ORDERS:
        raise ValueError(f"tie_order must be one of {TIE_ORDERS}, got {tie_order!r}")
    return tie_order


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A torch view of a numpy array / tensor / nested list (no copy where possible)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    array = np.asarray(x)
    if array.dtype == object:
        raise TypeError(f"{name} must be numeric, got an object array")
    return torch.from_numpy(np.ascontiguousarray(array))


def as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_matrices(predictions: Any, labels: Any, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a ``[B, V]`` prediction / label pair; returns float scores and bool labels."""
    scores = as_tensor(predictions, "predictions")
    truth = as_tensor(labels, "labels")
    if scores.dim() != 2:
        raise ValueError(f"predictions must be [num_videos, num_classes], got shape {tuple(scores.shape)}")
    if truth.shape != scores.shape:
        raise ValueError(f"labels shape {tuple(truth.shape)} does not match predictions shape {tuple(scores.shape)}")
    if num_classes is not None and scores.shape[1] != num_classes:
        raise ValueError(f"predictions have {scores.shape[1]} classes, the evaluator was built for {num_classes}")
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()  # integers and half precision rank as float32
    if torch.isnan(scores).any():
        raise ValueError("predictions contain NaN; a diverged model cannot be ranked")
    return scores, truth.to(scores.device) > 0


def stable_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row, sorted by score descending, ties by lower column index.

    ``torch.topk`` picks tied members arbitrarily; rows whose k-th and (k+1)-th
    scores tie fall back to a full stable sort, so membership is reproducible.
    Returns ``(values [B, k], indices [B, k])``.
    """
    num_rows, width = scores.shape
    k = min(k, width)
    if k == 0 or num_rows == 0:
        empty = torch.empty(num_rows, k, dtype=torch.long, device=scores.device)
        return scores.new_empty(num_rows, k), empty
    take = min(k + 1, width)
    values, indices = torch.topk(scores, take, dim=1, largest=True, sorted=True)
    boundary_tie = values[:, k - 1] == values[:, k] if take > k else None
    values, indices = values[:, :k], indices[:, :k]
    # Order tied members by column index: sort by index, then stably by value.
    by_index = torch.argsort(indices, dim=1)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_value = torch.sort(values, dim=1, descending=True, stable=True).indices
    values, indices = values.gather(1, by_value), indices.gather(1, by_value)
    if boundary_tie is not None and bool(boundary_tie.any()):
        rows = boundary_tie.nonzero().squeeze(1)
        full = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        values[rows], indices[rows] = full.values[:, :k], full.indices[:, :k]
    return values, indices


def descending_score_key(scores: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is the float32 scores' descending order."""
    values = np.asarray(scores, dtype=np.float32) + np.float32(0.0)  # folds -0.0 into +0.0
    bits = values.view(np.uint32)
    # Map IEEE bits to unsigned integers in float order: flip all bits of negatives,
    # set the sign bit of positives. Then invert, so larger scores get smaller keys.
    monotone = np.where(bits >> np.uint32(31) != 0, ~bits, bits | np.uint32(0x80000000))
    np.invert(monotone, out=monotone)
    return monotone.astype(np.uint64)


def ranked_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels in rank order: score descending, negatives before positives on ties."""
    key = descending_score_key(scores)
    key <<= np.uint64(1)
    key |= np.asarray(labels, dtype=bool)
    key.sort()
    return (key & np.uint64(1)).astype(bool)


def precision_sum(ranked: np.ndarray) -> float:
    """Sum of precision@i over the ranks i holding a positive (the AP numerator)."""
    positive_ranks = np.flatnonzero(np.asarray(ranked, dtype=bool)) + 1.0
    return float(np.sum(np.arange(1, positive_ranks.size + 1) / positive_ranks))


def tf1_ranked_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels in the rank order the TF1 starter code produces (slow, pure Python).

    ``scores``/``labels`` must be in the starter code's insertion order. The
    starter code pushes ``(score, label)`` tuples onto a heap (no pops when
    ``top_n`` is None), reads the heap's internal array, shuffles it with
    ``random.seed(0)``-seeded ``random.sample`` and stable-sorts by score
    descending; each step is replayed here with a private ``random.Random(0)``
    so the global random state is left alone.
    """
    heap: list[tuple[float, float]] = []
    for pair in zip(np.asarray(scores, dtype=np.float32).tolist(), np.asarray(labels, dtype=np.float64).tolist()):
        heapq.heappush(heap, pair)
    if not heap:
        return np.zeros(0, dtype=bool)
    heap_scores = np.array([pair[0] for pair in heap])
    heap_labels = np.array([pair[1] > 0 for pair in heap])
    permutation = random.Random(0).sample(range(len(heap)), len(heap))
    heap_scores, heap_labels = heap_scores[permutation], heap_labels[permutation]
    return heap_labels[np.argsort(-heap_scores, kind="stable")]
