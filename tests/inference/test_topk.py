"""videopool.inference.topk.StreamingTopK: the bounded-memory per-class top-k equals a stable full sort of
everything it was offered (ties: first offered first), whatever the batch sizes and merge points."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from videopool.inference.topk import StreamingTopK


@st.composite
def streams(draw):
    num_classes = draw(st.integers(1, 4))
    k = draw(st.integers(1, 6))
    pending = draw(st.one_of(st.none(), st.integers(1, 5)))
    sizes = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6))
    # few distinct values, so that ties (and ties at the k-th place) are common
    values = draw(st.lists(st.integers(0, 4), min_size=sum(sizes) * num_classes, max_size=sum(sizes) * num_classes))
    scores = torch.tensor(values, dtype=torch.float32).reshape(sum(sizes), num_classes) / 4
    return num_classes, k, pending, sizes, scores


@settings(max_examples=200, deadline=None)
@given(streams())
def test_equals_a_stable_full_sort(stream):
    num_classes, k, pending, sizes, scores = stream
    top = StreamingTopK(num_classes, k, pending)
    start = 0
    for size in sizes:
        top.add(scores[start:start + size], torch.arange(start, start + size))
        start += size
    values, items, counts = top.result()
    full = torch.sort(scores.T, dim=1, descending=True, stable=True)
    n = min(k, scores.shape[0])
    assert counts.tolist() == [n] * num_classes
    assert torch.equal(values[:, :n], full.values[:, :n])
    assert torch.equal(items[:, :n].long(), full.indices[:, :n])
    assert bool((items[:, n:] == -1).all())


def test_memory_is_fixed_at_construction():
    top = StreamingTopK(100, 500, pending=100)
    before = top.nbytes
    assert before == 100 * 600 * 8 + 100 * 8 + 100 * 4  # float32 + int32 per slot; fill + threshold per class
    for start in range(0, 5000, 512):
        top.add(torch.rand(512, 100), torch.arange(start, start + 512))
    assert top.nbytes == before and top.merges > 0


def test_rejects_mismatched_shapes_and_item_numbers():
    top = StreamingTopK(3, 2)
    with pytest.raises(ValueError, match=r"scores must be \[B, 3\]"):
        top.add(torch.zeros(4, 2), torch.arange(4))
    with pytest.raises(ValueError, match="item numbers"):
        top.add(torch.zeros(1, 3), torch.tensor([-1]))
    with pytest.raises(ValueError, match="k > 0"):
        StreamingTopK(3, 0)
