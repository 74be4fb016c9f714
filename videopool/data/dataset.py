"""PyTorch datasets over YouTube-8M-format shards.

* :class:`VideoIterableDataset` streams shards for training: every record exactly once per
  epoch across DataLoader workers and distributed ranks, shuffled by file order plus a
  bounded buffer, deterministic for a given ``(seed, epoch)``.
* :class:`VideoMapDataset` gives random access through per-file indexes of record offsets,
  for evaluation, small data and ``DistributedSampler``.

Both yield the item dicts that :func:`videopool.data.collate_videos` batches::

    {"id", "frames": {name: Tensor[n, D]}, "num_frames", "labels": Tensor[V], "segments"}

Frames are float32 by default (``dequantize=True``). With ``dequantize=False`` they stay
uint8 codes, which decode faster; ``collate_videos`` then dequantizes once per batch, giving
the same float32 batch. To also move 4x fewer bytes from DataLoader workers, collate with
``collate_videos(..., dequantize=False)`` and call
:func:`videopool.data.collate.dequantize_batch` after moving the batch to its device.
"""

from __future__ import annotations

import bisect
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from videopool.data import remote
from videopool.data.codec import FRAMES_IN_RECORD, decode_record, infer_schema
from videopool.data.errors import BAD_RECORDS_KEY, ErrorPolicy, RecordError, forwarding_policy
from videopool.data.io import expand_paths
from videopool.data.sampling import FrameSelection, select_frames
from videopool.data.schema import Schema
from videopool.data.sharding import partition_files, resolve_world, shuffle_buffer
from videopool.data.tfrecord import index_records, read_record_at, read_records
from videopool.data.video import Video

TF_MAX_FRAMES = 300  # the YouTube-8M readers keep at most the first 300 frames
_MAX_OPEN_FILES = 16  # per process, for VideoMapDataset's random reads


def make_item(video: Video, selection: FrameSelection, rng: np.random.Generator | None,
              num_classes: int, feature_names: Sequence[str]) -> dict:
    """Select frames of a decoded video and build the dataset item dict."""
    num_frames = min(int(video.features[name].shape[0]) for name in feature_names)
    indices = select_frames(num_frames, selection, rng)
    frames = {}
    for name in feature_names:
        matrix = video.features[name]
        if selection.strategy == "all" and len(indices) == matrix.shape[0] and matrix.flags.writeable:
            selected = matrix  # no copy needed: already exactly the frames we want
        else:
            selected = matrix[indices]  # fancy indexing copies (and detaches from the record buffer)
        frames[name] = torch.from_numpy(np.ascontiguousarray(selected))
    labels = torch.zeros(num_classes, dtype=torch.float32)
    if video.labels:
        labels[torch.as_tensor(video.labels, dtype=torch.int64)] = 1.0
    item = {"id": video.id, "frames": frames, "num_frames": num_frames, "labels": labels,
            "segments": video.segments}
    if FRAMES_IN_RECORD in video.extra:  # cut at the frame cap: the loader reports it
        item[FRAMES_IN_RECORD] = video.extra[FRAMES_IN_RECORD]
    return item


class _ShardReader:
    """Shared settings and decoding of both datasets."""

    def __init__(self, patterns, *, num_classes: int, schema: Schema | None, selection: FrameSelection | None,
                 seed: int, epoch: int, on_error: str, dequantize: bool, feature_names: Sequence[str] | None,
                 max_frames: int, verify_crc: bool) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.files = expand_paths(patterns)  # only names: no file is opened here
        self.num_classes = int(num_classes)
        self.selection = selection if selection is not None else FrameSelection()
        self.seed = int(seed)
        # In shared memory so that set_epoch reaches DataLoader workers, persistent ones included.
        self._epoch = torch.tensor([int(epoch)], dtype=torch.int64).share_memory_()
        ErrorPolicy(on_error)  # validates the mode now rather than inside a worker
        self.on_error = on_error
        self.dequantize = dequantize
        self.feature_names = tuple(feature_names) if feature_names is not None else None
        self.max_frames = max_frames
        self.verify_crc = verify_crc
        self._schema = schema.select(*self.feature_names) if schema is not None and self.feature_names else schema

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling (and random frame selection) of epoch ``epoch``; takes effect
        at the next ``iter()``, also in running ``persistent_workers``."""
        self._epoch[0] = int(epoch)

    def schema(self) -> Schema:
        """The record schema: as given, else inferred from the first intact record of the files."""
        if self._schema is None:
            skip_damage = ErrorPolicy("skip")  # a corrupt first record must not hide the schema
            records = (record for path in self.files
                       for record in read_records(path, verify_crc=self.verify_crc, errors=skip_damage))
            record = next(records, None)
            if record is None:
                raise RecordError("cannot infer the schema: no intact record in any file; pass schema=",
                                  path=self.files[0], kind="missing_feature")
            schema = infer_schema(record.payload)
            self._schema = schema.select(*self.feature_names) if self.feature_names else schema
        return self._schema

    def _decode_max_frames(self) -> int:
        if self.selection.strategy == "all":
            return min(self.max_frames, self.selection.num_frames)
        return self.max_frames

    def _decode(self, payload, path: str, index: int, offset: int, policy: ErrorPolicy) -> Video | None:
        try:
            return decode_record(payload, self.schema(), dequantize=self.dequantize, num_classes=self.num_classes,
                                 max_frames=self._decode_max_frames())
        except RecordError as error:
            policy.handle(error.located(path, index, offset))
            return None


class VideoIterableDataset(_ShardReader, IterableDataset):
    """Streams the videos of TFRecord shards; each record exactly once per epoch.

    Work split: the ``G = world_size * num_workers`` DataLoader workers of all ranks are
    numbered ``g = rank * num_workers + worker_id``. The epoch's file list (sorted names,
    shuffled by ``(seed, epoch)`` when ``shuffle``) is dealt round-robin: worker ``g`` reads
    files ``g, g + G, ...``. When there are fewer files than workers, each file is shared by
    ``R`` workers and its records are split by record index modulo ``R``
    (:func:`partition_files`). When the file count does not divide evenly, some workers
    (and ranks) get one file more than others: exactly-once holds, equal counts do not, so
    distributed training must tolerate ranks ending at different steps (or use
    :class:`VideoMapDataset` with ``DistributedSampler``).

    Shuffling: file order per epoch, then a buffer of ``shuffle_buffer`` records per worker
    (raw record bytes, about 250 KB each on YouTube-8M data, decoded when they leave it).
    The same ``seed``, ``epoch``, world size and worker count give the same order, so a run
    resumes at epoch granularity with :meth:`set_epoch`.

    Args:
        patterns: glob pattern(s), directories or files; an error if any matches nothing.
        num_classes: label vector width; a label outside ``[0, num_classes)`` is a bad record.
        schema: record layout; ``None`` infers it from the first record.
        selection: frame selection (:class:`FrameSelection`); default all frames, up to 300.
        shuffle, shuffle_buffer, seed, epoch: see above.
        on_error: ``"error"`` raises :class:`RecordError`; ``"skip"`` skips bad records
            (warning once per worker and epoch with the count).
        report_errors: instead of raising or warning, hand every bad record to the consumer: the item after
            it carries it in a list under ``"bad_records"`` (:data:`~videopool.data.errors.BAD_RECORDS_KEY`),
            and bad records after the last video come as an item holding only that key. With
            ``on_error="error"`` the stream ends at the first one. This is how :func:`make_loader` counts bad
            records found in DataLoader workers and applies the policy in the main process; the items
            between bad records are the same as with ``"skip"``, so batches form deterministically.
        dequantize: float32 frames (default) or uint8 codes (dequantized by the collate).
        rank, world_size: this process's place in distributed training; default from
            ``torch.distributed`` if initialized, else ``RANK`` / ``WORLD_SIZE``, else 0 / 1.
            Resolved at construction.
        feature_names: the features to read (default: all in the schema).
        max_frames: frames kept from the start of each video before selection (TF: 300).
        verify_crc: check TFRecord CRCs.
        exclude_ids: video ids already trained on in this epoch by a run with another world size or worker
            count (``--resume``): the rest of the epoch is dealt video by video instead of file by file.
    """

    def __init__(self, patterns, *, num_classes: int, schema: Schema | None = None,
                 selection: FrameSelection | None = None, shuffle: bool = True, shuffle_buffer: int = 1024,
                 seed: int = 0, epoch: int = 0, on_error: str = "error", dequantize: bool = True,
                 rank: int | None = None, world_size: int | None = None,
                 feature_names: Sequence[str] | None = None, max_frames: int = TF_MAX_FRAMES,
                 verify_crc: bool = True, report_errors: bool = False,
                 exclude_ids: Iterable[str] | None = None) -> None:
        super().__init__(patterns, num_classes=num_classes, schema=schema, selection=selection, seed=seed,
                         epoch=epoch, on_error=on_error, dequantize=dequantize, feature_names=feature_names,
                         max_frames=max_frames, verify_crc=verify_crc)
        self.report_errors = bool(report_errors)
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be at least 1, got {shuffle_buffer}")
        self.shuffle, self.shuffle_buffer = shuffle, int(shuffle_buffer)
        self.rank, self.world_size = resolve_world(rank, world_size)
        # The rest of an epoch begun with another split (world size or workers): see iter_worker.
        self.exclude_ids = frozenset(exclude_ids) if exclude_ids is not None else None

    def epoch_files(self) -> list[str]:
        """This epoch's file order (identical in every worker and rank)."""
        if not self.shuffle:
            return list(self.files)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.files))
        return [self.files[i] for i in order]

    def _records(self, reader: int, num_readers: int, policy: ErrorPolicy) -> Iterator[tuple]:
        files = self.epoch_files()
        errors = policy if policy.mode == "skip" else None
        for position, modulus, remainder in partition_files(len(files), reader, num_readers):
            path = files[position]
            for record in read_records(path, verify_crc=self.verify_crc, errors=errors):
                if record.index % modulus == remainder:
                    # Copy when buffering: a view would keep the whole read block alive.
                    payload = bytes(record.payload) if self.shuffle else record.payload
                    yield payload, path, record.index, record.offset

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.iter_worker(worker, num_workers)

    def iter_worker(self, worker: int, num_workers: int) -> Iterator[dict]:
        """The items DataLoader worker ``worker`` of ``num_workers`` yields (on this rank)."""
        reader = self.rank * num_workers + worker
        num_readers = self.world_size * num_workers
        rng = np.random.default_rng([self.seed, self.epoch, reader, num_readers])
        report = self.report_errors
        policy = forwarding_policy() if report else ErrorPolicy(self.on_error)
        excluded = self.exclude_ids
        # With exclude_ids (a resume on another world size or worker count) the old split cannot be continued:
        # every reader scans every file in one shared order and takes every num_readers-th video not yet trained
        # on, so the rest of the epoch is read exactly once and evenly (at the cost of each reader decoding all).
        records = self._records(reader, num_readers, policy) if excluded is None else self._records(0, 1, policy)
        if self.shuffle:
            order_rng = rng if excluded is None else np.random.default_rng([self.seed, self.epoch, 0, 0])
            records = shuffle_buffer(records, self.shuffle_buffer, order_rng)
        names = None
        remaining = 0
        for payload, path, index, offset in records:
            video = self._decode(payload, path, index, offset, policy)
            if report and self.on_error == "error" and policy.examples:
                yield {BAD_RECORDS_KEY: policy.take()[:1]}  # the consumer raises it; nothing after it is read
                return
            if video is None:
                continue
            if excluded is not None:
                if video.id in excluded:
                    continue
                remaining += 1
                if (remaining - 1) % num_readers != reader:
                    continue
            names = names or self.feature_names or self.schema().feature_names
            item = make_item(video, self.selection, rng, self.num_classes, names)
            if report and policy.examples:  # the bad records met since the previous video travel with this one
                item[BAD_RECORDS_KEY] = policy.take()
            yield item
        if report:
            pending = policy.take()  # bad records after the last video (e.g. a truncated end of file)
            if pending:
                yield {BAD_RECORDS_KEY: pending[:1] if self.on_error == "error" else pending}
        else:
            policy.warn_summary()


class VideoMapDataset(_ShardReader, Dataset):
    """Random access to the videos of TFRecord shards (``len``, ``dataset[i]``).

    Video ``i`` is the ``i``-th record in file order (files sorted as given by the
    patterns). Each file's record offsets are found on first use (headers only) and kept
    as int64 arrays (8 bytes per video); ``len()`` indexes every file. Works with any
    sampler, including ``DistributedSampler``. Random frame selections draw from a
    generator seeded by ``(seed, epoch, i)``, so an item is the same every time it is read
    within an epoch.

    A bad record raises :class:`RecordError` when read with ``on_error="error"``; with
    ``"skip"`` its item is ``None`` (with a warning) and :func:`collate_videos` leaves it
    out of the batch, so no video is counted twice.
    Arguments mean the same as for :class:`VideoIterableDataset`.
    """

    def __init__(self, patterns, *, num_classes: int, schema: Schema | None = None,
                 selection: FrameSelection | None = None, seed: int = 0, epoch: int = 0,
                 on_error: str = "error", dequantize: bool = True, feature_names: Sequence[str] | None = None,
                 max_frames: int = TF_MAX_FRAMES, verify_crc: bool = True) -> None:
        super().__init__(patterns, num_classes=num_classes, schema=schema, selection=selection, seed=seed,
                         epoch=epoch, on_error=on_error, dequantize=dequantize, feature_names=feature_names,
                         max_frames=max_frames, verify_crc=verify_crc)
        self._offsets: list[np.ndarray | None] = [None] * len(self.files)
        self._starts: list[int] | None = None
        self._handles: dict[str, object] = {}
        self._handles_pid = os.getpid()

    def offsets(self, file_number: int) -> np.ndarray:
        """Byte offsets (int64) of every record of file ``file_number``, indexed on first use."""
        if self._offsets[file_number] is None:
            self._offsets[file_number] = index_records(self.files[file_number], verify_crc=self.verify_crc)
        return self._offsets[file_number]

    def _cumulative(self) -> list[int]:
        if self._starts is None:
            starts = [0]
            for number in range(len(self.files)):
                starts.append(starts[-1] + len(self.offsets(number)))
            self._starts = starts
        return self._starts

    def __len__(self) -> int:
        return self._cumulative()[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """``(file number, record index in that file)`` of video ``index``."""
        starts = self._cumulative()
        if index < 0:
            index += starts[-1]
        if not 0 <= index < starts[-1]:
            raise IndexError(f"video index {index} out of range for {starts[-1]} videos")
        number = bisect.bisect_right(starts, index) - 1
        return number, index - starts[number]

    def _handle(self, path: str):
        if self._handles_pid != os.getpid():  # forked into a DataLoader worker: do not share file positions
            self._handles, self._handles_pid = {}, os.getpid()
        handle = self._handles.pop(path, None)
        if handle is None:
            if len(self._handles) >= _MAX_OPEN_FILES:  # close the least recently used: keep fds bounded
                self._handles.pop(next(iter(self._handles))).close()
            handle = (remote.open_url(path, remote.RANDOM_BLOCK) if remote.is_url(path)
                      else open(remote.local_path(path), "rb"))
        self._handles[path] = handle  # re-inserted last: dict order is recency order
        return handle

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def read_video(self, index: int) -> Video | None:
        """The decoded video ``index`` (all frames); ``None`` for a bad record under ``on_error="skip"``."""
        policy = ErrorPolicy(self.on_error)
        number, local = self.locate(index)
        path, offset = self.files[number], int(self.offsets(number)[local])
        try:
            payload = read_record_at(self._handle(path), offset, verify_crc=self.verify_crc, index=local)
        except RecordError as error:
            policy.handle(error.located(path, local, offset))
            video = None
        else:
            video = self._decode(payload, path, local, offset, policy)
        policy.warn_summary()
        return video

    def __getitem__(self, index: int) -> dict | None:
        video = self.read_video(index)
        if video is None:
            return None
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.selection.needs_rng else None
        names = self.feature_names or self.schema().feature_names
        return make_item(video, self.selection, rng, self.num_classes, names)
