"""Non-interpolated average precision of one ranked list.

    AP = (1 / P) * sum over ranks i holding a positive of (#positives in the first i) / i

``P`` is the number of positives the list *should* contain. It may exceed the
positives present in the list (YouTube-8M counts every positive label, including
those that never made a video's top-k); a positive that is never listed simply
contributes no term. Labels > 0 are positives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from videopool.metrics.ranking import as_numpy, check_tie_order, precision_sum, ranked_labels, tf1_ranked_labels


def _flat_pair(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = as_numpy(scores).astype(np.float32, copy=False).reshape(-1)
    labels = as_numpy(labels).reshape(-1) > 0
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) must have the same length")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, labels


def average_precision(
    scores: Any,
    labels: Any,
    num_positives: int | None = None,
    *,
    tie_order: str = "pessimistic",
) -> float:
    """AP of the list ranked by ``scores`` (descending).

    Args:
        scores: 1-D scores (numpy or torch); compared as float32.
        labels: 1-D ground truth, > 0 means positive.
        num_positives: denominator ``P``; defaults to the positives in ``labels``.
            Must be at least that number.
        tie_order: ``"pessimistic"`` or ``"tf1"`` (see :mod:`videopool.metrics.ranking`).

    Returns:
        AP in [0, 1]; 0 when ``P == 0`` (the starter code's convention).
    """
    scores, labels = _flat_pair(scores, labels)
    listed = int(labels.sum())
    total = listed if num_positives is None else int(num_positives)
    if total < listed:
        raise ValueError(f"num_positives={total} is smaller than the {listed} positives in the list")
    if total == 0:
        return 0.0
    if check_tie_order(tie_order) == "tf1":
        ranked = tf1_ranked_labels(scores, labels)
    else:
        ranked = ranked_labels(scores, labels)
    return precision_sum(ranked) / total


def precision_recall_curve(
    scores: Any, labels: Any, num_positives: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each rank of the list (pessimistic tie order).

    Recall uses ``num_positives`` as denominator, so it stops short of 1 when
    positives are missing from the list. The area ``sum(precision * delta recall)``
    taken at the positive ranks is exactly :func:`average_precision`.
    """
    scores, labels = _flat_pair(scores, labels)
    total = int(labels.sum()) if num_positives is None else int(num_positives)
    ranked = ranked_labels(scores, labels)
    hits = np.cumsum(ranked, dtype=np.float64)
    precision = hits / np.arange(1, ranked.size + 1, dtype=np.float64)
    recall = hits / total if total > 0 else np.zeros_like(hits)
    return precision, recall
