"""Video-level YouTube-8M metrics on a prediction matrix ``P [n, V]`` and labels ``Y [n, V]``.

* **Hit@1** — fraction of videos whose highest-scoring class is a positive.
* **PERR** — per video with ``n_v`` positives: of the ``n_v`` top-scoring classes,
  the fraction that are positive (and scored > 0); videos without labels count 0.
* **GAP@k** — every video contributes its top-``k`` ``(score, label)`` pairs to one
  global list; AP of that list with *all* positive labels of ``Y`` as denominator.
* **Per-class AP / mAP** — for class ``c`` the list is the pairs of class ``c`` that
  made some video's top-``k``; denominator = all positives of class ``c``.
  ``empty_classes="drop"`` averages over classes with at least one positive (TF1
  starter code, 2019 version); ``"zero"`` sums over all ``V`` classes and divides by ``V``
  (TF2 starter code ``official/projects/yt8m``, and the 2017 version of the TF1 starter code).

Arrays may be numpy or torch (any device); labels > 0 are positives; scores are
ranked as float32. For streaming over a large set use
:class:`videopool.metrics.StreamingEvaluator`, which gives identical results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from videopool.metrics.ranking import (
    as_numpy,
    check_matrices,
    check_tie_order,
    descending_score_key,
    precision_sum,
    ranked_labels,
    stable_top_k,
    tf1_ranked_labels,
)

EMPTY_CLASS_CONVENTIONS = ("drop", "zero")


Top = tuple[torch.Tensor, torch.Tensor]  # (values, indices) from stable_top_k, deep enough


def hits_at_one(scores: torch.Tensor, truth: torch.Tensor, top: Top | None = None) -> torch.Tensor:
    """Per video: is the arg-max class (first index on ties) a positive? float64 ``[B]``."""
    best = top[1][:, :1] if top is not None else scores.argmax(dim=1, keepdim=True)
    return truth.gather(1, best).squeeze(1).double()


def perr_per_video(scores: torch.Tensor, truth: torch.Tensor, top: Top | None = None) -> torch.Tensor:
    """Per video precision at equal recall rate, float64 ``[B]`` (0 for unlabelled videos).

    ``top`` may pass a :func:`stable_top_k` result at least as deep as the most
    positives of any video, to share one top-k between metrics.
    """
    num_positive = truth.sum(dim=1)
    most = int(num_positive.max()) if num_positive.numel() else 0
    if most == 0:
        return torch.zeros(truth.shape[0], dtype=torch.float64, device=truth.device)
    values, indices = top if top is not None else stable_top_k(scores, most)
    values, indices = values[:, :most], indices[:, :most]
    ranks = torch.arange(values.shape[1], device=truth.device)
    # The starter code only counts a hit when the class was scored above 0.
    hit = truth.gather(1, indices) & (values > 0) & (ranks < num_positive.unsqueeze(1))
    precision = hit.sum(dim=1).double() / num_positive.clamp_min(1).double()
    return torch.where(num_positive > 0, precision, torch.zeros_like(precision))


def hit_at_one(predictions: Any, labels: Any) -> float:
    """Mean over videos of ``Y[v, argmax_c P[v, c]]``."""
    scores, truth = check_matrices(predictions, labels)
    return float(hits_at_one(scores, truth).mean()) if len(scores) else 0.0


def perr(predictions: Any, labels: Any) -> float:
    """Precision at equal recall rate, averaged over all videos (unlabelled ones count 0)."""
    scores, truth = check_matrices(predictions, labels)
    return float(perr_per_video(scores, truth).mean()) if len(scores) else 0.0


def top_k_triplets(
    scores: torch.Tensor, truth: torch.Tensor, k: int, tie_order: str = "pessimistic", top: Top | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's top-``k`` as flat ``(score float32, label bool, class int32)`` arrays.

    Pessimistic mode: members by :func:`stable_top_k`, video-major order. TF1
    mode: members by ``numpy.argpartition`` like the starter code, ordered class
    by class and, within a class, by video — the order in which the starter code
    feeds its AP heaps.
    """
    k = min(k, scores.shape[1])
    if check_tie_order(tie_order) == "tf1":
        dense = as_numpy(scores).astype(np.float32, copy=False)
        classes = np.argpartition(dense, -k, axis=1)[:, -k:].reshape(-1)
        videos = np.repeat(np.arange(dense.shape[0]), k)
        order = np.argsort(classes, kind="stable")
        classes, videos = classes[order], videos[order]
        picked_scores = dense[videos, classes]
        picked_labels = as_numpy(truth)[videos, classes]
        return picked_scores, picked_labels.astype(bool), classes.astype(np.int32)
    values, indices = top if top is not None else stable_top_k(scores, k)
    values, indices = values[:, :k], indices[:, :k]
    picked = truth.gather(1, indices)
    return (
        as_numpy(values.float()).reshape(-1),
        as_numpy(picked).reshape(-1),
        as_numpy(indices.int()).reshape(-1),
    )


def class_average_precisions(
    scores: np.ndarray,
    labels: np.ndarray,
    classes: np.ndarray,
    class_positive_counts: np.ndarray,
    tie_order: str = "pessimistic",
) -> np.ndarray:
    """Per-class AP (float64 ``[V]``, 0 where a class has no positive) from top-k triplets."""
    counts = np.asarray(class_positive_counts, dtype=np.int64)
    num_classes = counts.size
    classes = np.asarray(classes, dtype=np.int64)
    numerators = np.zeros(num_classes, dtype=np.float64)
    if check_tie_order(tie_order) == "tf1":
        order = np.argsort(classes, kind="stable")  # keeps insertion order inside a class
        bounds = np.searchsorted(classes[order], np.arange(num_classes + 1))
        for c in np.flatnonzero(counts > 0):
            members = order[bounds[c] : bounds[c + 1]]
            numerators[c] = precision_sum(tf1_ranked_labels(scores[members], labels[members]))
    elif classes.size:
        # One sort by (class, score descending, label) ranks every class at once.
        key = descending_score_key(scores)
        key <<= np.uint64(1)
        key |= np.asarray(labels, dtype=bool)
        key |= classes.astype(np.uint64) << np.uint64(33)
        key.sort()
        # Only the positive ranks matter; working on them alone keeps memory near 1x the keys.
        positions = np.flatnonzero(key & np.uint64(1))
        positive_classes = (key[positions] >> np.uint64(33)).astype(np.int64)
        starts = np.searchsorted(key, np.arange(num_classes, dtype=np.uint64) << np.uint64(33))
        positives_before = np.searchsorted(positions, starts)
        rank_in_class = positions - starts[positive_classes] + 1
        hits_in_class = np.arange(1, positions.size + 1) - positives_before[positive_classes]
        numerators = np.bincount(positive_classes, weights=hits_in_class / rank_in_class, minlength=num_classes)
    return np.divide(numerators, counts, out=np.zeros(num_classes), where=counts > 0)


def global_average_precision(
    scores: np.ndarray, labels: np.ndarray, total_positives: int, tie_order: str = "pessimistic"
) -> float:
    """AP of the pooled top-k list with ``total_positives`` (all labels) as denominator."""
    if total_positives <= 0:
        return 0.0
    if check_tie_order(tie_order) == "tf1":
        return precision_sum(tf1_ranked_labels(scores, labels)) / total_positives
    return precision_sum(ranked_labels(scores, labels)) / total_positives


def reduce_class_aps(per_class_ap: Any, class_positive_counts: Any, empty_classes: str = "drop") -> float:
    """mAP from per-class APs: ``"drop"`` = mean over classes with positives (TF1 starter code),
    ``"zero"`` = sum over all classes / V (TF2 starter code). 0.0 when nothing is left to average."""
    ap = np.asarray(per_class_ap, dtype=np.float64)
    counts = np.asarray(class_positive_counts)
    if empty_classes == "drop":
        present = counts > 0
        return float(ap[present].mean()) if present.any() else 0.0
    if empty_classes == "zero":
        return float(ap.sum() / ap.size) if ap.size else 0.0
    raise ValueError(f"empty_classes must be one of {EMPTY_CLASS_CONVENTIONS}, got {empty_classes!r}")


def gap_at_k(predictions: Any, labels: Any, k: int = 20, *, tie_order: str = "pessimistic") -> float:
    """Global average precision of every video's top-``k`` (Kaggle YouTube-8M GAP@20)."""
    scores, truth = check_matrices(predictions, labels)
    picked_scores, picked_labels, _ = top_k_triplets(scores, truth, k, tie_order)
    return global_average_precision(picked_scores, picked_labels, int(truth.sum()), tie_order)


def per_class_average_precision(
    predictions: Any, labels: Any, k: int = 20, *, tie_order: str = "pessimistic"
) -> np.ndarray:
    """AP of each class over the top-``k``-restricted lists; float64 ``[V]``."""
    scores, truth = check_matrices(predictions, labels)
    triplets = top_k_triplets(scores, truth, k, tie_order)
    counts = as_numpy(truth.sum(dim=0))
    return class_average_precisions(*triplets, counts, tie_order)


def mean_average_precision(
    predictions: Any,
    labels: Any,
    k: int = 20,
    *,
    empty_classes: str = "drop",
    tie_order: str = "pessimistic",
) -> float:
    """Mean of :func:`per_class_average_precision` under one of the two conventions.

    ``empty_classes="drop"``: classes without positives are left out (TF1
    starter code 2019, WILLOW/NeXtVLAD eval). ``"zero"``: they count as AP 0 and
    the sum is divided by V (TF2 starter code). On small evaluation sets the two
    differ a lot; say which one you report.
    """
    scores, truth = check_matrices(predictions, labels)
    triplets = top_k_triplets(scores, truth, k, tie_order)
    counts = as_numpy(truth.sum(dim=0))
    return reduce_class_aps(class_average_precisions(*triplets, counts, tie_order), counts, empty_classes)
