"""Diagnostic plots of an evaluation (PNG via matplotlib's Agg canvas, imported lazily).

* :func:`plot_precision_recall` — precision against recall along the pooled
  top-k list that GAP is computed on; GAP is the area under this curve (recall
  stops short of 1 when positives never made a video's top-k).
* :func:`plot_ap_vs_frequency` — per-class AP against the number of positives
  of the class (log x), which shows whether a low mAP comes from rare classes.

Each plot is written atomically (:func:`videopool.core.files.atomic_write`): never a truncated PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from videopool.core.files import atomic_write
from videopool.metrics.ap import precision_recall_curve
from videopool.metrics.ranking import as_numpy

_MAX_CURVE_POINTS = 4000  # a 22 M-point line renders no better than a few thousand


def _new_figure(width: float, height: float):
    # A bare Figure renders with the Agg canvas and never touches pyplot's global
    # backend, so plotting from a notebook or a headless job behaves the same.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)  # an Agg renderer to measure text with (label placement), still without pyplot
    return figure, figure.subplots()


def plot_precision_recall(
    source: Any,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> str:
    """Save the precision–recall curve of the pooled top-k list, annotated with GAP.

    Args:
        source: a :class:`~videopool.metrics.StreamingEvaluator`, or a tuple
            ``(scores, labels, total_positives)`` of the pooled list.
        path: output PNG.
    Returns:
        ``path`` as a string.
    """
    if hasattr(source, "ranked_list"):
        scores, labels, total = source.ranked_list()
        top_k = getattr(source, "top_k", None)
    else:
        scores, labels, total = source
        top_k = None
    precision, recall = precision_recall_curve(scores, labels, total)
    positive_ranks = np.flatnonzero(np.diff(np.concatenate(([0.0], recall))) > 0)
    gap = float(np.sum(precision[positive_ranks]) / total) if total else 0.0
    step = max(1, precision.size // _MAX_CURVE_POINTS)
    keep = np.unique(np.concatenate((np.arange(0, precision.size, step), [precision.size - 1]))) if precision.size else []

    figure, axes = _new_figure(6, 5)
    axes.plot(recall[keep], precision[keep], color="tab:blue", linewidth=1.5)
    axes.fill_between(recall[keep], precision[keep], step="pre", alpha=0.15, color="tab:blue")
    label = f"GAP@{top_k}" if top_k else "GAP"
    axes.annotate(
        f"{label} = {gap:.4f}\n{precision.size:,} ranked predictions\n{total:,} positive labels",
        xy=(0.04, 0.06),
        xycoords="axes fraction",
        fontsize=10,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9},
    )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall (over all positive labels)")
    axes.set_ylabel("precision")
    axes.set_title(title or "Precision-recall of the pooled top-k predictions")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    _save(figure, path)
    return str(path)


def plot_ap_vs_frequency(
    per_class_ap: Any,
    class_positive_counts: Any,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    num_named: int = 5,
    title: str | None = None,
) -> str:
    """Save a scatter of per-class AP against class frequency (number of positives, log x).

    Classes without positives have no AP and are left out (their number is given
    in the legend). With ``class_names``, the ``num_named`` most frequent classes
    and the ``num_named`` worst-scoring classes among the more frequent half are
    labelled.
    """
    _save(_ap_vs_frequency_figure(per_class_ap, class_positive_counts, class_names, num_named, title), path)
    return str(path)


def _ap_vs_frequency_figure(per_class_ap: Any, class_positive_counts: Any,
                            class_names: Sequence[str] | Mapping[int, str] | None, num_named: int, title: str | None):
    ap = as_numpy(per_class_ap).astype(np.float64)
    counts = as_numpy(class_positive_counts).astype(np.int64)
    if ap.shape != counts.shape:
        raise ValueError(f"per_class_ap {ap.shape} and class_positive_counts {counts.shape} differ in shape")
    present = np.flatnonzero(counts > 0)

    figure, axes = _new_figure(7, 5)
    axes.scatter(
        counts[present],
        ap[present],
        s=10,
        alpha=0.6,
        color="tab:blue",
        label=f"{present.size} classes with positives ({counts.size - present.size} without, not shown)",
    )
    if present.size:
        mean_ap = float(ap[present].mean())
        axes.axhline(mean_ap, color="tab:red", linestyle="--", linewidth=1, label=f"mAP = {mean_ap:.4f}")
    axes.set_xscale("log")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("positive labels of the class (log scale)")
    axes.set_ylabel("average precision of the class")
    axes.set_title(title or "Per-class AP against class frequency")
    axes.grid(alpha=0.3, which="both")
    legend = axes.legend(loc="best", fontsize=8, framealpha=0.9)
    figure.tight_layout()  # before the labels: their placement is measured on the final layout
    if class_names is not None and present.size:
        points = [(counts[c], ap[c], _class_name(class_names, c)) for c in _classes_to_name(ap, counts, present,
                                                                                              num_named)]
        _place_labels(figure, axes, points, avoid=[legend])
    return figure


def _class_name(class_names: Sequence[str] | Mapping[int, str], c: int) -> str:
    try:
        return str(class_names[c])
    except (IndexError, KeyError):
        return str(c)


# Where a label may sit relative to its point (offset in points, alignment), tried in this order.
_LABEL_SPOTS = [((6, 4), "left", "bottom"), ((6, -4), "left", "top"), ((-6, 4), "right", "bottom"),
                ((-6, -4), "right", "top"), ((0, 9), "center", "bottom"), ((0, -9), "center", "top"),
                ((14, 10), "left", "bottom"), ((-14, 10), "right", "bottom"), ((14, -10), "left", "top"),
                ((-14, -10), "right", "top")]


def _place_labels(figure, axes, points: list[tuple[float, float, str]], avoid: Sequence[Any] = ()) -> list[str]:
    """Label each ``(x, y, text)`` at the first of :data:`_LABEL_SPOTS` where the text's box stays inside the
    axes and overlaps neither an earlier label nor an ``avoid`` artist (the legend); a point with no such spot
    stays unlabelled (many classes share AP ≈ 0 at similar counts, and their names would print on top of each
    other). Returns the texts placed, in order — greedy, so earlier points win."""
    renderer = figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    taken = [artist.get_window_extent(renderer).padded(2) for artist in avoid]
    placed = []
    for x, y, text in points:
        for offset, horizontal, vertical in _LABEL_SPOTS:
            label = axes.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=7,
                                  ha=horizontal, va=vertical,
                                  arrowprops={"arrowstyle": "-", "linewidth": 0.5, "color": "0.35",
                                              "shrinkA": 0, "shrinkB": 2})  # which point a label names
            box = label.get_window_extent(renderer)
            fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1)
            if fits and not any(box.overlaps(other) for other in taken):
                taken.append(box.padded(1))
                placed.append(text)
                break
            label.remove()
    return placed


def _save(figure, path: str | os.PathLike) -> None:
    """Render ``figure`` atomically to ``path``, in the format its extension names (PNG without one)."""
    extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=extension)


def _classes_to_name(ap: np.ndarray, counts: np.ndarray, present: np.ndarray, num_named: int) -> list[int]:
    by_frequency = present[np.argsort(-counts[present], kind="stable")]
    frequent_half = by_frequency[: max(1, by_frequency.size // 2)]
    worst = frequent_half[np.argsort(ap[frequent_half], kind="stable")]
    chosen = list(by_frequency[:num_named]) + [c for c in worst[:num_named] if c not in by_frequency[:num_named]]
    return [int(c) for c in chosen]
