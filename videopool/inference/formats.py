"""Kaggle submission files: writers that stream batches, and readers that parse them back.

Video level (2017/2018 challenges)::

    VideoId,LabelConfidencePairs
    vid1,12 0.981234 7 0.5 ...

one row per video with its top-k (default 20) ``class score`` pairs, scores
descending, formatted with ``%g`` (6 significant digits, as the TF1 starter
code). With ``class_names`` a third column ``LabelNames`` lists the names of
the same classes joined by ``|`` — handy for reading, not accepted by Kaggle.

Segment level (2019 challenge)::

    Class,Segments
    3,vidA:35 vidB:120 ...

one row per class with up to 100,000 ``videoId:startFrame`` ids in descending
confidence. Rows of classes that received no segment have an empty second field.

A file named by its path is written atomically (:func:`videopool.core.files.atomic_write`): rows go to a
temporary file that replaces the final path only once the writer is closed without an error, so a kill, an
exception or a full disk mid-way leaves the previous file (or none), never a truncated one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np
import torch

from videopool.core.files import atomic_write
from videopool.metrics.ranking import as_tensor, stable_top_k

VIDEO_HEADER = ("VideoId", "LabelConfidencePairs")
NAMES_COLUMN = "LabelNames"
SEGMENT_HEADER = ("Class", "Segments")


def format_score(score: float) -> str:
    """``%g`` with 6 significant digits, like the starter code (0.98123, 1e-05)."""
    return "%g" % score


def _open_for_writing(target: str | os.PathLike | IO[str]) -> tuple[IO[str], Any]:
    """``(text file, the atomic write to finish or None)``: a path is written atomically, an open file as is."""
    if isinstance(target, (str, os.PathLike)):
        atomic = atomic_write(target, "w", newline="", encoding="utf-8")
        return atomic.__enter__(), atomic
    return target, None


class VideoPredictionWriter:
    """Streams a video-level submission CSV.

    Args:
        target: path or open text file.
        top_k: pairs per video (Kaggle: 20).
        class_names: optional vocabulary (sequence indexed by class, or mapping);
            adds the ``LabelNames`` column.

    Use as a context manager, or call :meth:`close`::

        with VideoPredictionWriter("predictions.csv") as writer:
            for batch in loader:
                writer.write_batch(batch.ids, model(batch.frames, batch.mask))
    """

    def __init__(
        self,
        target: str | os.PathLike | IO[str],
        top_k: int = 20,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
    ) -> None:
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.top_k = top_k
        self.class_names = class_names
        self._file, self._atomic = _open_for_writing(target)
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(VIDEO_HEADER + ((NAMES_COLUMN,) if class_names is not None else ()))
        self.num_rows = 0

    def write_batch(self, ids: Sequence[str], predictions: Any) -> None:
        """Write one row per video from scores ``[B, V]`` (numpy or torch, any device)."""
        scores = as_tensor(predictions, "predictions")
        if scores.dim() != 2 or scores.shape[0] != len(ids):
            raise ValueError(f"predictions must be [len(ids)={len(ids)}, V], got shape {tuple(scores.shape)}")
        values, indices = stable_top_k(scores.float(), self.top_k)
        values, indices = values.cpu().numpy(), indices.cpu().numpy()
        for video_id, row_scores, row_classes in zip(ids, values.tolist(), indices.tolist()):
            pairs = " ".join(f"{c} {format_score(s)}" for c, s in zip(row_classes, row_scores))
            row = [video_id, pairs]
            if self.class_names is not None:
                row.append("|".join(self._name(c) for c in row_classes))
            self._csv.writerow(row)
        self.num_rows += len(ids)

    def _name(self, class_id: int) -> str:
        try:
            return str(self.class_names[class_id])
        except (IndexError, KeyError):
            return str(class_id)

    def close(self, *exc_info: Any) -> None:
        """Finish the file: a path is moved into place (or, with ``exc_info`` of an error, discarded)."""
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(*(exc_info or (None, None, None)))
        elif self._file is not None:
            self._file.flush()

    def __enter__(self) -> "VideoPredictionWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(*exc)


def iter_video_predictions(path: str | os.PathLike) -> Iterator[tuple[str, list[tuple[int, float]]]]:
    """Yield ``(video_id, [(class, score), ...])`` from a video-level CSV (header optional,
    extra columns such as ``LabelNames`` ignored)."""
    with open(path, newline="", encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row or (line_number == 1 and row[0] == VIDEO_HEADER[0]):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{line_number}: expected 'VideoId,LabelConfidencePairs', got {row!r}")
            tokens = row[1].split()
            if len(tokens) % 2:
                raise ValueError(f"{path}:{line_number}: odd number of tokens in the pairs of video {row[0]!r}")
            try:
                pairs = [(int(tokens[i]), float(tokens[i + 1])) for i in range(0, len(tokens), 2)]
            except ValueError as err:
                raise ValueError(f"{path}:{line_number}: video {row[0]!r}: {err}") from None
            yield row[0], pairs


def read_video_predictions(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """All rows of a video-level CSV as ``{video_id: [(class, score), ...]}`` (file order kept)."""
    return dict(iter_video_predictions(path))


class SegmentSubmissionWriter:
    """Collects segment predictions and writes the 2019 ``Class,Segments`` CSV.

    Memory is bounded per class: each class keeps its best ``max_per_class``
    scores and is pruned back to them once as many new ones have arrived (at most
    2 x ``max_per_class`` plus one batch). Equal scores keep the segment added first.

    Args:
        class_ids: the classes to rank (the 1,000-class whitelist), as columns of
            the prediction matrix; every one gets a row.
        max_per_class: ids per class in the file (Kaggle: 100,000).
        top_k: if set, each segment only competes in its ``top_k`` classes among
            ``class_ids`` (the starter code's ``--top_k``); None = all of them.
    """

    def __init__(self, class_ids: Sequence[int], max_per_class: int = 100_000, top_k: int | None = None) -> None:
        self.class_ids = np.asarray(sorted(set(int(c) for c in class_ids)), dtype=np.int64)
        if self.class_ids.size == 0 or max_per_class <= 0:
            raise ValueError("need at least one class id and a positive max_per_class")
        self.max_per_class = max_per_class
        self.top_k = top_k
        empty = (np.empty(0, np.float32), np.empty(0, object))
        self._kept: list[tuple[np.ndarray, np.ndarray]] = [empty] * self.class_ids.size
        self._pending: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.class_ids]
        self._pending_sizes = np.zeros(self.class_ids.size, dtype=np.int64)

    def add(self, segment_ids: Sequence[str], predictions: Any) -> None:
        """Add scores ``[S, V]`` of ``S`` segments (ids ``videoId:startFrame``)."""
        scores = as_tensor(predictions, "predictions").float()
        if scores.dim() != 2 or scores.shape[0] != len(segment_ids):
            raise ValueError(f"predictions must be [len(segment_ids)={len(segment_ids)}, V], got {tuple(scores.shape)}")
        if int(self.class_ids[-1]) >= scores.shape[1]:
            raise ValueError(f"class id {int(self.class_ids[-1])} is outside the {scores.shape[1]} prediction columns")
        whitelisted = scores[:, torch.from_numpy(self.class_ids).to(scores.device)]
        ids = np.asarray(segment_ids, dtype=object)
        if self.top_k is not None and self.top_k < whitelisted.shape[1]:
            values, columns = stable_top_k(whitelisted, self.top_k)
            values, columns = values.cpu().numpy().reshape(-1), columns.cpu().numpy().reshape(-1)
            rows = np.repeat(np.arange(len(ids)), self.top_k)
        else:
            values = whitelisted.cpu().numpy().T.reshape(-1)
            columns = np.repeat(np.arange(whitelisted.shape[1]), len(ids))
            rows = np.tile(np.arange(len(ids)), whitelisted.shape[1])
        order = np.argsort(columns, kind="stable")
        bounds = np.searchsorted(columns[order], np.arange(self.class_ids.size + 1))
        for column in np.flatnonzero(np.diff(bounds)):
            members = order[bounds[column] : bounds[column + 1]]
            self._pending[column].append((values[members], ids[rows[members]]))
            self._pending_sizes[column] += members.size
            if self._pending_sizes[column] > self.max_per_class:
                self._prune(column)

    def _prune(self, column: int) -> None:
        kept_scores, kept_ids = self._kept[column]
        chunks = self._pending[column]
        scores = np.concatenate([kept_scores] + [c[0] for c in chunks])
        ids = np.concatenate([kept_ids] + [c[1] for c in chunks])
        best = np.argsort(-scores, kind="stable")[: self.max_per_class]
        self._kept[column] = (scores[best], ids[best])
        self._pending[column] = []
        self._pending_sizes[column] = 0

    def ranked(self) -> dict[int, list[str]]:
        """``{class_id: [segment ids, best first]}`` for every class id."""
        for column in range(self.class_ids.size):
            self._prune(column)
        return {int(c): self._kept[i][1].tolist() for i, c in enumerate(self.class_ids)}

    def write(self, target: str | os.PathLike | IO[str]) -> None:
        """Write the CSV to ``target`` (a path: atomically)."""
        if isinstance(target, (str, os.PathLike)):
            with atomic_write(target, "w", newline="", encoding="utf-8") as handle:
                self.write(handle)
            return
        write_segment_rows(target, self.ranked().items())


def write_segment_rows(target: IO[str], rows: Iterable[tuple[int, Sequence[str]]]) -> None:
    """Write the ``Class,Segments`` header and one ``class,id id ...`` line per ``(class_id, segment ids)`` to an
    open text file (the caller makes it atomic: :func:`videopool.core.files.atomic_write`)."""
    target.write(",".join(SEGMENT_HEADER) + "\n")
    for class_id, ids in rows:
        target.write(f"{int(class_id)},{' '.join(ids)}\n")


def read_class_ids(path: str | os.PathLike) -> list[int]:
    """The class ids of a whitelist file: one integer per line in the first column (extra columns ignored), after
    an optional header line such as the starter code's ``Index`` (``segment_label_ids.csv``) or a vocabulary's
    ``Index,Name``. A line that is not an integer, or an id listed twice, is an error naming the line."""
    ids: list[int] = []
    seen: set[int] = set()
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            field = row[0].strip() if row else ""
            if not field:
                continue
            try:
                class_id = int(field)
            except ValueError:
                if line_number == 1 and not ids:
                    continue  # the header
                raise ValueError(f"{path}:{line_number}: class id {field!r} is not an integer") from None
            if class_id < 0 or class_id in seen:
                raise ValueError(f"{path}:{line_number}: class id {class_id} is "
                                 f"{'negative' if class_id < 0 else 'listed twice'}")
            seen.add(class_id)
            ids.append(class_id)
    if not ids:
        raise ValueError(f"{path}: no class id in this file (expected one integer per line, e.g. the starter "
                         "code's segment_label_ids.csv)")
    return ids


def read_segment_submission(path: str | os.PathLike) -> dict[int, list[str]]:
    """Parse a ``Class,Segments`` CSV into ``{class_id: [segment ids]}``.

    The header line is skipped (the starter code's evaluator chokes on it,
    google/youtube-8m issue #100) and trailing newlines / blanks are stripped.
    """
    ranked: dict[int, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or (line_number == 1 and line.split(",", 1)[0].strip() == SEGMENT_HEADER[0]):
                continue
            class_field, _, segments = line.partition(",")
            try:
                class_id = int(class_field)
            except ValueError:
                raise ValueError(f"{path}:{line_number}: class id {class_field!r} is not an integer") from None
            if class_id in ranked:
                raise ValueError(f"{path}:{line_number}: class {class_id} appears twice")
            ranked[class_id] = segments.split()
    return ranked

