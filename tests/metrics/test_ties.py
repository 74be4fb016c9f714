"""Tie handling: the documented pessimistic order, and the replay of the starter code's order."""

import heapq
import random

import numpy as np
import pytest

from tests.metrics.test_video_metrics import P, Y
from videopool.metrics import StreamingEvaluator, gap_at_k, per_class_average_precision


def test_spec_tie_case_is_pessimistic_by_default():
    tied = P.copy()
    tied[0, 0] = 0.90  # ties with P[2, 3]; the positive (0, 0) vs the negative (2, 3)
    # Negatives rank first among equal scores: (1/1 + 1/3 + ...) gives the lower of the two values.
    assert gap_at_k(tied, Y, k=2) == pytest.approx(0.453333, abs=1e-6)


def test_pessimistic_order_ignores_input_order_and_batching():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((60, 12)), 1)  # many ties
    labels = rng.random((60, 12)) < 0.2
    perm = rng.permutation(60)
    assert gap_at_k(scores, labels, 4) == gap_at_k(scores[perm], labels[perm], 4)
    evaluator = StreamingEvaluator(12, top_k=4)
    for part in np.array_split(perm, 7):
        evaluator.update(scores[part], labels[part])
    assert evaluator.compute()["gap"] == pytest.approx(gap_at_k(scores, labels, 4), abs=1e-12)


def _starter_code_ap(pairs, num_positives):
    """The Google starter code's procedure, step by step: heap pushes, seeded shuffle, stable sort."""
    heap = []
    for pair in pairs:
        heapq.heappush(heap, pair)
    if not heap or num_positives == 0:
        return 0.0
    predictions = np.array([p for p, _ in heap])
    actuals = np.array([a for _, a in heap])
    saved = random.getstate()
    random.seed(0)
    shuffle = random.sample(range(len(predictions)), len(predictions))
    random.setstate(saved)
    predictions, actuals = predictions[shuffle], actuals[shuffle]
    order = sorted(range(len(predictions)), key=lambda i: predictions[i], reverse=True)
    ap, hits = 0.0, 0
    for i, index in enumerate(order):
        if actuals[index] > 0:
            hits += 1
            ap += hits / (i + 1) / num_positives
    return ap


def _starter_code_lists(batches, k, num_classes):
    """Per batch: argpartition top-k, triplets grouped class by class. Returns the global
    list (batch after batch, each batch flattened class by class) and the per-class lists."""
    pooled, per_class = [], [[] for _ in range(num_classes)]
    for scores, labels in batches:
        batch_lists = [[] for _ in range(num_classes)]
        for row in range(len(scores)):
            for c in np.argpartition(scores[row], -k)[-k:]:
                batch_lists[c].append((float(scores[row, c]), float(labels[row, c])))
        for c in range(num_classes):
            per_class[c] += batch_lists[c]
            pooled += batch_lists[c]
    return pooled, per_class


def test_tf1_tie_order_replays_the_starter_code():
    rng = np.random.default_rng(3)
    num_classes, k = 8, 3
    scores = (np.round(rng.random((45, num_classes)), 1) * 0.5 + 0.25).astype(np.float32)  # heavy ties
    labels = (rng.random((45, num_classes)) < 0.3).astype(np.float32)
    batches = [(scores[s], labels[s]) for s in (slice(0, 20), slice(20, 33), slice(33, 45))]

    pooled, per_class = _starter_code_lists(batches, k, num_classes)
    expected_gap = _starter_code_ap(pooled, int(labels.sum()))
    expected_aps = [_starter_code_ap(per_class[c], int(labels[:, c].sum())) for c in range(num_classes)]

    evaluator = StreamingEvaluator(num_classes, top_k=k, tie_order="tf1")
    for batch in batches:
        evaluator.update(*batch)
    result = evaluator.compute()
    assert result["gap"] == pytest.approx(expected_gap, abs=1e-12)
    np.testing.assert_allclose(result["per_class_ap"], expected_aps, atol=1e-12)
    # The fixture really exercises ties: the default order gives a different GAP.
    assert abs(gap_at_k(scores, labels, k) - expected_gap) > 1e-4

    pooled, one_batch = _starter_code_lists([(scores, labels)], k, num_classes)
    assert gap_at_k(scores, labels, k, tie_order="tf1") == pytest.approx(
        _starter_code_ap(pooled, int(labels.sum())), abs=1e-12
    )
    np.testing.assert_allclose(
        per_class_average_precision(scores, labels, k, tie_order="tf1"),
        [_starter_code_ap(one_batch[c], int(labels[:, c].sum())) for c in range(num_classes)],
        atol=1e-12,
    )
