"""Argument types that check a flag's value when the command line is parsed, so that a bad value is one line
naming the flag (``videopool predict: error: argument --top-k: must be a positive integer, got '0'``) and exit
status 2 before anything is loaded, instead of an error from deep inside torch at the first batch.

Nothing here imports torch: every parser is built at start-up, and ``videopool --help`` must stay fast."""

from __future__ import annotations

import argparse
import os

from videopool.core.urls import NO_LISTING, is_url, protocol


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes and counts: --batch-size, --top-k, --num-frames, --epochs, ...)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (--workers, --seed, --examples, video counts where 0 means none)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def output_directory(text: str) -> str:
    """A directory to write into, new or existing: not an existing file, and not inside one."""
    blocker = _file_in_the_way(text)
    if blocker == os.path.abspath(text):
        raise argparse.ArgumentTypeError(f"{text!r} is an existing file, not a directory; give a directory")
    if blocker:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be created: {blocker!r} is a file, not a directory")
    return text


def output_file(text: str) -> str:
    """A file to write (replaced if it exists): not an existing directory, and not inside a file."""
    if is_url(text):  # uploaded when written (videopool.core.urls.atomic_upload); HTTP cannot take it
        if protocol(text) in NO_LISTING:
            raise argparse.ArgumentTypeError(f"{text!r}: cannot write over HTTP; give a local path or an "
                                             "object-store URL (gs://, s3://)")
        return text
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name, e.g. "
                                         f"{os.path.join(text, 'out')!r}")
    blocker = _file_in_the_way(os.path.dirname(os.path.abspath(text)))
    if blocker:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written: {blocker!r} is a file, not a directory")
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def _file_in_the_way(path: str) -> str | None:
    """The existing non-directory at ``path`` or at its nearest existing ancestor, else None."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return None if os.path.isdir(path) else path
