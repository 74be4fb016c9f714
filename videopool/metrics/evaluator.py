"""Streaming evaluation over any number of videos in bounded memory.

Per batch the evaluator keeps only what the final metrics need:

* each video's top-k ``(score float32, label bool, class int32)`` triplets, in
  growing preallocated arrays — ``n * k`` entries, never the ``n x V`` matrix
  (about 200 MB for the 1.1 M-video validation set at k = 20);
* per-class positive counters (all labels, also those outside any top-k);
* running sums of Hit@1, PERR and loss, weighted by batch size.

``compute()`` sorts the triplets once for GAP and once for all per-class APs,
and returns exactly what :mod:`videopool.metrics.video`'s one-shot functions
return on the concatenated data. Under DDP every rank keeps its own evaluator;
gather ``state_dict()`` from all ranks and ``merge`` them (the default
pessimistic tie order makes the result independent of the rank order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from videopool.metrics.ranking import as_numpy, check_matrices, check_tie_order, stable_top_k
from videopool.metrics.video import (
    class_average_precisions,
    global_average_precision,
    hits_at_one,
    perr_per_video,
    reduce_class_aps,
    top_k_triplets,
)

_STATE_VERSION = 1


class StreamingEvaluator:
    """Accumulates GAP@k, Hit@1, PERR, per-class AP / mAP and loss batch by batch.

    Args:
        num_classes: V, the width of the prediction matrix.
        top_k: predictions kept per video for GAP and per-class AP (Kaggle: 20).
        tie_order: ``"pessimistic"`` (default) or ``"tf1"`` — see
            :mod:`videopool.metrics.ranking`. ``"tf1"`` makes ``compute()`` a slow
            pure-Python replay of the starter code; use it for parity checks.

    Example::

        evaluator = StreamingEvaluator(num_classes=3862)
        for batch in loader:
            evaluator.update(model(batch.frames, batch.mask), batch.labels, loss=loss)
        print(format_metrics(evaluator.compute()))
    """

    def __init__(self, num_classes: int, top_k: int = 20, *, tie_order: str = "pessimistic") -> None:
        if num_classes <= 0 or top_k <= 0:
            raise ValueError(f"num_classes and top_k must be positive, got {num_classes} and {top_k}")
        self.num_classes = int(num_classes)
        self.top_k = min(int(top_k), self.num_classes)
        self.tie_order = check_tie_order(tie_order)
        self.reset()

    def reset(self) -> None:
        self._size = 0
        self._scores = np.empty(0, dtype=np.float32)
        self._labels = np.empty(0, dtype=bool)
        self._classes = np.empty(0, dtype=np.int32)
        self.class_positive_counts = np.zeros(self.num_classes, dtype=np.int64)
        self.num_videos = 0
        self._sum_hit_at_1 = 0.0
        self._sum_perr = 0.0
        self._sum_loss = 0.0
        self._num_loss_videos = 0

    # -- accumulation -------------------------------------------------------------------------

    def _append(self, scores: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> None:
        needed = self._size + scores.size
        if needed > self._scores.size:
            capacity = max(needed, 2 * self._scores.size, 1024)
            for name in ("_scores", "_labels", "_classes"):
                old = getattr(self, name)
                grown = np.empty(capacity, dtype=old.dtype)
                grown[: self._size] = old[: self._size]
                setattr(self, name, grown)
        self._scores[self._size : needed] = scores
        self._labels[self._size : needed] = labels
        self._classes[self._size : needed] = classes
        self._size = needed

    def update(self, predictions: Any, labels: Any, loss: Any = None) -> None:
        """Add a batch: ``predictions`` / ``labels`` ``[B, V]`` (numpy or torch, any device);
        ``loss`` is the batch's mean loss or per-video losses ``[B]`` (optional)."""
        scores, truth = check_matrices(predictions, labels, self.num_classes)
        batch_size = scores.shape[0]
        if batch_size == 0:
            return
        # One sorted top-k, deep enough for every metric of the batch.
        depth = max(self.top_k, int(truth.sum(dim=1).max()))
        top = stable_top_k(scores, depth)
        self._append(*top_k_triplets(scores, truth, self.top_k, self.tie_order, top))
        self.class_positive_counts += as_numpy(truth.sum(dim=0)).astype(np.int64)
        self._sum_hit_at_1 += float(hits_at_one(scores, truth, top).sum())
        self._sum_perr += float(perr_per_video(scores, truth, top).sum())
        if loss is not None:
            self._sum_loss += float(np.mean(as_numpy(loss))) * batch_size
            self._num_loss_videos += batch_size
        self.num_videos += batch_size

    # -- results ------------------------------------------------------------------------------

    @property
    def num_entries(self) -> int:
        """Stored triplets (= videos x top_k)."""
        return self._size

    def ranked_list(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(scores, labels, total_positives)`` of the pooled top-k list (views, not copies)."""
        return self._scores[: self._size], self._labels[: self._size], int(self.class_positive_counts.sum())

    def compute(self) -> dict[str, Any]:
        """All metrics so far.

        Returns a dict with ``gap``, ``hit_at_1``, ``perr``, ``map`` (mean over classes
        with positives — TF1 starter code), ``map_all_classes`` (sum over all V
        classes / V — TF2 starter code), ``loss`` (None if never given), ``num_videos``,
        ``num_positives``, ``num_classes_with_positives``, ``top_k``, and the arrays
        ``per_class_ap`` (float64 ``[V]``, 0 for classes without positives) and
        ``class_positive_counts`` (int64 ``[V]``) for plots.
        """
        scores, labels, total_positives = self.ranked_list()
        per_class_ap = class_average_precisions(
            scores, labels, self._classes[: self._size], self.class_positive_counts, self.tie_order
        )
        videos = max(self.num_videos, 1)
        return {
            "gap": global_average_precision(scores, labels, total_positives, self.tie_order),
            "hit_at_1": self._sum_hit_at_1 / videos,
            "perr": self._sum_perr / videos,
            "map": reduce_class_aps(per_class_ap, self.class_positive_counts, "drop"),
            "map_all_classes": reduce_class_aps(per_class_ap, self.class_positive_counts, "zero"),
            "loss": self._sum_loss / self._num_loss_videos if self._num_loss_videos else None,
            "num_videos": self.num_videos,
            "num_positives": total_positives,
            "num_classes_with_positives": int((self.class_positive_counts > 0).sum()),
            "top_k": self.top_k,
            "per_class_ap": per_class_ap,
            "class_positive_counts": self.class_positive_counts.copy(),
        }

    # -- combining (DDP) ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A picklable snapshot (numpy arrays + numbers), e.g. for ``all_gather_object``."""
        return {
            "version": _STATE_VERSION,
            "num_classes": self.num_classes,
            "top_k": self.top_k,
            "tie_order": self.tie_order,
            "scores": self._scores[: self._size].copy(),
            "labels": self._labels[: self._size].copy(),
            "classes": self._classes[: self._size].copy(),
            "class_positive_counts": self.class_positive_counts.copy(),
            "num_videos": self.num_videos,
            "sum_hit_at_1": self._sum_hit_at_1,
            "sum_perr": self._sum_perr,
            "sum_loss": self._sum_loss,
            "num_loss_videos": self._num_loss_videos,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "StreamingEvaluator":
        evaluator = cls(state["num_classes"], state["top_k"], tie_order=state["tie_order"])
        evaluator.merge(state)
        return evaluator

    def merge(self, other: "StreamingEvaluator | dict[str, Any]") -> "StreamingEvaluator":
        """Add another evaluator's (or a ``state_dict``'s) data to this one; returns self."""
        state = other.state_dict() if isinstance(other, StreamingEvaluator) else other
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported evaluator state version {state.get('version')!r}")
        mine = (self.num_classes, self.top_k, self.tie_order)
        theirs = (state["num_classes"], state["top_k"], state["tie_order"])
        if mine != theirs:
            raise ValueError(f"cannot merge evaluators with (num_classes, top_k, tie_order) {theirs} into {mine}")
        self._append(state["scores"], state["labels"], state["classes"])
        self.class_positive_counts += state["class_positive_counts"]
        self.num_videos += state["num_videos"]
        self._sum_hit_at_1 += state["sum_hit_at_1"]
        self._sum_perr += state["sum_perr"]
        self._sum_loss += state["sum_loss"]
        self._num_loss_videos += state["num_loss_videos"]
        return self


def format_metrics(results: dict[str, Any], num_classes: int | None = None) -> str:
    """One log line, stating which mAP convention each number uses."""
    total = num_classes if num_classes is not None else len(results["class_positive_counts"])
    parts = [
        f"GAP@{results['top_k']} {results['gap']:.4f}",
        f"Hit@1 {results['hit_at_1']:.4f}",
        f"PERR {results['perr']:.4f}",
        f"mAP {results['map']:.4f} (over {results['num_classes_with_positives']}/{total} classes with positives; "
        f"{results['map_all_classes']:.4f} counting empty classes as 0)",
    ]
    if results.get("loss") is not None:
        parts.append(f"loss {results['loss']:.4f}")
    parts.append(f"{results['num_videos']} videos")
    return " | ".join(parts)
