"""The official YouTube-8M metrics, exactly, in bounded memory.

Video level: :func:`gap_at_k`, :func:`hit_at_one`, :func:`perr`, :func:`per_class_average_precision`,
:func:`mean_average_precision` (one shot) and :class:`StreamingEvaluator` (batch by batch, DDP-mergeable).
Segment level: :func:`segment_map`. Plots (matplotlib, imported when a plot is drawn): :mod:`videopool.metrics.plots`.
Definitions, conventions and tie handling: ``docs/metrics.md``.
"""

from videopool.metrics.ap import average_precision, precision_recall_curve
from videopool.metrics.evaluator import StreamingEvaluator, format_metrics
from videopool.metrics.plots import plot_ap_vs_frequency, plot_precision_recall
from videopool.metrics.segment import segment_average_precisions, segment_ground_truth, segment_map
from videopool.metrics.video import (
    gap_at_k,
    hit_at_one,
    mean_average_precision,
    per_class_average_precision,
    perr,
    reduce_class_aps,
)

__all__ = [
    "StreamingEvaluator", "average_precision", "format_metrics", "gap_at_k", "hit_at_one", "mean_average_precision",
    "per_class_average_precision", "perr", "plot_ap_vs_frequency", "plot_precision_recall", "precision_recall_curve",
    "reduce_class_aps", "segment_average_precisions", "segment_ground_truth", "segment_map",
]  # fmt: skip
