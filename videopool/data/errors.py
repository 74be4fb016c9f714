"""Errors raised for bad records, and the policy that decides whether they stop a run.

Every problem found while reading a shard is a :class:`RecordError` naming the file, the
record's index in the file and its byte offset, so a user can find the record with
``videopool inspect`` or a hex dump. Nothing is ever silently replaced by zeros: a bad
record either raises (``on_error="error"``, the default) or is skipped and counted
(``on_error="skip"``), with one warning summarising the skipped records at the end.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field

# ``on_bad_record`` / ``on_error``: stop at the first bad record, or skip and count it (the CLI's --on-bad-record).
BAD_RECORD_POLICIES = ("error", "skip")
# ``max_bad_records``: with "skip", a run stops once more than this share of the records read were bad
# (a fraction < 1; always at least one bad record is tolerated), or more than this many (a count >= 1).
DEFAULT_MAX_BAD_RECORDS = 0.01
# The key under which dataset items and batches carry the bad records found before them (see make_loader).
BAD_RECORDS_KEY = "bad_records"

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
        if self.mode not in BAD_RECORD_POLICIES:
            raise ValueError(f"on_error must be 'error' or 'skip', got {self.mode!r}")

    def handle(self, error: RecordError) -> None:
        """Raise ``error`` (mode "error") or record it as skipped (mode "skip")."""
        if self.mode == "error":
            raise error
        self.count += 1
        self.counts_by_kind[error.kind] = self.counts_by_kind.get(error.kind, 0) + 1
        if len(self.examples) < self.max_examples:
            self.examples.append(error)

    def take(self) -> list[RecordError]:
        """The examples kept since the last call (the count is kept); for a policy that forwards its errors."""
        taken, self.examples = self.examples, []
        return taken

    def kinds(self) -> str:
        """``"label_range: 2, payload_crc: 1"``."""
        return ", ".join(f"{k}: {n}" for k, n in sorted(self.counts_by_kind.items()))

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


def forwarding_policy() -> ErrorPolicy:
    """A skip policy that keeps every error (for :meth:`ErrorPolicy.take`): what a dataset uses to hand its
    bad records to the loader, which applies the user's policy in the main process."""
    return ErrorPolicy("skip", max_examples=sys.maxsize)


def check_max_bad_records(limit: float) -> float:
    """``limit`` if it is a valid ``max_bad_records`` (a fraction in ``[0, 1)``, a whole number ``>= 1`` or
    ``inf``), else ``ValueError``."""
    valid = isinstance(limit, (int, float)) and not isinstance(limit, bool) and not math.isnan(limit) and (
        0 <= limit < 1 or limit == math.inf or (limit >= 1 and float(limit).is_integer()))
    if not valid:
        raise ValueError(f"max_bad_records must be a fraction of the records read in [0, 1) (e.g. 0.01 = 1%), a "
                         f"whole number of records >= 1, or inf (no limit); got {limit!r}")
    return limit


def bad_records_allowed(limit: float, records_read: int) -> float:
    """How many bad records ``max_bad_records=limit`` tolerates after ``records_read`` records (good + bad):
    ``limit`` itself when it is a count (>= 1); a fraction ``f`` tolerates ``floor(f * records_read)``, and at
    least one, so that one corrupt record early in a large data set does not stop the run; 0 tolerates none."""
    if limit >= 1 or limit == 0:
        return limit
    return max(1, math.floor(limit * records_read))


class BadRecordLimitError(ValueError):
    """More bad records than ``max_bad_records`` allows: the data, not a few records, is at fault.

    Attributes: ``count`` (bad records), ``read`` (records read, good and bad), ``limit``, ``examples``."""

    def __init__(self, what: str, policy: ErrorPolicy, read: int, limit: float, listed_in: str | None = None):
        self.count, self.read, self.limit, self.examples = policy.count, read, limit, list(policy.examples)
        allowed = bad_records_allowed(limit, read)
        where = f"; every one is listed in {listed_in}" if listed_in else ""
        first = f"; the first: {self.examples[0]}" if self.examples else ""
        super().__init__(
            f"{what}: {policy.count} of the {read} records read are bad ({policy.kinds()}), more than "
            f"--max-bad-records {limit:g} allows (at most {allowed:g} so far): stopped{where}{first}. Fix or "
            f"remove the damaged files (videopool inspect lists them), or raise --max-bad-records")
