"""A per-class streaming top-k in bounded memory: the best ``k`` (score, item) pairs of every class over a
stream of score matrices, without keeping all scores.

Why not a heap per class: 1,000 Python heaps fed 2 M segments each is ~2·10⁹ interpreter steps. Why not one
``torch.topk`` over ``[kept + batch]`` per batch: with ``k = 100,000`` every batch would re-rank 10⁸ entries.
Here each class owns one fixed row of ``k + pending`` slots (two tensors, preallocated):

* slots ``[0, k)`` hold the kept entries, best first;
* a batch's score enters slot ``k + fill[c]`` onwards only if it beats the class's current threshold (its
  ``k``-th kept score; ``-inf`` until ``k`` entries were kept), so once a class's row is full few new scores
  get in (for scores in random order about ``k · ln(n / k)`` of ``n``);
* a class whose pending slots would overflow is merged: its row is stably sorted and cut back to ``k``.

Memory: ``num_classes · (k + pending) · 8`` bytes (a float32 score and an int32 item number per slot), nothing
else grows. For 1,000 classes, ``k = 100,000`` and the default ``pending = k / 4``: 1.0 GB (the kept entries
alone, 0.8 GB, are the floor of any exact method that stores float32 scores and int32 ids).

Ties: equal scores keep the item added first (the order of :func:`torch.sort` with ``stable=True`` over the
kept entries, which are older, followed by the pending ones in arrival order), so the result equals a stable
full sort of everything seen (tests/inference/test_topk.py checks it on random streams).
"""

from __future__ import annotations

import torch

_ITEM_LIMIT = 2**31 - 1  # item numbers are stored as int32
_MERGE_BLOCK = 64  # classes merged per sort: bounds the sort's temporaries to 64 rows


class StreamingTopK:
    """Best ``k`` items of every class; items are integers ``0 <= item < 2**31`` (a segment's number).

    Args:
        num_classes: columns of the score matrices given to :meth:`add`.
        k: entries kept per class.
        pending: slots per class for new entries between merges (default ``max(k // 4, 1024)``); a larger value
            merges less often and costs ``num_classes · pending · 8`` bytes more.
    """

    def __init__(self, num_classes: int, k: int, pending: int | None = None) -> None:
        if num_classes <= 0 or k <= 0:
            raise ValueError(f"need num_classes > 0 and k > 0, got {num_classes} and {k}")
        self.num_classes, self.k = num_classes, k
        self.pending = int(pending) if pending is not None else max(k // 4, 1024)
        if self.pending <= 0:
            raise ValueError(f"pending must be positive, got {pending}")
        width = k + self.pending
        self._scores = torch.full((num_classes, width), float("-inf"), dtype=torch.float32)
        self._items = torch.full((num_classes, width), -1, dtype=torch.int32)
        self._fill = torch.zeros(num_classes, dtype=torch.int64)  # pending entries per class
        self._threshold = torch.full((num_classes,), float("-inf"), dtype=torch.float32)
        self.merges = 0  # class rows merged so far (a cost figure for the benchmark)

    @property
    def nbytes(self) -> int:
        """Bytes held by the state (all of it is allocated up front)."""
        return sum(t.numel() * t.element_size() for t in (self._scores, self._items, self._fill, self._threshold))

    def add(self, scores: torch.Tensor, items: torch.Tensor) -> None:
        """Offer ``scores [B, num_classes]`` (finite) of the items ``items [B]`` to every class."""
        if scores.dim() != 2 or scores.shape[1] != self.num_classes or items.shape != (scores.shape[0],):
            raise ValueError(f"scores must be [B, {self.num_classes}] and items [B], got {tuple(scores.shape)} "
                             f"and {tuple(items.shape)}")
        if items.numel() and (int(items.min()) < 0 or int(items.max()) > _ITEM_LIMIT):
            raise ValueError(f"item numbers must lie in [0, {_ITEM_LIMIT}]")
        scores = scores.detach().to("cpu", torch.float32)
        items = items.to("cpu", torch.int32)
        for start in range(0, scores.shape[0], self.pending):  # a chunk always fits a row's pending slots
            self._add_chunk(scores[start:start + self.pending], items[start:start + self.pending])

    def _add_chunk(self, scores: torch.Tensor, items: torch.Tensor) -> None:
        entering = scores > self._threshold
        counts = entering.sum(dim=0)
        full = (self._fill + counts > self.pending).nonzero().flatten()
        if full.numel():
            self._merge(full)
            entering = scores > self._threshold
            counts = entering.sum(dim=0)
        rows, columns = entering.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return
        # Each entering score goes to the next free pending slot of its class, in item order within the chunk.
        order_in_class = entering.to(torch.int64).cumsum(dim=0)[rows, columns] - 1
        slots = self.k + self._fill[columns] + order_in_class
        self._scores[columns, slots] = scores[rows, columns]
        self._items[columns, slots] = items[rows]
        self._fill += counts

    def _merge(self, classes: torch.Tensor) -> None:
        """Sort the rows of ``classes`` (kept + pending) stably and keep their best ``k``."""
        for start in range(0, classes.numel(), _MERGE_BLOCK):
            block = classes[start:start + _MERGE_BLOCK]
            width = self.k + int(self._fill[block].max())
            values, order = torch.sort(self._scores[block, :width], dim=1, descending=True, stable=True)
            self._scores[block, :self.k] = values[:, :self.k]
            self._items[block, :self.k] = self._items[block, :width].gather(1, order[:, :self.k])
            self._scores[block, self.k:] = float("-inf")
            self._items[block, self.k:] = -1
            self._threshold[block] = self._scores[block, self.k - 1]
            self._fill[block] = 0
        self.merges += int(classes.numel())

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(scores [C, k], items [C, k], counts [C])``: each class's best entries in descending score (ties:
        first added first); a class's row is valid up to ``counts[c]`` (fewer than ``k`` items seen)."""
        pending = (self._fill > 0).nonzero().flatten()
        if pending.numel():
            self._merge(pending)
        kept_scores, kept_items = self._scores[:, :self.k], self._items[:, :self.k]
        return kept_scores, kept_items, (kept_items >= 0).sum(dim=1)
