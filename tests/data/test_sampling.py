import math
from fractions import Fraction

import numpy as np
import pytest

from videopool.data.sampling import (
    FrameSelection,
    random_frame_indices,
    select_frames,
    sequence_frame_indices,
    uniform_frame_indices,
)


class FixedDraws:
    """Stands in for numpy's Generator: returns given U[0,1) draws in order."""

    def __init__(self, draws):
        self.draws = list(draws)

    def random(self, size=None):
        if size is None:
            return self.draws.pop(0)
        taken, self.draws = self.draws[:size], self.draws[size:]
        return np.array(taken)


@pytest.mark.parametrize("total", [1, 3, 7, 300])
def test_random_is_floor_u_times_frames_per_slot(total):
    draws = [0.0, 0.1, 0.5, 0.999, 0.33, 0.9999999999999999]
    got = select_frames(total, FrameSelection("random", len(draws)), FixedDraws(draws))
    expected = [min(math.floor(u * total), total - 1) for u in draws]
    assert got.tolist() == expected
    assert got.dtype == np.int64


def test_random_draws_with_replacement_and_stays_inside_video():
    rng = np.random.default_rng(0)
    got = select_frames(5, FrameSelection("random", 300), rng)
    assert len(got) == 300
    assert got.min() >= 0 and got.max() <= 4
    assert set(got.tolist()) == {0, 1, 2, 3, 4}  # repeats: more slots than frames


@pytest.mark.parametrize("total,count", [(10, 4), (4, 10), (300, 300), (1, 3), (7, 3)])
def test_uniform_is_floor_i_over_n_times_frames(total, count):
    got = select_frames(total, FrameSelection("uniform", count))
    # exact rational arithmetic: i/n*T in floating point can land just below an integer
    expected = [math.floor(Fraction(i, count) * total) for i in range(count)]
    assert got.tolist() == expected


@pytest.mark.parametrize("total,count,u", [(10, 4, 0.0), (10, 4, 0.999), (10, 4, 0.5),
                                           (3, 5, 0.7), (5, 5, 0.2)])
def test_sequence_is_contiguous_from_floor_u_start(total, count, u):
    got = select_frames(total, FrameSelection("sequence", count), FixedDraws([u]))
    start = math.floor(u * (max(total - count, 0) + 1))
    expected = [min(start + j, total - 1) for j in range(count)]
    assert got.tolist() == expected


def test_sequence_repeats_last_frame_for_short_videos():
    got = sequence_frame_indices(3, 6, 0.9)
    assert got.tolist() == [0, 1, 2, 2, 2, 2]


def test_all_keeps_first_frames_in_order_capped():
    assert select_frames(4, FrameSelection("all", 300)).tolist() == [0, 1, 2, 3]
    assert select_frames(10, FrameSelection("all", 3)).tolist() == [0, 1, 2]


def test_helpers_match_select_frames():
    assert uniform_frame_indices(9, 3).tolist() == [0, 3, 6]
    assert random_frame_indices(4, np.array([0.25, 0.74])).tolist() == [1, 2]


@pytest.mark.parametrize("strategy", ["random", "uniform", "sequence", "all"])
def test_video_without_frames_selects_nothing(strategy):
    assert len(select_frames(0, FrameSelection(strategy, 5), np.random.default_rng(0))) == 0


def test_random_strategies_require_rng_and_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="rng"):
        select_frames(10, FrameSelection("random", 3))
    with pytest.raises(ValueError, match="strategy"):
        FrameSelection("every_other", 3)
    with pytest.raises(ValueError, match="num_frames"):
        FrameSelection("random", 0)


def test_same_seed_same_selection():
    selection = FrameSelection("random", 50)
    a = selection(100, np.random.default_rng(3))
    b = selection(100, np.random.default_rng(3))
    c = selection(100, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
