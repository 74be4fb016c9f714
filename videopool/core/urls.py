"""URLs as file names: which paths are fsspec URLs, their filesystem, and atomic uploads of written files.

The lowest floor, so that :mod:`videopool.core.files` can publish a finished file at a remote ``--out`` and the
data floor (:mod:`videopool.data.remote`) can read shards behind URLs with the same rules. fsspec is imported only
when a URL is met: a local path never pays for it, and a missing fsspec or backend is a :class:`UserError` that
names the package to install.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from typing import Iterator

from videopool.core.errors import UserError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
NO_LISTING = ("http", "https")  # no file listing (no glob, no directory) and no writes
_BACKENDS = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "s3a": "s3fs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs", "hf": "huggingface_hub", "sftp": "paramiko", "ssh": "paramiko"}


def protocol(path: str | os.PathLike) -> str | None:
    """The URL scheme of ``path`` (``"gs"``, ``"memory"``), or ``None`` for a plain local path."""
    match = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    return match.group(1).lower() if match else None


def local_path(path: str | os.PathLike) -> str:
    """``path`` as a local path: ``file:///x`` becomes ``/x`` (so it keeps the local fast path)."""
    path = os.fspath(path)
    return path[len("file://"):] if protocol(path) == "file" else path


def is_url(path: str | os.PathLike) -> bool:
    """True when ``path`` must be read through fsspec (a URL other than ``file://``)."""
    scheme = protocol(path)
    return scheme is not None and scheme != "file"


def filesystem(url: str):
    """``(fsspec filesystem, path inside it)`` for ``url``; a missing library is a :class:`UserError` naming it."""
    scheme = protocol(url)
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise UserError(f"{url!r} is a {scheme}:// URL, which needs fsspec: pip install 'videopool[remote]'") from None
    try:
        return url_to_fs(url)
    except ImportError as err:
        package = _BACKENDS.get(scheme, "the fsspec backend for it")
        raise UserError(f"{url!r} needs {package} to read {scheme}:// URLs ({err}): pip install {package}"
                        if scheme in _BACKENDS else
                        f"{url!r}: reading {scheme}:// URLs needs a library fsspec names: {err}") from None
    except ValueError as err:
        raise UserError(f"{url!r}: {err}; fsspec reads gs://, s3://, https://, memory://, ... "
                        "(pip install 'videopool[remote]' and the backend, e.g. gcsfs)") from None


@contextlib.contextmanager
def atomic_upload(url: str) -> Iterator[str]:
    """Write to a local temporary file, then publish it at ``url`` so a reader never sees part of it.

    Yields the local path to write. On success the file is uploaded under a temporary name next to ``url``
    and renamed (``fs.mv``) onto it: on object stores (gs://, s3://, az://) an upload becomes visible only
    once complete, so either step is atomic for readers; on ``memory://`` and ``file://`` the rename is
    atomic. Backends without ``mv`` (HTTP) are refused before anything is written.
    """
    fs, path = filesystem(url)
    if protocol(url) in NO_LISTING:
        raise UserError(f"{url!r}: cannot write over HTTP; give a local --out or an object-store URL (gs://, s3://)")
    import tempfile

    folder = tempfile.mkdtemp(prefix="videopool-upload-")
    local = os.path.join(folder, os.path.basename(path.rstrip("/")) or "upload")
    try:
        yield local
        staged = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        fs.put_file(local, staged)
        try:
            fs.mv(staged, path)
        except Exception:
            with contextlib.suppress(Exception):
                fs.rm(staged)
            raise
    finally:
        with contextlib.suppress(OSError):
            if os.path.exists(local):
                os.remove(local)
            os.rmdir(folder)
