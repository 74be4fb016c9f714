"""The list of bad records a training run skipped: ``RUN/bad_records.jsonl`` (docs/reliability.md, section 2).

One JSON object per bad record, the first time the run meets it: ``{"data": "train" | "val", "path", "index",
"offset", "kind", "message", "epoch", "step", "time"}``. A record met again (every epoch, every validation, the
batches a resumed run replays to reach its data position) is not listed twice: the log reads back what an
earlier, interrupted process of the same run listed. Under torchrun each rank lists the records of its own
shard (rank r > 0 in ``bad_records.rank{r}.jsonl``). :meth:`BadRecordLog.summary` is the end-of-run count.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from videopool.data.errors import RecordError


def bad_records_path(run_dir: str, rank: int = 0) -> str:
    return os.path.join(run_dir, "bad_records.jsonl" if rank == 0 else f"bad_records.rank{rank}.jsonl")


class BadRecordLog:
    """Appends each newly met bad record to the run's list; counts the distinct ones per data set and kind."""

    def __init__(self, run_dir: str, rank: int = 0, fresh: bool = False) -> None:
        """``fresh``: a run starting at step 0, whose list starts empty (a stale one is removed)."""
        self.path = bad_records_path(run_dir, rank)
        self.entries: dict[tuple[str, str, int | None], dict[str, Any]] = {}
        if fresh and os.path.isfile(self.path):
            os.unlink(self.path)
        if os.path.isfile(self.path):  # a resumed run: what the interrupted process already listed
            with open(self.path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:  # a line cut short by a kill
                        continue
                    self.entries[(entry["data"], entry["path"], entry["index"])] = entry

    def add(self, data: str, error: RecordError, epoch: int, step: int) -> bool:
        """List ``error`` (met in the ``data`` set, "train" or "val") unless already listed; True if new."""
        key = (data, str(error.path), error.index)
        if key in self.entries:
            return False
        entry = {"data": data, "path": str(error.path), "index": error.index, "offset": error.offset,
                 "kind": error.kind, "message": error.message, "epoch": epoch, "step": step,
                 "time": round(time.time(), 3)}
        self.entries[key] = entry
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a") as f:  # one line per write: a kill loses at most the line being written
            f.write(json.dumps(entry) + "\n")
        return True

    def summary(self) -> dict[str, Any]:
        """``{"count", "train", "val", "by_kind": {kind: n}, "path"}`` over the whole run."""
        by_kind: dict[str, int] = {}
        counts = {"train": 0, "val": 0}
        for entry in self.entries.values():
            by_kind[entry["kind"]] = by_kind.get(entry["kind"], 0) + 1
            counts[entry["data"]] = counts.get(entry["data"], 0) + 1
        return {"count": len(self.entries), **counts, "by_kind": dict(sorted(by_kind.items())),
                "path": self.path if self.entries else None}
