"""Which frames of a video a model sees.

Four strategies, all returning int64 frame indices into a video of ``T`` frames
(``n`` = :attr:`FrameSelection.num_frames`):

* ``"random"`` — ``n`` frames drawn independently *with replacement*: slot ``i`` takes
  frame ``floor(u_i * T)`` with ``u_i ~ U[0, 1)``. This is the TF1 starter code's
  ``SampleRandomFrames`` (WILLOW trains with ``n = 300``); indices are not sorted and
  repeats are common for short videos.
* ``"uniform"`` — deterministic, evenly spread: slot ``i`` takes ``floor(i / n * T)``
  (``SampleUniformFrames``; frames repeat when ``T < n``).
* ``"sequence"`` — a random contiguous window: ``start = floor(u * (max(T - n, 0) + 1))``,
  slot ``j`` takes ``min(start + j, T - 1)``, so short videos repeat their last frame
  (``SampleRandomSequence``).
* ``"all"`` — no sampling: the first ``min(T, n)`` frames in order. Videos of different
  lengths are padded to the batch maximum by :func:`videopool.data.collate_videos`, and the
  mask marks the real rows (the NeXtVLAD setting with ``n = 300``).

Every strategy selects exactly ``n`` frames except ``"all"``, which selects ``min(T, n)``.
A video without frames selects none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SELECTIONS = ("random", "uniform", "sequence", "all")


@dataclass(frozen=True)
class FrameSelection:
    """How many frames to take from each video, and how.

    Args:
        strategy: ``"random"``, ``"uniform"``, ``"sequence"`` or ``"all"`` (module docstring).
        num_frames: frames per video ``n``; for ``"all"`` the cap on the number kept.
    """

    strategy: str = "all"
    num_frames: int = 300

    def __post_init__(self) -> None:
        if self.strategy not in FRAME_SELECTIONS:
            raise ValueError(f"frame selection strategy must be one of {FRAME_SELECTIONS}, got {self.strategy!r}")
        if int(self.num_frames) <= 0:
            raise ValueError(f"frame selection num_frames must be positive, got {self.num_frames}")

    @property
    def needs_rng(self) -> bool:
        return self.strategy in ("random", "sequence")

    def __call__(self, num_frames_in_video: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return select_frames(num_frames_in_video, self, rng)


def random_frame_indices(num_frames_in_video: int, uniform_draws: np.ndarray) -> np.ndarray:
    """``floor(u * T)`` for every draw ``u`` in [0, 1) (sampling with replacement)."""
    draws = np.asarray(uniform_draws, dtype=np.float64)
    indices = np.floor(draws * num_frames_in_video).astype(np.int64)
    # u * T can round up to T for u just below 1 in floating point.
    return np.minimum(indices, num_frames_in_video - 1)


def uniform_frame_indices(num_frames_in_video: int, count: int) -> np.ndarray:
    """``floor(i / n * T)`` for ``i = 0 .. n-1``, in exact integer arithmetic."""
    return (np.arange(count, dtype=np.int64) * num_frames_in_video) // count


def sequence_frame_indices(num_frames_in_video: int, count: int, uniform_draw: float) -> np.ndarray:
    """A window of ``count`` consecutive frames starting at ``floor(u * (max(T - n, 0) + 1))``."""
    positions = max(num_frames_in_video - count, 0) + 1
    start = min(int(np.floor(uniform_draw * positions)), positions - 1)
    return np.minimum(start + np.arange(count, dtype=np.int64), num_frames_in_video - 1)


def select_frames(num_frames_in_video: int, selection: FrameSelection,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices (int64) chosen by ``selection`` from a video of ``num_frames_in_video`` frames.

    ``rng`` is required by the random strategies (``"random"``, ``"sequence"``).
    """
    total = int(num_frames_in_video)
    count = int(selection.num_frames)
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    if selection.strategy == "all":
        return np.arange(min(total, count), dtype=np.int64)
    if selection.strategy == "uniform":
        return uniform_frame_indices(total, count)
    if rng is None:
        raise ValueError(f"frame selection {selection.strategy!r} is random and needs an rng "
                         "(numpy.random.Generator)")
    if selection.strategy == "random":
        return random_frame_indices(total, rng.random(count))
    return sequence_frame_indices(total, count, rng.random())
