"""The official YouTube-8M metrics, exactly, in bounded memory.

Video level: :func:`gap_at_k`, :func:`hit_at_one`, :func:`perr`,
:func:`per_class_average_precision`, :func:`mean_average_precision` (one shot)
and :class:`StreamingEvaluator` (batch by batch, DDP-mergeable). Segment level:
:func:`segment_map`. Plots live in :mod:`videopool.metrics.plots`.
Definitions, conventions and tie handling: ``docs/metrics.md``.
"""

from videopool._lazy import lazy_exports

_EXPORTS = {
    "average_precision": "ap",
    "precision_recall_curve": "ap",
    "gap_at_k": "video",
    "hit_at_one": "video",
    "perr": "video",
    "per_class_average_precision": "video",
    "mean_average_precision": "video",
    "reduce_class_aps": "video",
    "StreamingEvaluator": "evaluator",
    "format_metrics": "evaluator",
    "segment_map": "segment",
    "segment_average_precisions": "segment",
    "segment_ground_truth": "segment",
    "plot_precision_recall": "plots",
    "plot_ap_vs_frequency": "plots",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
