"""The ``videopool`` command line. Each sub-command lives in its own module
under :mod:`videopool.cli` and exposes ``add_parser(subparsers)``, which
registers the command and sets ``func`` (called with the parsed args).

Exit statuses: 0 success; 2 a user's mistake, printed as one line ``videopool <command>: error: <message>``
without a traceback (:func:`user_error_message` says which exceptions are mistakes: this is the one place that
decides it, the commands do not catch them); 1 a command's own failure (bad records found by ``inspect``, a
diverged or disk-full training run); 130 interrupted; 141 stdout closed early (``videopool inspect ... | head``:
quiet, as a Unix tool ended by SIGPIPE). Any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import TracebackType

# Module names under videopool.cli, in the order they appear in --help.
COMMANDS = [
    "demo",
    "make_demo_data",
    "inspect",
    "train",
    "evaluate",
    "predict",
    "export",
    "models",
    "average_checkpoints",
    "ensemble",
    "import_tf",
    "train_segments",
    "evaluate_segments",
    "localize",
    "check_submission",
]


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line naming the flag and its bad value (argparse prints the whole
    usage first, which can run to a dozen lines). The sub-command parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="videopool",
        description="Learnable-pooling video classification on YouTube-8M-format features.",
    )
    from videopool import __version__

    parser.add_argument("--version", action="version", version=f"videopool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"videopool.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"videopool.cli.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    parser.command_parsers = sub.choices  # name -> its parser, for errors found after parsing (see main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # what parse_args does, but named after the sub-command the arguments were given to
        parser.command_parsers.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_is_closed():
            raise  # some other pipe (a data-loading worker's): a failure, with its traceback
        _discard_stdout()
        return 141
    except Exception as err:
        message = user_error_message(err)
        if message is not None:
            print(f"videopool {args.command}: error: {message}", file=sys.stderr)
            return 2
        # a full disk in any command: one line, no traceback (docs/reliability.md, 1)
        from videopool.core.files import DiskFullError, is_disk_full

        if not is_disk_full(err):
            raise
        message = err if isinstance(err, DiskFullError) else DiskFullError(getattr(err, "filename", None) or "a file")
        print(f"videopool {args.command}: error: {message}", file=sys.stderr)
        return 1
    return int(result or 0)


# Errors about a path the user gave that the operating system reports (a run directory that does not exist, an
# output file in a directory that is a file, ...): the message names the path.
_PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def user_error_message(err: BaseException) -> str | None:
    """The one-line message of ``err`` if it is a user's mistake, else None (a bug: it keeps its traceback).

    A mistake is a :class:`~videopool.core.errors.UserError` (``ConfigError`` is one), a
    :class:`~videopool.data.RecordError` (a bad record in the data given), an operating-system error about a path
    (:data:`_PATH_ERRORS`), or a ``ValueError`` that videopool's own code raised with a message for the user
    (its ``raise`` statement is in a ``videopool`` module). A ``ValueError`` raised inside torch, numpy or the
    standard library is a bug: an input that reached them unchecked.
    """
    from videopool.core.errors import UserError

    data_errors = sys.modules.get("videopool.data.errors")  # not loaded: err is no RecordError (and no torch import)
    record_error = (data_errors.RecordError,) if data_errors is not None else ()
    if isinstance(err, (UserError, *record_error, *_PATH_ERRORS)) or (
        isinstance(err, ValueError) and _raised_in_videopool(err.__traceback__)
    ):
        return one_line(err)
    return None


def one_line(err: BaseException) -> str:
    """``str(err)`` on one line: a message of several lines is joined with "; " (after a colon, with a space)."""
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)  # KeyError adds quotes
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    joined = ""
    for line in lines:
        joined += line if not joined else (" " if joined.endswith(":") else "; ") + line
    return joined or type(err).__name__


def _raised_in_videopool(traceback: TracebackType | None) -> bool:
    last = None
    while traceback is not None:
        last, traceback = traceback, traceback.tb_next
    module = last.tb_frame.f_globals.get("__name__", "") if last is not None else ""
    return module == "videopool" or module.startswith("videopool.")


def _stdout_is_closed() -> bool:
    """Whether stdout's reader has gone (the write end of a pipe whose read end is closed)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        import select

        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered does not fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
