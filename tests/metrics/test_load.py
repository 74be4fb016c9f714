"""Load, scaled down (docs/reliability.md, section 5; the full runs: ``benchmarks/bench_load.py eval``).

The streaming evaluator over a synthetic stream generated batch by batch equals (a) an independent numpy
computation done chunk by chunk over the same batches and (b) the one-shot metric functions on the dense
matrix (GAP, mAP, per-class AP bit for bit; Hit@1 and PERR to 1e-12, summation order), while storing only
top-k entries per video."""

import numpy as np
import pytest

from benchmarks import bench_load

VIDEOS, CLASSES, BATCH = 3000, 3862, 500


@pytest.fixture(scope="module")
def streamed():
    return bench_load.streaming_metrics(VIDEOS, CLASSES, BATCH, seed=1)


def test_streaming_evaluator_equals_the_chunked_reference(streamed):
    reference = bench_load.reference_metrics(VIDEOS, CLASSES, BATCH, seed=1)
    check = bench_load.compare(streamed, reference)
    assert check["ok"], check
    assert streamed["num_positives"] == reference["num_positives"]
    assert 0.3 < streamed["gap"] < 0.95 and streamed["map"] > 0.3  # a non-degenerate problem


def test_streaming_evaluator_equals_the_one_shot_functions():
    result = bench_load.one_shot_check(2000, CLASSES, BATCH, seed=2)
    check = bench_load.compare(result["streamed"], result["one_shot"])  # Hit@1, PERR: summation order, 1e-12
    assert check["ok"], check


def test_streaming_evaluator_keeps_only_top_k_per_video(streamed):
    assert streamed["stored_entries"] == VIDEOS * 20
    assert streamed["rss_curve_mb"][-1][0] == VIDEOS  # RSS sampled along the stream


def test_reference_top_k_tie_rule():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]], dtype=np.float32)
    assert bench_load._top_k_members(scores, 3).tolist() == [[True, True, True, False, False]]


def test_synthetic_stream_is_reproducible_batch_by_batch():
    frequencies = bench_load.class_frequencies(50)
    a = bench_load.synthetic_batch(3, 7, 10, 50, frequencies)
    b = bench_load.synthetic_batch(3, 7, 10, 50, frequencies)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].dtype == np.float32 and a[1].dtype == bool and (a[1].sum(axis=1) >= 1).all()
