"""Errors raised for bad records, and the policy that decides whether they stop a run.

Every problem found while reading a shard is a :class:`RecordError` naming the file, the
record's index in the file and its byte offset, so a user can find the record with
``videopool inspect`` or a hex dump. Nothing is ever silently replaced by zeros: a bad
record either raises (``on_error="error"``, the default) or is skipped and counted
(``on_error="skip"``), with one warning summarising the skipped records at the end.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

# The kinds of problems; ``RecordError.kind`` is one of these.
KINDS = (
    "truncated",  # file ends inside a record
    "length_crc",  # CRC of the 8-byte length field does not match; framing is lost
    "payload_crc",  # CRC of the payload does not match
    "not_a_record",  # payload is not the expected protobuf message
    "missing_feature",  # a feature the schema requires is absent
    "feature_size",  # a feature has the wrong number of values / bytes
    "no_frames",  # a frame-level feature list has zero frames
    "label_range",  # a label id outside [0, num_classes)
    "frame_count",  # the feature lists of one video have different frame counts
    "io",  # the file could not be opened or read
)


class RecordError(Exception):
    """A bad record (or file) that cannot be read as a video.

    Attributes:
        path: the file.
        index: 0-based record index in the file (``None`` when the file itself is at fault).
        offset: byte offset of the record's start (its length field) in the file.
        kind: one of :data:`KINDS`.
        message: what is wrong, without the location.
    """

    def __init__(self, message: str, *, path: str | None = None, index: int | None = None,
                 offset: int | None = None, kind: str = "not_a_record") -> None:
        self.message = message
        self.path = path
        self.index = index
        self.offset = offset
        self.kind = kind
        super().__init__(str(self))

    def located(self, path: str | None, index: int | None, offset: int | None) -> "RecordError":
        """Return this error with its location filled in (the decoder does not know it)."""
        self.path = path if self.path is None else self.path
        self.index = index if self.index is None else self.index
        self.offset = offset if self.offset is None else self.offset
        self.args = (str(self),)
        return self

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.index is not None:
            where.append(f"record {self.index}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def __reduce__(self):  # keep the attributes when the error crosses a DataLoader worker boundary
        return (_rebuild_error, (self.message, self.path, self.index, self.offset, self.kind))


def _rebuild_error(message, path, index, offset, kind) -> RecordError:
    return RecordError(message, path=path, index=index, offset=offset, kind=kind)


@dataclass
class ErrorPolicy:
    """What to do with a :class:`RecordError`; keeps the count of skipped records.

    ``mode="error"`` re-raises; ``mode="skip"`` counts the error and keeps the first
    ``max_examples`` for the summary. One policy per reader (or per DataLoader worker);
    call :meth:`warn_summary` when the reader is exhausted.
    """

    mode: str = "error"
    max_examples: int = 5
    count: int = 0
    examples: list[RecordError] = field(default_factory=list)
    counts_by_kind: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("error", "skip"):
            raise ValueError(f"on_error must be 'error' or 'skip', got {self.mode!r}")

    def handle(self, error: RecordError) -> None:
        """Raise ``error`` (mode "error") or record it as skipped (mode "skip")."""
        if self.mode == "error":
            raise error
        self.count += 1
        self.counts_by_kind[error.kind] = self.counts_by_kind.get(error.kind, 0) + 1
        if len(self.examples) < self.max_examples:
            self.examples.append(error)

    def summary(self) -> str:
        lines = [f"skipped {self.count} bad record(s) "
                 f"({', '.join(f'{k}: {n}' for k, n in sorted(self.counts_by_kind.items()))})"]
        lines += [f"  {error}" for error in self.examples]
        if self.count > len(self.examples):
            lines.append(f"  ... and {self.count - len(self.examples)} more")
        return "\n".join(lines)

    def warn_summary(self, stacklevel: int = 3) -> None:
        """Emit one warning if any record was skipped, then reset the counters."""
        if self.count:
            warnings.warn(self.summary(), RuntimeWarning, stacklevel=stacklevel)
        self.count = 0
        self.examples = []
        self.counts_by_kind = {}
