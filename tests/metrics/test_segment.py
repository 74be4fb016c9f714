import numpy as np
import pytest

from videopool.data import SegmentAnnotations, Video
from videopool.metrics import segment_average_precisions, segment_ground_truth, segment_map

# Spec §8.6: s1 rated negative, s2 positive, s3 unrated, s4 positive; N_c = 3 (one positive never submitted).
GROUND_TRUTH = {("s1", 7): 0.0, ("s2", 7): 1.0, ("s4", 7): 1.0, ("s9", 7): 1.0, ("s3", 8): 1.0}


def test_spec_example():
    assert segment_map({7: ["s1", "s2", "s3", "s4"]}, GROUND_TRUTH) == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert segment_map({7: ["s1", "s2", "s3", "s4"]}, GROUND_TRUTH) == pytest.approx(0.388889, abs=1e-6)


def test_truncation_happens_before_dropping_unrated_ids():
    # top_n=3 keeps s1, s2, s3; s3 is unrated for class 7, so s4 does not move up into the list.
    assert segment_map({7: ["s1", "s2", "s3", "s4"]}, GROUND_TRUTH, top_n=3) == pytest.approx((1 / 2) / 3)
    assert segment_map({7: ["s1", "s2", "s3", "s4"]}, GROUND_TRUTH, top_n=None) == pytest.approx(0.388889, abs=1e-6)


def test_mean_over_submitted_classes_only():
    aps = segment_average_precisions({7: ["s2"], 8: ["s3", "s2"]}, GROUND_TRUTH)
    assert aps == {7: pytest.approx(1 / 3), 8: pytest.approx(1.0)}
    assert segment_map({7: ["s2"], 8: ["s3", "s2"]}, GROUND_TRUTH) == pytest.approx((1 / 3 + 1) / 2)


def test_class_without_rated_positives():
    with pytest.raises(ValueError, match="class 9"):
        segment_map({9: ["s1"], 7: ["s2"]}, GROUND_TRUTH)
    assert segment_map({9: ["s1"], 7: ["s2"]}, GROUND_TRUTH, missing_positives="skip") == pytest.approx(1 / 3)


def test_brute_force_on_random_submission():
    rng = np.random.default_rng(0)
    segments = [f"v{i}:{5 * j}" for i in range(30) for j in range(4)]
    truth = {}
    for seg in segments:
        for c in range(3):
            if rng.random() < 0.5:
                truth[(seg, c)] = float(rng.random() < 0.4)
    submission = {c: list(rng.permutation(segments)[:50]) for c in range(3)}
    expected = []
    for c, ids in submission.items():
        rated = [truth[(s, c)] for s in ids[:40] if (s, c) in truth]
        hits, total = 0, 0.0
        for rank, label in enumerate(rated, start=1):
            if label > 0:
                hits += 1
                total += hits / rank
        expected.append(total / sum(1 for (s, cc), v in truth.items() if cc == c and v > 0))
    assert segment_map(submission, truth, top_n=40) == pytest.approx(np.mean(expected), abs=1e-12)


def test_ground_truth_from_video_records():
    rated = SegmentAnnotations(
        labels=np.array([3, 3, 5]), start_times=np.array([0, 35, 35]), scores=np.array([1.0, 0.0, 1.0], np.float32)
    )
    videos = [Video(id="abc", labels=[3, 5], features={}, segments=rated), Video(id="x", labels=[], features={})]
    assert segment_ground_truth(videos) == {("abc:0", 3): 1.0, ("abc:35", 3): 0.0, ("abc:35", 5): 1.0}
