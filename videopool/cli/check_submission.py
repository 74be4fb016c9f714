"""``videopool check-submission``: validate a 2019 segment submission (``Class,Segments`` CSV) before upload.

Prints one line per problem (``FILE:LINE: error|warning: ...``; at most 10 of each kind, then a count) and a
summary. Exit status: 0 valid (warnings allowed), 1 invalid, 2 a missing file or a bad flag. What is checked:
videopool.inference.submission_check and docs/segments.md.
"""

from __future__ import annotations

import argparse

from videopool.cli.arguments import positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("check-submission", help="validate a segment submission CSV", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="the submission CSV")
    p.add_argument("--classes", metavar="CSV", help="whitelist of class ids, one per line (header optional)")
    p.add_argument("--top-n", type=positive_int, default=100_000, help="segments allowed per class (Kaggle: 100000)")
    p.add_argument("--max-lines", type=positive_int, default=10, metavar="N",
                   help="problems printed of each kind (the rest are counted)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from videopool.core.errors import UserError
    from videopool.cli.localize import class_whitelist
    from videopool.inference.submission_check import check_submission

    if not os.path.isfile(args.file):
        raise UserError(f"FILE {args.file!r} " + ("is a directory; give the submission CSV" if os.path.isdir(args.file)
                                                  else "does not exist"))
    class_ids = class_whitelist(args.classes) if args.classes else None
    report = check_submission(args.file, class_ids, top_n=args.top_n)
    for line in report.lines(per_kind=args.max_lines):
        print(line)
    errors, warnings = len(report.errors), len(report.problems) - len(report.errors)
    verdict = "invalid" if errors else "valid"
    print(f"{args.file}: {verdict}: {report.num_classes} classes, {report.num_entries:,} segment ids, "
          f"{errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0
