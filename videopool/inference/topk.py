"""A per-class streaming top-k in bounded memory: the best ``k`` (score, item) pairs of every class over a
stream of score matrices, without keeping all scores.

Why not a heap per class: 1,000 Python heaps fed 2 M segments each is ~2·10⁹ interpreter steps. Why not one
``torch.topk`` over ``[kept + batch]`` per batch: with ``k = 100,000`` every batch would re-rank 10⁸ entries.
Here each class owns one fixed row of ``k + pending`` slots (two tensors, preallocated), filled in arrival order:

* a score enters its class's next free slot only if it beats the class's threshold (its ``k``-th best kept score;
  ``-inf`` until ``k`` entries were kept), so once a row holds ``k`` entries few new scores get in (for scores in
  random order about ``k · ln(n / k)`` of ``n``);
* while every score of a chunk enters every class (the rows are filling up) the chunk is one dense copy;
* a row that would overflow is cut back to its best ``k`` by a linear-time selection (``torch.kthvalue``, then a
  mask), not a sort, and the ``k``-th best score becomes its threshold; :meth:`StreamingTopK.result` sorts once.

Memory: ``num_classes · (k + pending) · 8`` bytes (a float32 score and an int32 item number per slot), nothing
else grows. For 1,000 classes, ``k = 100,000`` and the default ``pending = k / 4``: 1.0 GB (the kept entries
alone, 0.8 GB, are the floor of any exact method that stores float32 scores and int32 ids).

Ties: equal scores keep the item added first (a row stays in arrival order through every cut, ties at the
threshold keep the oldest, and the final sort is stable), so the result equals a stable full sort of everything
seen (tests/inference/test_topk.py checks it on random streams).
"""

from __future__ import annotations

import torch

_ITEM_LIMIT = 2**31 - 1  # item numbers are stored as int32
_MERGE_BLOCK = 64  # classes cut or sorted at a time: bounds the temporaries to 64 rows


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
        self._used = torch.zeros(num_classes, dtype=torch.int64)  # filled slots per class (kept + pending)
        self._threshold = torch.full((num_classes,), float("-inf"), dtype=torch.float32)
        self.merges = 0  # class rows merged so far (a cost figure for the benchmark)
        self._result: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the state (all of it is allocated up front)."""
        return sum(t.numel() * t.element_size() for t in (self._scores, self._items, self._used, self._threshold))

    def add(self, scores: torch.Tensor, items: torch.Tensor) -> None:
        """Offer ``scores [B, num_classes]`` (finite) of the items ``items [B]`` to every class."""
        if self._result is not None:
            raise RuntimeError("StreamingTopK.add after result(): the state was sorted in place")
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
        width = self._scores.shape[1]
        entering = scores > self._threshold
        counts = entering.sum(dim=0)
        full = (self._used + counts > width).nonzero().flatten()
        if full.numel():
            self._merge(full)
            entering = scores > self._threshold
            counts = entering.sum(dim=0)
        used = int(self._used[0])
        if bool(entering.all()) and bool((self._used == used).all()):
            # Every score enters every class (the rows are still filling up): one dense copy, no scatter.
            self._scores[:, used:used + scores.shape[0]] = scores.T
            self._items[:, used:used + scores.shape[0]] = items[None, :]
            self._used += scores.shape[0]
            return
        rows, columns = entering.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return
        # Each entering score goes to the next free slot of its class, in item order within the chunk.
        order_in_class = entering.to(torch.int64).cumsum(dim=0)[rows, columns] - 1
        slots = self._used[columns] + order_in_class
        self._scores[columns, slots] = scores[rows, columns]
        self._items[columns, slots] = items[rows]
        self._used += counts

    def _merge(self, classes: torch.Tensor) -> None:
        """Cut the rows of ``classes`` (each holding more than ``k`` entries) back to their best ``k``.

        A selection, not a sort: the ``k``-th best score (``torch.kthvalue``, linear time) becomes the row's
        threshold, the entries above it stay, and of the entries equal to it the oldest stay until there are
        ``k``; the survivors keep their arrival order, so ties keep resolving by age. Only :meth:`result` sorts."""
        for start in range(0, classes.numel(), _MERGE_BLOCK):
            block = classes[start:start + _MERGE_BLOCK]
            width = int(self._used[block].max())
            values, items = self._scores[block, :width], self._items[block, :width]
            threshold = torch.kthvalue(values, width - self.k + 1, dim=1).values[:, None]
            keep = values >= threshold
            surplus = keep.sum(dim=1) > self.k  # ties at the threshold beyond k (rare with float scores)
            if bool(surplus.any()):
                ties = values == threshold
                missing = self.k - (values > threshold).sum(dim=1, keepdim=True)
                keep = (values > threshold) | (ties & (ties.cumsum(dim=1) <= missing))
            where = keep.view(-1).nonzero().squeeze(1)  # row by row, each row's k survivors in arrival order
            self._scores[block, :self.k] = values.view(-1).index_select(0, where).view(-1, self.k)
            self._items[block, :self.k] = items.view(-1).index_select(0, where).view(-1, self.k)
            self._scores[block, self.k:width] = float("-inf")
            self._items[block, self.k:width] = -1
            self._used[block] = self.k
            self._threshold[block] = threshold[:, 0]
        self.merges += int(classes.numel())

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(scores [C, k], items [C, k], counts [C])``: each class's best entries in descending score (ties:
        first added first); a class's row is valid up to ``counts[c]`` (fewer than ``k`` items seen)."""
        if self._result is None:  # sorted in place, block by block: no second copy of the state
            for start in range(0, self.num_classes, _MERGE_BLOCK):  # rows are in arrival order: a stable sort
                block = slice(start, start + _MERGE_BLOCK)
                width = int(self._used[block].max())
                values, order = torch.sort(self._scores[block, :width], dim=1, descending=True, stable=True)
                items = self._items[block, :width].gather(1, order)
                kept = min(self.k, width)
                self._scores[block, :width], self._items[block, :width] = values, items
                self._scores[block, kept:width], self._items[block, kept:width] = float("-inf"), -1
            items = self._items[:, :self.k]
            self._result = self._scores[:, :self.k], items, (items >= 0).sum(dim=1)
        return self._result
