"""Test-time resampling: the mean of the predictions of R independent random frame samplings of every video.

Tang et al., "Non-local NetVLAD Encoding for Video Classification" (arXiv 1810.00207), §3.4 and Table 4: a model
trained on randomly sampled frames is run 10 times with different samplings and the results are averaged
(+0.0005 GAP@20)::

    p(v) = (1/R) · Σ_r model(frames of v at idx_r),    idx_r[j] = floor(u_rj · T_v),  u_rj ~ U[0, 1)

Sample ``r`` is exactly what ``--sampling random --seed S+r`` feeds the model, so ``--test-time-samples R
--seed S`` equals the mean of those R runs. It costs one read and decode per video, not R: the loader reads all
(up to 300) frames of each video once, and :class:`ResamplingCollate` draws the R samplings of the whole batch
from R generators (one numpy call each) and gathers them with one indexing op per modality into a batch of
``R·B`` rows, sample-major (row ``r·B + b`` is sample ``r`` of video ``b``); ids, labels and num_frames keep ``B``
rows and ``extra[TEST_TIME_SAMPLES] = R`` tells :func:`videopool.inference.run_inference` to average.

The generators replay the streaming dataset's own (``VideoIterableDataset.iter_worker``): one per loader worker,
seeded ``[seed + r, epoch, reader, world_size · workers]``, ``num_frames`` draws per video with frames, in the
worker's order. ``tests/inference/test_resampling.py`` checks the equality with the separately seeded runs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from videopool.data.batch import VideoBatch
from videopool.data.collate import collate_videos
from videopool.data.sampling import random_frame_indices

TEST_TIME_SAMPLES = "test_time_samples"  # VideoBatch.extra key: the number of samples per video in the batch


class ResamplingCollate:
    """``collate_fn`` of a loader that reads every frame (``strategy="all"``, 300 frames): a batch of ``R·B``
    randomly sampled rows of ``num_frames`` frames each (module docstring). ``dataset`` is the loader's
    :class:`~videopool.data.dataset.VideoIterableDataset` (its seed offsets, rank and epoch). Call :meth:`reset`
    before each pass over the loader (``run_inference`` does)."""

    def __init__(self, samples: int, num_frames: int, seed: int, dataset) -> None:
        if samples < 1 or num_frames < 1:
            raise ValueError(f"samples and num_frames must be positive, got {samples} and {num_frames}")
        self.samples, self.num_frames, self.seed = int(samples), int(num_frames), int(seed)
        self.dataset = dataset
        self._streams: tuple[int, list[np.random.Generator]] | None = None

    def reset(self) -> None:
        """Start every sample's random stream again (a new pass over the data)."""
        self._streams = None

    def _generators(self) -> list[np.random.Generator]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self._streams is None or self._streams[0] != worker:
            d = self.dataset
            reader, readers = d.rank * workers + worker, d.world_size * workers
            self._streams = (worker, [np.random.default_rng([self.seed + r, d.epoch, reader, readers])
                                      for r in range(self.samples)])
        return self._streams[1]

    def __call__(self, items: Sequence[dict]) -> VideoBatch:
        batch = collate_videos(items)
        if not len(batch):
            return batch  # only bad records: the loader counts them and drops the batch
        lengths = batch.num_frames.numpy()
        with_frames = lengths > 0  # a video without frames draws nothing, as in select_frames
        count, n = int(with_frames.sum()), self.num_frames
        index = np.zeros((self.samples, len(batch), n), dtype=np.int64)
        for r, rng in enumerate(self._generators()):
            index[r, with_frames] = random_frame_indices(lengths[with_frames][:, None], rng.random((count, n)))
        index = torch.from_numpy(index)
        videos = torch.arange(len(batch))[None, :, None]
        mask = torch.from_numpy(np.broadcast_to(with_frames[None, :, None], index.shape).copy())
        frames = {}
        for name, x in batch.frames.items():
            if x.shape[1] == 0:  # no video of the batch has frames
                x = x.new_zeros(x.shape[0], 1, x.shape[2])
            rows = x[videos, index]  # [R, B, n, D]: one gather for all samples
            frames[name] = rows.masked_fill_(~mask[..., None], 0.0).reshape(-1, n, x.shape[2])
        return VideoBatch(ids=batch.ids, frames=frames, mask=mask.reshape(-1, n), num_frames=batch.num_frames,
                          labels=batch.labels, segments=batch.segments,
                          extra={**batch.extra, TEST_TIME_SAMPLES: self.samples})


def average_samples(probabilities: torch.Tensor, samples: int) -> torch.Tensor:
    """``[R·B, V]`` sample-major scores → their mean over the R samples of each video, ``[B, V]``."""
    if samples == 1:
        return probabilities
    return probabilities.reshape(samples, -1, probabilities.shape[-1]).mean(0)


def check_test_time_samples(sampling: str, samples: int) -> None:
    """Refuse ``samples > 1`` with a deterministic ``sampling``: every sample would be the same frames, so R runs
    would cost R times as much for the same scores."""
    if samples > 1 and sampling != "random":
        from videopool.core.errors import UserError

        raise UserError(f"--test-time-samples {samples} averages random frame samplings, but --sampling {sampling} "
                        "feeds the same frames every time; add --sampling random (or drop --test-time-samples)")
