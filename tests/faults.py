"""Faults for the reliability tests (docs/reliability.md, section 1): a disk that fills up, and real kills.

* :func:`full_disk` makes the temporary file of chosen atomic writes (``videopool.core.files._open_temporary``,
  through which every checkpoint, resume state, CSV, plot, export and config file is written) fail with
  ``ENOSPC`` after a number of bytes: the bytes before it really land in the temporary file, as on a disk that
  fills up mid-file.
* :func:`run_in_child` runs a function in a forked child process (torch already imported: milliseconds, not
  seconds) that the function may ``SIGKILL`` at a chosen point: no ``finally`` block, no flush, no cleanup runs,
  exactly as when a machine is preempted.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import traceback
from typing import Any, Callable

from videopool.core import files


class FullDiskFile:
    """A file object that accepts ``room`` more bytes (or characters) and then fails with ENOSPC."""

    def __init__(self, handle, room: int) -> None:
        self._handle = handle
        self._room = room

    def write(self, data):
        if len(data) > self._room:
            self._handle.write(data[: self._room])
            self._handle.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._handle.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def full_disk(monkeypatch, pattern: str, after_bytes: int = 0, nth: int = 1) -> list[str]:
    """From the ``nth`` atomic write whose final path matches the glob ``pattern`` on, the disk is full once
    ``after_bytes`` bytes of the file are written. Returns the list of final paths that hit the full disk."""
    original = files._open_temporary
    hits: list[str] = []
    seen = [0]

    def open_temporary(tmp, mode, final_path, **open_args):
        handle = original(tmp, mode, final_path, **open_args)
        if fnmatch.fnmatch(os.path.abspath(final_path), pattern):
            seen[0] += 1
            if seen[0] >= nth:
                hits.append(final_path)
                return FullDiskFile(handle, after_bytes)
        return handle

    monkeypatch.setattr(files, "_open_temporary", open_temporary)
    return hits


def temporaries(*folders) -> list[str]:
    """Leftover temporary files of atomic writes in ``folders``."""
    found = []
    for folder in folders:
        if os.path.isdir(folder):
            found += [os.path.join(folder, n) for n in os.listdir(folder) if files._TEMPORARY.match(n)]
    return found


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run_in_child(function: Callable[[], Any], error_file: str) -> str:
    """Run ``function`` in a forked child. Returns ``"killed"`` (SIGKILL), ``"ok"`` (returned) or ``"error"``
    (raised: the traceback is in ``error_file``)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller (pytest)
        code = 0
        try:
            function()
        except BaseException:
            with open(error_file, "a") as f:
                f.write(traceback.format_exc())
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return "ok" if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else "error"
