"""The timeline plot of one video: per-segment scores of its top classes along the video, against the segments
the raters judged (PNG via matplotlib's Agg canvas, written atomically).

One panel per class, sharing the time axis (seconds): the score of each 5-second segment as a step line over
the segment's span, rated positive segments as green bands and rated negative ones as red hatched bands (from
the data's ``segment_*`` fields, when it has them). The classes shown are the ``top`` whitelisted classes with
the highest segment score in this video, plus every class rated in it (a rated class the model misses is the
interesting case), at most ``max_panels``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from videopool.core.files import atomic_write

SEGMENT_SECONDS = 5


def timeline_classes(scores: np.ndarray, class_ids: Sequence[int], ratings=None, top: int = 5,
                     max_panels: int = 8) -> list[int]:
    """The classes of the plot: the ``top`` whitelisted ones by best segment score, then the rated ones."""
    allowed = np.asarray(list(class_ids), dtype=np.int64)
    best = scores[:, allowed].max(axis=0) if scores.size else np.zeros(allowed.size)
    chosen = [int(c) for c in allowed[np.argsort(-best, kind="stable")[:top]]]
    if ratings is not None:
        for label in dict.fromkeys(int(x) for x in np.asarray(ratings.labels).tolist()):
            if label not in chosen and label < scores.shape[1]:
                chosen.append(label)
    return chosen[:max_panels]


def plot_timeline(path: str | os.PathLike, timeline, class_ids: Sequence[int], *,
                  class_names: Mapping[int, str] | Sequence[str] | None = None, top: int = 5) -> str:
    """Save the timeline PNG of ``timeline`` (a :class:`videopool.inference.localize.Timeline`); returns ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    order = np.argsort(timeline.starts, kind="stable")
    starts, scores = timeline.starts[order], timeline.scores[order]
    shown = timeline_classes(scores, class_ids, timeline.ratings, top=top)
    end = int(starts.max()) + SEGMENT_SECONDS if starts.size else SEGMENT_SECONDS
    rated = _ratings_by_class(timeline.ratings)
    figure = Figure(figsize=(9, 1.2 + 1.25 * len(shown)), dpi=110, layout="constrained")
    axes = np.atleast_1d(figure.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0])
    edges = np.append(starts, starts[-1] + SEGMENT_SECONDS) if starts.size else np.array([0, SEGMENT_SECONDS])
    for ax, class_id in zip(axes, shown):
        for start, score in rated.get(class_id, ()):
            positive = score > 0
            ax.axvspan(start, start + SEGMENT_SECONDS, color="tab:green" if positive else "tab:red",
                       alpha=0.25 if positive else 0.15, hatch=None if positive else "//", lw=0)
        values = scores[:, class_id] if starts.size else np.zeros(1)
        ax.stairs(values, edges, color="tab:blue", lw=1.5, baseline=None)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, end)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel(_short(_name(class_names, class_id)), rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time in the video (seconds; one step per 5-second segment)", fontsize=9)
    handles = [Line2D([], [], color="tab:blue", lw=1.5, label="segment score (0 to 1)")]
    if rated:
        handles += [Patch(color="tab:green", alpha=0.25, label="rated positive"),
                    Patch(facecolor="tab:red", edgecolor="tab:red", alpha=0.15, hatch="//", label="rated negative")]
    figure.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=8, frameon=False)
    figure.suptitle(f"video {timeline.video_id}: per-segment scores of its top classes", fontsize=10,
                    x=0.01, ha="left")
    path = os.fspath(path)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path


def _ratings_by_class(ratings) -> dict[int, list[tuple[int, float]]]:
    out: dict[int, list[tuple[int, float]]] = {}
    if ratings is None:
        return out
    for label, start, score in zip(np.asarray(ratings.labels).tolist(), np.asarray(ratings.start_times).tolist(),
                                   np.asarray(ratings.scores).tolist()):
        out.setdefault(int(label), []).append((int(start), float(score)))
    return out


def _name(names, class_id: int) -> str:
    if names is None:
        return f"class {class_id}"
    try:
        return f"{class_id}: {names[class_id]}"
    except (IndexError, KeyError):
        return f"class {class_id}"


def _short(text: str, width: int = 22) -> str:
    """Long vocabulary names would push the panels aside: cut with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"
