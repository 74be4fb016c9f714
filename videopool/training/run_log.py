"""Run logs written by rank 0: ``metrics.jsonl`` (one JSON object per event) and TensorBoard scalars.

``metrics.jsonl`` is the record; TensorBoard's ``RUN/tb`` is rebuilt from it. When a run starts (fresh, or
resumed at step N), the records that the interrupted process wrote after the state it resumes from are dropped
(every record after step N, a half-written last line, and the validation record of step N when that validation
is to be redone), ``metrics.jsonl`` is rewritten atomically and the TensorBoard event files are replaced by one
that replays the kept records. So after any number of kills and resumes every step is logged once, in
``metrics.jsonl`` and in TensorBoard alike.
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Any

from videopool.core.files import DiskFullError, atomic_write, is_disk_full

_NOT_SCALARS = ("kind", "step", "time")


class RunLogger:
    """Append scalars to ``RUN/metrics.jsonl`` and ``RUN/tb`` (TensorBoard); a no-op when ``enabled`` is False.

    ``start_step``: the step the run (re)starts from; records after it are dropped, and so are the ``val`` records
    of ``start_step`` itself unless ``validated`` (the resumed state had finished that validation).
    """

    def __init__(self, run_dir: str, enabled: bool = True, tensorboard: bool = True, start_step: int = 0,
                 validated: bool = True) -> None:
        self.enabled = enabled
        self.writer = None
        self.file = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        self.path = path = os.path.join(run_dir, "metrics.jsonl")
        self.tb_dir = os.path.join(run_dir, "tb")
        kept = _kept_records(path, start_step, validated)
        self.file = open(path, "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but keep training if it is broken
                SummaryWriter = None
            if SummaryWriter is not None:
                for old in glob.glob(os.path.join(self.tb_dir, "events.out.tfevents.*")):
                    os.unlink(old)
                self.writer = SummaryWriter(self.tb_dir)
                for record in kept:
                    self._add_scalars(record["kind"], record["step"],
                                      {k: v for k, v in record.items() if k not in _NOT_SCALARS}, record.get("time"))

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        scalars = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **scalars}
        try:
            self.file.write(json.dumps(record) + "\n")
        except OSError as err:  # a line cut short by a full disk is dropped by the next start
            raise DiskFullError(self.path) if is_disk_full(err) else err from err
        self._add_scalars(kind, step, scalars)

    def _add_scalars(self, kind: str, step: int, scalars: dict[str, Any], walltime: float | None = None) -> None:
        if self.writer is not None:
            try:
                for key, value in scalars.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        self.writer.add_scalar(f"{kind}/{key}", value, step, walltime=walltime)
            except OSError as err:  # TensorBoard is rebuilt from metrics.jsonl at the next start
                raise DiskFullError(self.tb_dir) if is_disk_full(err) else err from err

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _kept_records(path: str, start_step: int, validated: bool) -> list[dict[str, Any]]:
    """The records of ``path`` that describe work up to the state the run starts from; rewrites ``path`` (atomically)
    when others have to go."""
    if not os.path.isfile(path):
        return []
    kept, dropped = [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError):
                dropped = dropped or bool(line.strip())  # a line cut short by a kill or a full disk
                continue
            if not line.endswith("\n"):  # cut short after a complete object: still the killed write
                dropped = True
                continue
            if step < start_step or (step == start_step and (validated or record.get("kind") != "val")):
                kept.append(record)
            else:
                dropped = True
    if dropped:
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(record) + "\n" for record in kept)
    return kept


def read_metrics(run_dir: str) -> list[dict[str, Any]]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
