"""``RUN/.lock``: one training process per run directory.

The lock file holds ``PID HOST`` of the process training into ``RUN``. It is held with ``flock`` for the whole
run, so the kernel releases it the moment the holder dies, even by ``SIGKILL``; a second process finds the lock
taken and refuses to start with :class:`RunLockedError` naming the holder. A lock file whose ``flock`` is free
was left by a dead process: it is taken over with a warning naming that process. On file systems without
``flock`` the file is created with ``O_EXCL`` and a leftover counts as stale when its pid is not alive on this
host (a lock from another host is then never taken over: delete it by hand once that run is gone).
"""

from __future__ import annotations

import errno
import os
import socket
import warnings

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from videopool.core.files import process_alive

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another live process is training into the same run directory."""


class RunLock:
    """The lock of one run directory; :meth:`acquire` takes it (or raises), :meth:`release` gives it back."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.fd: int | None = None
        self.taken_over: str | None = None  # "PID HOST" of the dead holder whose lock was taken over

    @staticmethod
    def owner() -> str:
        return f"{os.getpid()} {socket.gethostname()}"

    def acquire(self) -> "RunLock":
        os.makedirs(self.run_dir, exist_ok=True)
        for _ in range(100):  # retried only while other processes race for a stale lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = self._flock(fd)
            except OSError:
                os.close(fd)
                raise
            if locked is None:  # no flock here: O_EXCL and pid checks
                os.close(fd)
                return self._acquire_exclusive()
            if not locked:
                holder = _read(fd)
                os.close(fd)
                raise self._locked(holder)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder released (and removed) the file between our open and our flock
                os.close(fd)
                continue
            previous = _read(fd)
            self.fd = fd
            self._write(previous)
            return self
        raise RunLockedError(f"could not take the lock {self.path}: other processes keep taking it")

    def _flock(self, fd: int) -> bool | None:
        if fcntl is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise
        return True

    def _acquire_exclusive(self) -> "RunLock":
        for _ in range(100):
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                with open(self.path) as f:
                    holder = f.read().strip()
                if _alive(holder):
                    raise self._locked(holder) from None
                self.taken_over = holder
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            self._write(self.taken_over or "")
            return self
        raise RunLockedError(f"could not take the lock {self.path}: other processes keep taking it")

    def _write(self, previous: str) -> None:
        if previous and previous != self.owner():
            self.taken_over = previous
            warnings.warn(f"{self.path}: taking over the lock of process {_describe(previous)}, which is no longer "
                          "running (killed?); this run continues from its newest complete checkpoint", stacklevel=3)
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, (self.owner() + "\n").encode())
        os.fsync(self.fd)

    def _locked(self, holder: str) -> RunLockedError:
        return RunLockedError(
            f"{self.run_dir!r} is in use: process {_describe(holder)} is training into it (lock file {self.path}); "
            "wait for it to finish or choose another --out")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiting process then retries on a fresh file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode(errors="replace").strip()


def _describe(holder: str) -> str:
    pid, _, host = holder.partition(" ")
    return f"{pid} on host {host}" if host else (pid or "<unknown>")


def _alive(holder: str) -> bool:
    pid, _, host = holder.partition(" ")
    if host and host != socket.gethostname():
        return True  # cannot tell from here: treat as alive
    try:
        return int(pid) != os.getpid() and process_alive(int(pid))
    except ValueError:
        return False  # unreadable: a crash while writing it
