"""``make_loader``: the DataLoader over TFRecord globs that training, evaluation and prediction all use."""

from __future__ import annotations

import glob
import os
import warnings
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import DataLoader

from videopool.data.batch import VideoBatch
from videopool.data.codec import FRAMES_IN_RECORD
from videopool.data.collate import collate_videos
from videopool.data.dataset import TF_MAX_FRAMES, VideoIterableDataset
from videopool.data.errors import (
    BAD_RECORDS_KEY,
    DEFAULT_MAX_BAD_RECORDS,
    BadRecordLimitError,
    ErrorPolicy,
    RecordError,
    bad_records_allowed,
    check_max_bad_records,
)
from videopool.data.remote import expand_url, is_url, local_path
from videopool.data.sampling import FrameSelection
from videopool.data.schema import Schema


def expand_patterns(patterns: Sequence[str] | str, what: str = "data") -> list[str]:
    """Check that every glob matches at least one file; return the patterns unchanged."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ValueError(f"no {what} given: pass a file glob such as 'DATA/train-*.tfrecord'")
    for pattern in patterns:
        if is_url(pattern):
            expand_url(pattern)  # raises naming the URL; HTTP patterns are refused (no listing)
        elif not glob.glob(os.path.expanduser(local_path(pattern))):
            raise FileNotFoundError(f"{what} pattern {pattern!r} matches no file")
    return list(patterns)


def resolve_workers(workers: int | None, device: torch.device | str = "cpu") -> int:
    """``workers`` when given, else the default number of loader processes for ``device``.

    The default is 0 (load in the main process) for a CPU run on a machine with at most 2 usable cores and 1
    otherwise. On 2 cores a worker process competes with the model's threads: measured on the demo data,
    gated NetVLAD (K=64, 300 frames) trained at 126 videos/s in-process against 112 with one worker, the demo's
    small model at ~650 against ~500, and evaluation was faster in-process too. The batches are the same
    either way (the dataset shards by worker), so the choice never changes a result.
    """
    if workers is not None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if torch.device(device).type == "cpu" and cores <= 2 else 1


def make_loader(
    patterns: Sequence[str] | str,
    *,
    num_classes: int,
    batch_size: int,
    strategy: str,
    num_frames: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    workers: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str = "cpu",
    what: str = "data",
    on_bad_record: str = "error",
    max_bad_records: float = DEFAULT_MAX_BAD_RECORDS,
    on_skip: Callable[[RecordError], None] | None = None,
    bad_record_log: str | None = None,
    features: Mapping[str, int] | None = None,
    schema: Schema | None = None,
    trainable: bool = True,
    layout=None,
    exclude_ids=None,
) -> "VideoLoader":
    """A DataLoader of :class:`~videopool.data.VideoBatch` over ``patterns``.

    The dataset shards its files/records over ranks and loader workers itself, so
    every video is read exactly once per epoch across the whole job. ``workers=None`` picks the
    default for ``device`` (:func:`resolve_workers`); batches are pinned for CUDA.

    Bad records (``on_bad_record``): ``"error"`` raises the first one's :class:`RecordError` (file, record,
    offset) in the main process, also from a loader worker; ``"skip"`` leaves it out, calls ``on_skip(error)``
    for each one as the batch after it arrives, counts them in ``loader.skipped`` (an
    :class:`~videopool.data.errors.ErrorPolicy`, renewed at every pass) and raises
    :class:`~videopool.data.errors.BadRecordLimitError` once a pass has had more than ``max_bad_records``
    (a fraction of the records read so far, tolerating at least one, or a count >= 1; see
    :func:`~videopool.data.errors.bad_records_allowed`). ``bad_record_log`` names where the caller lists
    them, for that message. The skips are deterministic: a pass forms the same batches every time.

    ``features`` (the model's ``{name: size}``) checks every shard first (:func:`~videopool.data.preflight.
    check_shards`: a shard of another kind fails now, named) and decodes with the model's sizes, so a bad
    record is reported against its own shard; ``schema`` gives the decode schema directly (no check).
    ``trainable=False`` (a trained model's evaluation) words those messages without the training override.
    ``layout`` (a :class:`~videopool.data.layouts.Layout`, a built-in layout's name or a layout file) names the
    record keys, sizes and quantization of the files (default: read off the first record).
    """
    check_max_bad_records(max_bad_records)
    ErrorPolicy(on_bad_record)  # validates the choice
    patterns = expand_patterns(patterns, what)
    if layout is not None:
        from videopool.data.layouts import resolve_layout

        layout = resolve_layout(layout)
    if schema is None and features is not None:
        from videopool.data.preflight import check_shards

        schema = check_shards(patterns, features=features, num_classes=num_classes, on_error=on_bad_record,
                              what=what, trainable=trainable, record_layout=layout).schema
    elif schema is None and layout is not None:
        schema = layout.schema
    dataset = VideoIterableDataset(
        patterns,
        num_classes=num_classes,
        schema=schema,
        selection=FrameSelection(strategy=strategy, num_frames=num_frames),
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        dequantize=False,  # uint8 through the workers (4x fewer bytes); collate_videos dequantizes per batch
        on_error=on_bad_record,
        report_errors=True,  # the bad records reach this process with the batches, from any worker
        feature_names=list(features) if features is not None else None,
        exclude_ids=exclude_ids,  # --resume on another world size: the ids this epoch already trained on
    )
    workers = resolve_workers(workers, device)
    return VideoLoader(
        dataset,
        what=what,
        on_bad_record=on_bad_record,
        max_bad_records=max_bad_records,
        on_skip=on_skip,
        bad_record_log=bad_record_log,
        batch_size=batch_size,
        collate_fn=collate_videos,
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        # one batch ahead per worker: parsing shares the CPU with training (on 2 cores, one worker
        # already keeps up: parsing costs ~1-7% of a video's training CPU; more workers steal compute)
        prefetch_factor=2 if workers > 0 else None,
        persistent_workers=False,  # so each epoch's set_epoch reaches the workers
    )


_WARNED_CUTS: set[str] = set()  # the ``what`` of the loaders that warned of a video cut at the frame cap


class VideoLoader(DataLoader):
    """The DataLoader :func:`make_loader` returns: it applies the bad-record policy in the main process.

    The dataset (``report_errors=True``) hands every bad record over with the batch after it, from whichever
    worker read it. Iterating raises the first one under ``"error"``; under ``"skip"`` it counts them in
    :attr:`skipped`, reports each to ``on_skip`` and stops the pass with :class:`BadRecordLimitError` beyond
    ``max_bad_records``. Batches that held only bad records are dropped, so every batch has videos.
    :attr:`records_read` counts the pass's records, good and bad. A video longer than the frame cap (the
    dataset's ``max_frames``, for ``"all"`` also its ``num_frames``) is read up to the cap; :attr:`cut_videos`
    counts the pass's, and the first one of each ``what`` in a process is a warning naming it and the cap.
    """

    def __init__(self, dataset, *, what: str, on_bad_record: str, max_bad_records: float,
                 on_skip: Callable[[RecordError], None] | None = None, bad_record_log: str | None = None,
                 **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.what, self.on_bad_record, self.max_bad_records = what, on_bad_record, max_bad_records
        self.on_skip, self.bad_record_log = on_skip, bad_record_log
        self.skipped = ErrorPolicy(on_bad_record)
        self.records_read = 0
        self.cut_videos = 0

    @property
    def frame_cap(self) -> int:
        dataset = self.dataset
        cap = getattr(dataset, "max_frames", TF_MAX_FRAMES)
        selection = getattr(dataset, "selection", None)
        return min(cap, selection.num_frames) if selection is not None and selection.strategy == "all" else cap

    def _count_cut(self, cut: list[tuple[str, int]]) -> None:
        self.cut_videos += len(cut)
        if self.what not in _WARNED_CUTS:
            _WARNED_CUTS.add(self.what)
            video_id, frames = cut[0]
            warnings.warn(f"{self.what}: video {video_id!r} has {frames} frames, more than the cap of "
                          f"{self.frame_cap}: only its first {self.frame_cap} are read (the YouTube-8M readers' "
                          "300, or num_frames / --num-frames with sampling 'all'); further videos like it are "
                          "counted, not warned about", RuntimeWarning, stacklevel=3)

    def __iter__(self) -> Iterator[VideoBatch]:
        return self._checked(super().__iter__())

    def _checked(self, batches) -> Iterator[VideoBatch]:
        policy = self.skipped = ErrorPolicy(self.on_bad_record)
        self.records_read = 0
        self.cut_videos = 0
        try:
            for batch in batches:
                errors = batch.extra.pop(BAD_RECORDS_KEY, ())
                cut = batch.extra.pop(FRAMES_IN_RECORD, None)
                if cut:
                    self._count_cut(cut)
                for error in errors:
                    policy.handle(error)  # raises it under "error"
                    if self.on_skip is not None:
                        self.on_skip(error)
                self.records_read += len(batch) + len(errors)
                if errors and policy.count > bad_records_allowed(self.max_bad_records, self.records_read):
                    raise BadRecordLimitError(self.what, policy, self.records_read, self.max_bad_records,
                                              self.bad_record_log)
                if len(batch):
                    yield batch
        finally:
            # Stop the workers now, in this process: left to the garbage collector, an iterator caught in a
            # reference cycle with the exception may be finalised in a later loader's forked worker.
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    dataset = loader.dataset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
