"""Atomic file writes: a reader never sees a half-written file at its final path.

Every file videopool writes goes through :func:`atomic_path`: the content goes to a temporary file in the same
folder, is flushed to disk (``fsync``) and then renamed over the final name, so a crash or a full disk leaves
either the previous file or none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; when the block succeeds, fsync it and move it over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(folder)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def link_atomically(source: str, target: str) -> None:
    """Make ``target`` name the same file as ``source`` (a hard link, a copy where links fail), atomically."""
    with atomic_path(target) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _fsync_folder(folder: str) -> None:
    # The rename itself is durable only once the folder's entry is on disk; not every platform allows this.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
