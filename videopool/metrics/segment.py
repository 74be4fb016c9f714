"""Segment-level mAP@N of the 2019 YouTube-8M Segments challenge (Kaggle metric).

Replays ``segment_eval_inference.py`` of the TF1 starter code (google/youtube-8m):

1. For each class ``c`` in the submission, keep the first ``top_n`` segment ids
   (``videoId:startFrame``) of its ranked list.
2. Drop every id whose ``(id, c)`` pair is not rated in the ground truth.
3. Rank the L survivors by position (scores ``(L - i) / L``); their labels are
   the rated scores, > 0 meaning positive.
4. ``AP_c = (1 / N_c) * sum over positive ranks k of precision@k`` where ``N_c``
   counts every rated positive of class ``c``, submitted or not.
5. ``mAP`` = mean of ``AP_c`` over the classes present in the submission.

A submitted class with ``N_c = 0`` makes the reference script crash (KeyError);
here it raises a ``ValueError`` naming the class, or, with
``missing_positives="skip"``, is left out of the mean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from videopool.metrics.ranking import precision_sum


def rated_positive_counts(ground_truth: Mapping[tuple[str, int], float]) -> Counter:
    """``N_c``: rated pairs with score > 0, per class."""
    return Counter(label for (_, label), score in ground_truth.items() if score > 0)


def segment_average_precisions(
    submission: Mapping[int, Sequence[str]],
    ground_truth: Mapping[tuple[str, int], float],
    top_n: int | None = 100_000,
    *,
    missing_positives: str = "error",
) -> dict[int, float]:
    """Per-class AP of a segment submission; see the module docstring.

    Args:
        submission: class id -> segment ids in descending confidence.
        ground_truth: ``(segment_id, class_id) -> rated score`` for rated pairs only.
        top_n: per-class cap applied before filtering (None or 0 = no cap).
        missing_positives: ``"error"`` or ``"skip"`` for submitted classes without
            any rated positive.
    """
    if missing_positives not in ("error", "skip"):
        raise ValueError(f"missing_positives must be 'error' or 'skip', got {missing_positives!r}")
    positives = rated_positive_counts(ground_truth)
    aps: dict[int, float] = {}
    for class_id in sorted(submission):
        total = positives.get(class_id, 0)
        if total == 0:
            if missing_positives == "skip":
                continue
            raise ValueError(
                f"class {class_id} is in the submission but has no rated positive segment in the ground truth; "
                "its AP is undefined (pass missing_positives='skip' to leave it out)"
            )
        ranked_ids = list(submission[class_id])[:top_n] if top_n else list(submission[class_id])
        labels = [ground_truth[(seg, class_id)] for seg in ranked_ids if (seg, class_id) in ground_truth]
        # Rank scores (L - i) / L are strictly decreasing, so the list order is the ranking.
        aps[class_id] = precision_sum(np.asarray(labels, dtype=np.float64) > 0) / total
    return aps


def segment_map(
    submission: Mapping[int, Sequence[str]],
    ground_truth: Mapping[tuple[str, int], float],
    top_n: int | None = 100_000,
    *,
    missing_positives: str = "error",
) -> float:
    """Segment mAP@``top_n`` (Kaggle 2019: 100,000); 0.0 for an empty submission."""
    aps = segment_average_precisions(submission, ground_truth, top_n, missing_positives=missing_positives)
    return float(np.mean(list(aps.values()))) if aps else 0.0


def segment_ground_truth(videos: Iterable) -> dict[tuple[str, int], float]:
    """``(f"{video_id}:{start}", class) -> score`` from :class:`videopool.data.Video`
    records with segment annotations (``start`` in frames, as in the starter code);
    videos without annotations are skipped."""
    truth: dict[tuple[str, int], float] = {}
    for video in videos:
        rated = video.segments
        if rated is None:
            continue
        for start, label, score in zip(rated.start_times.tolist(), rated.labels.tolist(), rated.scores.tolist()):
            truth[(f"{video.id}:{int(start)}", int(label))] = float(score)
    return truth
