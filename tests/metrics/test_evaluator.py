import pickle

import numpy as np
import pytest
import torch

from tests.metrics.test_video_metrics import P, Y, _random_problem
from videopool.metrics import (
    StreamingEvaluator,
    format_metrics,
    gap_at_k,
    hit_at_one,
    mean_average_precision,
    per_class_average_precision,
    perr,
)


def _feed(evaluator, scores, labels, rng, losses=None):
    """Feed rows in random contiguous batches (including an empty one)."""
    cuts = np.sort(rng.choice(np.arange(1, len(scores)), size=min(5, len(scores) - 1), replace=False))
    bounds = [0, 0, *cuts.tolist(), len(scores)]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        loss = None if losses is None else losses[start:stop]
        evaluator.update(scores[start:stop], labels[start:stop], loss=loss)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [3, 20])
def test_streaming_equals_one_shot(seed, k):
    scores, labels = _random_problem(seed, 90, 25, 0.1, unlabelled=6)
    evaluator = StreamingEvaluator(num_classes=25, top_k=k)
    _feed(evaluator, scores, labels, np.random.default_rng(seed))
    result = evaluator.compute()
    assert result["gap"] == pytest.approx(gap_at_k(scores, labels, k), abs=1e-12)
    assert result["hit_at_1"] == pytest.approx(hit_at_one(scores, labels), abs=1e-12)
    assert result["perr"] == pytest.approx(perr(scores, labels), abs=1e-12)
    assert result["map"] == pytest.approx(mean_average_precision(scores, labels, k), abs=1e-12)
    assert result["map_all_classes"] == pytest.approx(
        mean_average_precision(scores, labels, k, empty_classes="zero"), abs=1e-12
    )
    np.testing.assert_allclose(result["per_class_ap"], per_class_average_precision(scores, labels, k), atol=1e-12)
    np.testing.assert_array_equal(result["class_positive_counts"], labels.sum(axis=0))
    assert result["num_videos"] == 90
    assert result["num_positives"] == labels.sum()
    assert result["num_classes_with_positives"] == int((labels.sum(axis=0) > 0).sum())


def test_worked_vector_through_evaluator_with_torch_batches():
    evaluator = StreamingEvaluator(num_classes=5, top_k=2)
    evaluator.update(torch.tensor(P[:1]), torch.tensor(Y[:1]), loss=torch.tensor(3.0))
    evaluator.update(torch.tensor(P[1:]), torch.tensor(Y[1:]), loss=torch.tensor([1.0, 2.0]))
    result = evaluator.compute()
    assert result["gap"] == pytest.approx(0.553333, abs=1e-6)
    assert result["map"] == pytest.approx(0.625)
    assert result["map_all_classes"] == pytest.approx(0.5)
    assert result["hit_at_1"] == pytest.approx(2 / 3)
    assert result["perr"] == pytest.approx(0.5)
    # Mean of per-batch mean losses weighted by batch size: (3*1 + 1.5*2) / 3.
    assert result["loss"] == pytest.approx(2.0)
    line = format_metrics(result)
    assert "GAP@2 0.5533" in line and "4/5 classes" in line


def test_loss_is_none_when_never_given():
    evaluator = StreamingEvaluator(num_classes=5)
    evaluator.update(P, Y)
    assert evaluator.compute()["loss"] is None


def test_merge_equals_single_evaluator():
    scores, labels = _random_problem(7, 80, 30, 0.1, unlabelled=3)
    whole = StreamingEvaluator(30, top_k=4)
    whole.update(scores, labels, loss=np.arange(80.0))
    ranks = [StreamingEvaluator(30, top_k=4) for _ in range(3)]
    for rank, part in enumerate(np.array_split(np.arange(80), 3)):
        ranks[rank].update(scores[part], labels[part], loss=np.arange(80.0)[part])
    # States travel between ranks pickled (all_gather_object); merge in a shuffled rank order.
    states = [pickle.loads(pickle.dumps(r.state_dict())) for r in ranks]
    merged = StreamingEvaluator.from_state_dict(states[2]).merge(states[0]).merge(ranks[1])
    expected, got = whole.compute(), merged.compute()
    for key in ("gap", "hit_at_1", "perr", "map", "map_all_classes", "loss"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    np.testing.assert_allclose(got["per_class_ap"], expected["per_class_ap"], atol=1e-12)
    assert got["num_videos"] == 80


def test_merge_rejects_incompatible_state():
    with pytest.raises(ValueError, match="cannot merge"):
        StreamingEvaluator(10, top_k=5).merge(StreamingEvaluator(10, top_k=6))


def test_memory_holds_top_k_per_video_not_the_matrix():
    num_videos, num_classes, k = 600, 500, 5
    rng = np.random.default_rng(0)
    evaluator = StreamingEvaluator(num_classes, top_k=k)
    for _ in range(6):
        scores = rng.random((num_videos // 6, num_classes), dtype=np.float32)
        labels = rng.random((num_videos // 6, num_classes)) < 0.01
        evaluator.update(scores, labels)
    assert evaluator.num_entries == num_videos * k
    state = evaluator.state_dict()
    assert state["scores"].size == state["labels"].size == state["classes"].size == num_videos * k
    assert state["scores"].dtype == np.float32 and state["classes"].dtype == np.int32 and state["labels"].dtype == bool
    # Preallocated capacity may at most double what is used: still far below n x V.
    assert evaluator._scores.size <= 2 * num_videos * k < num_videos * num_classes


def test_update_validates_width():
    with pytest.raises(ValueError, match="built for 4"):
        StreamingEvaluator(4).update(np.zeros((2, 5)), np.zeros((2, 5)))


def test_half_precision_and_integer_labels_are_accepted():
    scores, labels = _random_problem(4, 30, 10, 0.2)
    evaluator = StreamingEvaluator(10, top_k=3)
    evaluator.update(torch.tensor(scores).bfloat16(), torch.tensor(labels).long())
    assert evaluator.compute()["gap"] == pytest.approx(gap_at_k(torch.tensor(scores).bfloat16(), labels, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_match_cpu():
    scores, labels = _random_problem(5, 70, 40, 0.1, unlabelled=2)
    on_gpu, on_cpu = StreamingEvaluator(40, top_k=5), StreamingEvaluator(40, top_k=5)
    on_gpu.update(torch.tensor(scores, device="cuda"), torch.tensor(labels, device="cuda"))
    on_cpu.update(scores, labels)
    gpu, cpu = on_gpu.compute(), on_cpu.compute()
    for key in ("gap", "hit_at_1", "perr", "map"):
        assert gpu[key] == pytest.approx(cpu[key], abs=1e-12), key
