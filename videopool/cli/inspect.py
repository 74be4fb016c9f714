"""``videopool inspect PATH...``: summarise TFRecord shards (counts, features, frames, labels, bad records)."""

from __future__ import annotations

import argparse
import json
import sys

from videopool.cli.arguments import non_negative_int, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect", help="summarise YouTube-8M TFRecord shards",
        description="Read every record of the given shards and print a summary: files, records, videos, "
                    "bytes, level, features, frames per video, labels, segments and bad records. "
                    "Exits with status 1 when bad records were found (they are listed, not fatal), 2 when a "
                    "path matches no file or a flag is wrong.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="TFRecord files, directories or glob patterns")
    parser.add_argument("--vocabulary", metavar="CSV", help="vocabulary.csv to name the top labels")
    parser.add_argument("--num-classes", type=positive_int,
                        help="flag label ids outside [0, N) as bad records")
    parser.add_argument("--top", type=non_negative_int, default=10, help="how many of the most frequent labels to list")
    parser.add_argument("--on-error", choices=("skip", "error"), default="skip",
                        help="skip (count and list) bad records, or stop at the first one (default: skip)")
    parser.add_argument("--no-verify-crc", action="store_true", help="do not check the TFRecord CRCs")
    parser.add_argument("--max-examples", type=non_negative_int, default=20, help="bad records to list by name")
    parser.add_argument("--layout", metavar="LAYOUT",
                        help="read the records in this layout (yt8m_frame, yt8m_video, audioset, mediapipe or a "
                             "layout YAML file) instead of detecting it")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from videopool.data.errors import RecordError
    from videopool.data.inspect import format_report, inspect_shards
    from videopool.data.layouts import resolve_layout
    from videopool.data.vocabulary import read_vocabulary

    vocabulary = read_vocabulary(args.vocabulary) if args.vocabulary else None
    try:
        report = inspect_shards(args.paths, verify_crc=not args.no_verify_crc, on_error=args.on_error,
                                num_classes=args.num_classes, max_examples=args.max_examples,
                                layout=resolve_layout(args.layout))
    except RecordError as error:  # --on-error error: the first bad record is the result, as bad records are
        print(f"videopool inspect: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(vocabulary, args.top), indent=2))
    else:
        print(format_report(report, vocabulary, args.top))
    return 1 if report.bad_records else 0
