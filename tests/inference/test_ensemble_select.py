"""Greedy ensemble selection (Miech et al. 2017, §8) on hand-made predictions whose GAPs are worked out below, the
stop rule, and the prediction cache (reused on a second call, recomputed when a setting changes, aligned by id).

The hand-made sets: four videos whose one positive label is class 0 of two classes, scored at top_k = 1, so each
video contributes its top class and GAP = (1/4) Σ over the correct videos of the precision at their rank."""

import numpy as np
import pytest

from tests.tiny_run import validate_glob
from videopool.inference import ensemble_select
from videopool.inference.ensemble_select import FrameSettings, candidate_predictions, greedy_select
from videopool.metrics import gap_at_k

LABELS = np.array([[1, 0]] * 4)


def _scores(*class0):
    return np.array([[p, 1 - p] for p in class0], dtype=np.float32)


# A: right on videos 0-2 (0.9), wrong on video 3 (0.6 for class 1)   -> ranks c c c w       GAP 3/4
# B: like A, and less sure: wrong on video 3 at 0.7, right on 2 at .55 -> ranks c c w c      GAP (1+1+3/4)/4
# C: right on 0 and 3, wrong on 1 and 2                               -> ranks c c w w       GAP 2/4
# (A+B)/2 is still wrong on video 3 only, ranked last: 3/4, no gain; (A+C)/2 is right everywhere: GAP 1.
A = _scores(0.9, 0.9, 0.9, 0.4)
B = _scores(0.8, 0.8, 0.55, 0.3)
C = _scores(0.6, 0.45, 0.45, 0.95)


def test_the_hand_made_gaps_are_what_the_comments_say():
    assert [gap_at_k(p, LABELS, 1) for p in (A, B, C)] == pytest.approx([0.75, 2.75 / 4, 0.5])
    assert gap_at_k((A + B) / 2, LABELS, 1) == pytest.approx(0.75)
    assert gap_at_k((A + C) / 2, LABELS, 1) == pytest.approx(1.0)


def test_the_second_best_model_is_not_the_best_addition():
    selection = greedy_select([B, C, A], LABELS, top_k=1)
    assert selection.single_gaps == pytest.approx([2.75 / 4, 0.5, 0.75])
    assert selection.picks == [2, 1]  # A, then C (not B, the second best alone)
    assert selection.curve == pytest.approx([0.75, 1.0])
    assert selection.stop == "no candidate raises the GAP"  # nothing beats GAP 1
    assert selection.counts == {2: 1, 1: 1}


# A2: right on 0, 1, 3; wrong on 2 at 0.65                      -> ranks c c w c  GAP (1+1+3/4)/4
# C2: wrong on video 0 at 0.95, right elsewhere                  -> ranks w c c c  GAP (1/2+2/3+3/4)/4
# (A2+C2)/2: only video 0 wrong (0.525), ranked last              -> GAP 3/4
# (2·A2+C2)/3: right everywhere                                   -> GAP 1 (re-adding A2 helps)
# (A2+2·C2)/3: video 0 wrong at 0.667, ranked third               -> GAP (1+1+3/4)/4
A2 = _scores(0.9, 0.9, 0.35, 0.6)
C2 = _scores(0.05, 0.6, 0.9, 0.6)


def test_re_adding_a_model_helps_with_replacement():
    assert gap_at_k((A2 + C2) / 2, LABELS, 1) == pytest.approx(0.75)
    assert gap_at_k((2 * A2 + C2) / 3, LABELS, 1) == pytest.approx(1.0)
    assert gap_at_k((A2 + 2 * C2) / 3, LABELS, 1) == pytest.approx(2.75 / 4)
    selection = greedy_select([C2, A2], LABELS, top_k=1)
    assert selection.picks == [1, 0, 1] and selection.curve == pytest.approx([2.75 / 4, 0.75, 1.0])
    assert selection.counts == {1: 2, 0: 1}  # the weights of the built ensemble: 2·A2 + C2
    without = greedy_select([C2, A2], LABELS, top_k=1, replacement=False)
    assert without.picks == [1, 0] and without.stop == "no candidate left"


def test_stop_rules():
    assert greedy_select([A2, C2], LABELS, top_k=1, max_models=2).stop == "max_models"
    assert greedy_select([A2, C2], LABELS, top_k=1, max_models=2).picks == [0, 1]
    assert greedy_select([A2, C2], LABELS, top_k=1, max_models=1).picks == [0]
    # a copy of the best model never raises the GAP: one model, stopped at once
    copy = greedy_select([A, A.copy()], LABELS, top_k=1)
    assert copy.picks == [0] and copy.stop == "no candidate raises the GAP"


def test_greedy_matches_an_exhaustive_step_by_step_search():
    rng = np.random.default_rng(4)
    labels = rng.random((40, 12)) < 0.2
    candidates = [rng.random((40, 12)).astype(np.float32) * (1 + labels * s) for s in (0.2, 0.5, 0.8, 1.1)]
    selection = greedy_select(candidates, labels, max_models=5)
    total, chosen = np.zeros_like(candidates[0]), []
    for m, pick in enumerate(selection.picks):
        gaps = [gap_at_k((total + c) / (m + 1), labels) for c in candidates]
        assert pick == int(np.argmax(gaps)) and selection.curve[m] == pytest.approx(max(gaps))
        total += candidates[pick]
        chosen.append(pick)
    assert all(later > earlier for earlier, later in zip(selection.curve, selection.curve[1:]))


def test_predictions_are_cached_and_reused(trained_run, tiny_data, tmp_path, monkeypatch):
    steps = sorted((trained_run / "checkpoints").glob("step-*.safetensors"))[-2:]
    calls = []
    compute = ensemble_select.compute_probabilities
    monkeypatch.setattr(ensemble_select, "compute_probabilities", lambda *a, **k: calls.append(a[0]) or compute(*a, **k))
    settings = FrameSettings()
    data = [validate_glob(tiny_data)]
    first = candidate_predictions([str(s) for s in steps], data, str(tmp_path / "cache"), settings, workers=0,
                                  progress=False)
    assert len(calls) == 2 and all(item.computed for item in first)
    assert first[0].probabilities.dtype == np.float16 and first[0].probabilities.shape == (9, 6)
    again = candidate_predictions([str(s) for s in steps], data, str(tmp_path / "cache"), settings, workers=0,
                                  progress=False)
    assert len(calls) == 2 and not any(item.computed for item in again)
    for a, b in zip(first, again):
        assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(a.labels, b.labels)
        assert list(a.ids) == list(b.ids)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # another frame setting is another key: computed again
    candidate_predictions([str(steps[0])], data, str(tmp_path / "cache"), FrameSettings(member_frames="trained"),
                          workers=0, progress=False)
    assert len(calls) == 3


def test_cached_rows_are_aligned_by_video_id(trained_run, tiny_data, tmp_path):
    path = str(trained_run / "best.safetensors")
    found = candidate_predictions([path], [validate_glob(tiny_data)], str(tmp_path), FrameSettings(), workers=0,
                                  progress=False)[0]
    # the same predictions stored in another video order come back in the first candidate's order
    order = np.arange(len(found.ids))[::-1]
    shuffled = ensemble_select.Predictions("other", found.ids[order], found.probabilities[order],
                                           found.labels[order], None, found.cache_file, False)
    aligned = ensemble_select.align([found, shuffled])[1]
    assert list(aligned.ids) == list(found.ids) and np.array_equal(aligned.probabilities, found.probabilities)
