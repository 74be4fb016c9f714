"""The ``videopool`` command line. Each sub-command lives in its own module
under :mod:`videopool.cli` and exposes ``add_parser(subparsers)``, which
registers the command and sets ``func`` (called with the parsed args)."""

from __future__ import annotations

import argparse
import importlib
import sys

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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a full disk in any command: one line, no traceback (docs/reliability.md, 1)
        from videopool.core.files import DiskFullError, is_disk_full

        if not is_disk_full(err):
            raise
        message = err if isinstance(err, DiskFullError) else DiskFullError(getattr(err, "filename", None) or "a file")
        print(f"videopool {args.command}: error: {message}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
