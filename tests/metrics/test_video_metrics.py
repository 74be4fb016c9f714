import numpy as np
import pytest
import torch

from tests.metrics import reference as ref
from videopool.metrics import (
    average_precision,
    gap_at_k,
    hit_at_one,
    mean_average_precision,
    per_class_average_precision,
    perr,
    precision_recall_curve,
)

# Worked vector of spec §8.5 (no ties).
P = np.array(
    [
        [0.95, 0.80, 0.10, 0.05, 0.30],
        [0.20, 0.70, 0.60, 0.10, 0.05],
        [0.40, 0.10, 0.35, 0.90, 0.20],
    ]
)
Y = np.array([[1, 0, 0, 0, 1], [0, 1, 1, 0, 0], [1, 0, 0, 0, 0]])


@pytest.mark.parametrize("tie_order", ["pessimistic", "tf1"])
def test_worked_vector_k2(tie_order):
    assert gap_at_k(P, Y, k=2, tie_order=tie_order) == pytest.approx((1 / 1 + 2 / 4 + 3 / 5 + 4 / 6) / 5, abs=1e-12)
    aps = per_class_average_precision(P, Y, k=2, tie_order=tie_order)
    np.testing.assert_allclose(aps, [1.0, 0.5, 1.0, 0.0, 0.0], atol=1e-12)
    assert mean_average_precision(P, Y, k=2, tie_order=tie_order) == pytest.approx(0.625)
    assert mean_average_precision(P, Y, k=2, empty_classes="zero", tie_order=tie_order) == pytest.approx(0.5)


@pytest.mark.parametrize("tie_order", ["pessimistic", "tf1"])
def test_worked_vector_k20(tie_order):
    assert gap_at_k(P, Y, k=20, tie_order=tie_order) == pytest.approx(0.678333, abs=1e-6)
    aps = per_class_average_precision(P, Y, k=20, tie_order=tie_order)
    np.testing.assert_allclose(aps, [1.0, 0.5, 1.0, 0.0, 1.0], atol=1e-12)
    assert mean_average_precision(P, Y, k=20, tie_order=tie_order) == pytest.approx(0.875)
    assert mean_average_precision(P, Y, k=20, empty_classes="zero", tie_order=tie_order) == pytest.approx(0.7)


def test_worked_vector_hit_and_perr():
    assert hit_at_one(P, Y) == pytest.approx(2 / 3)
    assert perr(P, Y) == pytest.approx(0.5)


def test_torch_inputs_match_numpy():
    scores, labels = torch.tensor(P, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    assert gap_at_k(scores, labels, k=2) == pytest.approx(gap_at_k(P, Y, k=2))
    assert hit_at_one(scores, labels) == pytest.approx(2 / 3)
    assert perr(scores, labels) == pytest.approx(0.5)


def _random_problem(seed, num_videos, num_classes, density, unlabelled=0):
    """Continuous, informative and tie-free scores (distinct ranks mapped into (0, 1))."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_videos, num_classes)) < density).astype(np.float32)
    labels[:unlabelled] = 0  # videos without labels
    labels[:, -1] = 0  # a class without positives
    noisy = rng.random((num_videos, num_classes)) + labels * rng.random((num_videos, num_classes))
    ranks = np.argsort(np.argsort(noisy, axis=None)).reshape(noisy.shape)
    scores = ((ranks + 1) / (ranks.size + 1)).astype(np.float32).astype(np.float64)
    assert np.unique(scores).size == scores.size, "fixture must be tie-free"
    return scores, labels


SHAPES = [(1, 1, 0.9, 0), (7, 3, 0.4, 2), (40, 50, 0.08, 5), (120, 30, 0.1, 10), (60, 200, 0.02, 3)]


@pytest.mark.parametrize("num_videos,num_classes,density,unlabelled", SHAPES)
@pytest.mark.parametrize("k", [1, 5, 20])
def test_against_brute_force(num_videos, num_classes, density, unlabelled, k):
    scores, labels = _random_problem(num_videos * 1000 + num_classes, num_videos, num_classes, density, unlabelled)
    P_list, Y_list = scores.tolist(), labels.tolist()
    assert gap_at_k(scores, labels, k=k) == pytest.approx(ref.reference_gap(P_list, Y_list, k), abs=1e-12)
    expected_aps = ref.reference_class_aps(P_list, Y_list, k)
    np.testing.assert_allclose(per_class_average_precision(scores, labels, k=k), expected_aps, atol=1e-12)
    present = [ap for c, ap in enumerate(expected_aps) if labels[:, c].sum() > 0]
    expected_drop = sum(present) / len(present) if present else 0.0
    assert mean_average_precision(scores, labels, k=k) == pytest.approx(expected_drop, abs=1e-12)
    assert mean_average_precision(scores, labels, k=k, empty_classes="zero") == pytest.approx(
        sum(expected_aps) / num_classes, abs=1e-12
    )
    assert hit_at_one(scores, labels) == pytest.approx(ref.reference_hit_at_one(P_list, Y_list), abs=1e-12)
    assert perr(scores, labels) == pytest.approx(ref.reference_perr(P_list, Y_list), abs=1e-12)


def test_tf1_mode_equals_default_without_ties():
    scores, labels = _random_problem(3, 50, 40, 0.1, 4)
    assert gap_at_k(scores, labels, 5, tie_order="tf1") == pytest.approx(gap_at_k(scores, labels, 5), abs=1e-12)
    np.testing.assert_allclose(
        per_class_average_precision(scores, labels, 5, tie_order="tf1"),
        per_class_average_precision(scores, labels, 5),
        atol=1e-12,
    )


def test_gap_counts_positives_outside_top_k():
    # One video, two positives; only one of them can be in the top-1.
    assert gap_at_k([[0.9, 0.1, 0.5]], [[1, 1, 0]], k=1) == pytest.approx(0.5)


def test_perr_zero_score_and_unlabelled_conventions():
    # Top-1 class is positive but scored 0 -> no hit; the unlabelled video counts 0 in the mean.
    assert perr([[0.0, -1.0], [0.3, 0.2]], [[1, 0], [0, 0]]) == 0.0
    assert perr([[0.5, 0.1], [0.3, 0.2]], [[1, 0], [0, 0]]) == pytest.approx(0.5)


def test_average_precision_single_list():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([0, 1, 0, 1])
    assert average_precision(scores, labels) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert average_precision(scores, labels, num_positives=4) == pytest.approx((1 / 2 + 2 / 4) / 4)
    assert average_precision(scores, np.zeros(4)) == 0.0
    with pytest.raises(ValueError, match="num_positives"):
        average_precision(scores, labels, num_positives=1)


def test_precision_recall_curve_area_is_ap():
    rng = np.random.default_rng(5)
    scores, labels = rng.random(200, dtype=np.float32), rng.random(200) < 0.3
    precision, recall = precision_recall_curve(scores, labels, num_positives=int(labels.sum()) + 7)
    area = np.sum(precision * np.diff(np.concatenate(([0.0], recall))))
    assert area == pytest.approx(average_precision(scores, labels, num_positives=int(labels.sum()) + 7))
    assert recall[-1] < 1.0


def test_sklearn_cross_check():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(11)
    scores, labels = rng.random(300, dtype=np.float32), rng.random(300) < 0.2
    assert average_precision(scores, labels) == pytest.approx(metrics.average_precision_score(labels, scores))


def test_input_validation():
    with pytest.raises(ValueError, match="does not match"):
        gap_at_k(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        gap_at_k(np.array([[np.nan, 0.1]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="empty_classes"):
        mean_average_precision(P, Y, empty_classes="ignore")
    with pytest.raises(ValueError, match="tie_order"):
        gap_at_k(P, Y, tie_order="random")
