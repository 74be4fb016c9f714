"""``videopool models``: the named configurations with their pooling, fusion and parameter count.

Parameter counts are computed on the meta device (no memory is allocated), so even the
300M-parameter configurations list instantly. ``--show NAME`` prints one configuration's
full YAML (model, recipe, provenance). ``--small`` lists the ``*_small`` twins at the demo data's number of
classes: each has at most :data:`SMALL_MAX_PARAMETERS` (a test checks every one).
"""

from __future__ import annotations

import argparse
import json
import sys

from videopool.cli.arguments import positive_int

# What "small" promises: a *_small twin has at most this many parameters at the demo's classes (CPU runs, tests).
SMALL_MAX_PARAMETERS = 10_000_000


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the named model configurations", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pattern", help="shell-style filter on the name, e.g. '*netvlad_256*' (no wildcard: names containing it)")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="count parameters for this many classes (default: each configuration's own, 3862 for "
                        "YouTube-8M; with --small: the demo data's 256)")
    p.add_argument("--small", action="store_true",
                   help=f"list only the *_small CPU/test twins (each at most {SMALL_MAX_PARAMETERS:,} parameters "
                        "at the demo's classes)")
    p.add_argument("--no-small", action="store_true", help="hide the *_small CPU/test variants")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--show", metavar="NAME", help="print the full YAML of one configuration")
    p.set_defaults(func=run)


def describe(name: str, num_classes: int | None = None) -> dict:
    """One row of the listing: name, pooling, fusion, head, parameter count, provenance."""
    from videopool.models.registry import SMALL_SUFFIX, count_parameters, create_model, get_named_config

    entry = get_named_config(name)
    config = entry.model
    model = create_model(config, num_classes=num_classes, device="meta")
    pooling = config.pooling
    pooling_text = pooling.type + (f" K={pooling.cluster_size}" if pooling.cluster_size else "")
    if pooling.hidden_size:
        pooling_text += f" {pooling.num_layers or 1}x{pooling.hidden_size}"
    fusion_text = "early concat" if config.fusion.stage == "early" else config.fusion.type
    if len(config.modalities) == 1:
        fusion_text = f"{next(iter(config.modalities))} only"
    head = config.classifier.type + ("+CG" if config.classifier.prob_gating else "")
    if config.gating.type != "none":
        head = f"{config.gating.type}, {head}"
    return {
        "name": name,
        "pooling": pooling_text,
        "fusion": fusion_text,
        "head": head,
        "num_classes": model.output_size,
        "parameters": count_parameters(model),
        "small": name.endswith(SMALL_SUFFIX),
        "description": entry.description,
        "paper": entry.paper,
        "reported": entry.reported,
    }


def run(args) -> int:
    import yaml

    from videopool.models.registry import get_named_config, list_models

    if args.show:  # an unknown name is a UserError (videopool.cli.main prints it)
        print(yaml.safe_dump(get_named_config(args.show).to_dict(), sort_keys=False, width=110), end="")
        return 0
    names = list_models(args.pattern)
    num_classes = args.num_classes
    if args.small and args.no_small:
        from videopool.core.errors import UserError

        raise UserError("--small lists only the *_small twins and --no-small hides them: give one of them")
    if args.no_small:
        names = [name for name in names if not name.endswith("_small")]
    if args.small:
        from videopool.demo.world import DemoConfig

        names = [name for name in names if name.endswith("_small")]
        num_classes = num_classes or DemoConfig().num_classes
    if not names:
        print(f"videopool models: no configuration matches {args.pattern!r}", file=sys.stderr)
        return 1
    rows = [describe(name, num_classes) for name in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = [
        ("name", "name"), ("pooling", "pooling"), ("fusion", "fusion"), ("head", "head"), ("params", "parameters")
    ]
    table = [[f"{row[key]:,}" if key == "parameters" else str(row[key]) for _, key in columns] for row in rows]
    widths = [max(len(title), *(len(line[i]) for line in table)) for i, (title, _) in enumerate(columns)]
    print("  ".join(title.ljust(width) for (title, _), width in zip(columns, widths)) + "  description")
    for row, line in zip(rows, table):
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths)] + [line[-1].rjust(widths[-1])]
        print("  ".join(cells) + "  " + row["description"])
    return 0
