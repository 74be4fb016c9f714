"""Atomic file writes: a reader never sees a half-written file at its final path.

Every file videopool writes goes through :func:`atomic_path` (or :func:`atomic_write`, which opens the temporary
file for the caller): the content goes to a temporary file in the same folder, is flushed to disk (``fsync``) and
then renamed over the final name, so a crash, a kill or a full disk leaves either the previous file or none, and
never a truncated file at the final path.

The temporary file is named ``.NAME.PID.XXXXXXXX.tmp`` (``PID`` is the writing process): a kill leaves it behind,
and the next write of ``NAME`` in that folder removes the leftovers of processes that are no longer alive on this
host (:func:`remove_temporaries`; the trainer removes every leftover of its run directory at start, under its lock).

A full disk (``ENOSPC``, or ``EDQUOT`` for a quota) while writing becomes a :class:`DiskFullError` naming the final
path; callers add what is still intact (the trainer: the previous checkpoint's step).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import tempfile
from typing import IO, Any, Iterator

from videopool.core.urls import atomic_upload, is_url

DISK_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
_MAX_PREFIX = 200  # a file name is at most 255 bytes on the common file systems


class DiskFullError(OSError):
    """The disk (or quota) filled up while writing ``path``; the file at ``path`` is unchanged."""

    def __init__(self, path: str, note: str = "") -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        self.path = path
        self.note = note

    def with_note(self, note: str) -> "DiskFullError":
        return DiskFullError(self.path, note)

    def __str__(self) -> str:
        return f"disk full while writing {self.path}" + (f"; {self.note}" if self.note else "")


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from or while handling, is a full disk. Libraries mask it: a
    failed ``torch.save`` raises a ``RuntimeError`` from its cleanup with the ``OSError`` as its context."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync_file: bool = True) -> Iterator[str]:
    """Yield a temporary path next to ``path``; when the block succeeds, fsync it and move it over ``path``.

    When the block (or the fsync, or the rename) fails, the temporary file is removed and ``path`` is untouched; a
    full disk is raised as :class:`DiskFullError`. ``fsync_file=False`` skips the file's fsync (not the folder's),
    for a temporary that names a file already on disk (a hard link).
    """
    path = os.fspath(path)
    if is_url(path):  # a remote --out: written locally, then uploaded and renamed (core/urls.py says where atomic)
        with atomic_upload(path) as local:
            yield local
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    remove_temporaries(folder, name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:_MAX_PREFIX]}.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as err:
        _raise_disk_full(err, path)
        raise
    os.close(fd)
    try:
        yield tmp
        if fsync_file and os.path.exists(tmp):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        _fsync_folder(folder)
    except Exception as err:
        _raise_disk_full(err, path)
        raise
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """:func:`atomic_path` with the temporary file opened (``open(tmp, mode, **open_args)``) and closed for you."""
    with atomic_path(path) as tmp:
        with _open_temporary(tmp, mode, os.fspath(path), **open_args) as handle:
            yield handle


def _open_temporary(tmp: str, mode: str, final_path: str, **open_args: Any) -> IO:
    # The one place a temporary file is opened for writing (tests put a full disk behind it).
    return open(tmp, mode, **open_args)


@contextlib.contextmanager
def deferred_write_errors(handle: IO[bytes]) -> Iterator[IO[bytes]]:
    """Wrap ``handle`` for a writer implemented in C++ (``torch.save``, ``torch.export.save``) that cannot survive a
    failing write: torch's zip writer then keeps an unfinished archive whose destructor throws later, during some
    garbage collection, and aborts the process. The wrapper keeps the first write error, accepts (and drops) the
    rest so that the writer finishes normally, and raises that error once the writer has returned."""
    wrapper = _DeferredErrorFile(handle)
    try:
        yield wrapper
    except Exception as err:
        if wrapper.error is not None:
            raise wrapper.error from err
        raise
    if wrapper.error is not None:
        raise wrapper.error


class _DeferredErrorFile(io.RawIOBase):
    def __init__(self, handle: IO[bytes]) -> None:
        super().__init__()
        self._handle = handle
        self.error: OSError | None = None
        self._position = self._end = handle.tell()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._handle.seekable()

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            try:
                self._handle.write(data)
            except OSError as err:
                self.error = err
        self._position += size
        self._end = max(self._end, self._position)
        return size

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._position = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._end}[whence] + offset
        if self.error is None:
            self._handle.seek(self._position)
        return self._position

    def flush(self) -> None:
        if self.error is None:
            try:
                self._handle.flush()
            except OSError as err:
                self.error = err

    def close(self) -> None:  # the handle belongs to the caller
        super().close()


def _raise_disk_full(err: Exception, path: str) -> None:
    """Raise the :class:`DiskFullError` of ``path`` when ``err`` comes from a full disk (a nested write's own
    DiskFullError when there is one, so it names its file); return otherwise."""
    if not is_disk_full(err):
        return
    inner: BaseException | None = err
    while inner is not None:
        if isinstance(inner, DiskFullError):
            if inner is err:
                return  # re-raised as it is
            raise inner from None
        inner = inner.__cause__ or inner.__context__
    raise DiskFullError(path) from err


def link_atomically(source: str, target: str) -> None:
    """Make ``target`` name the same file as ``source`` (a hard link, a copy where links fail), atomically."""
    with atomic_path(target, fsync_file=False) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)  # the file's data is on disk already: only the new name needs the folder's fsync
        except OSError as err:
            if is_disk_full(err):
                raise
            shutil.copyfile(source, tmp)
            with open(tmp, "rb") as copy:
                os.fsync(copy.fileno())


def remove_temporaries(folder: str, name: str | None = None, *, all_processes: bool = False) -> list[str]:
    """Remove the temporary files that :func:`atomic_path` left in ``folder`` (for the final name ``name``, or for
    every name) when the process that wrote them is dead. ``all_processes`` removes them whatever their writer: only
    for a folder whose writer holds a lock on it (the trainer's run directory). Returns the removed paths."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.match(entry)
        if match is None or (name is not None and match["name"] != name[:_MAX_PREFIX]):
            continue
        pid = int(match["pid"])
        if not all_processes and (pid == os.getpid() or process_alive(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, entry))
            removed.append(os.path.join(folder, entry))
        except OSError:
            pass  # gone already, or not ours to remove
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


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
