"""``videopool ensemble``: greedy ensemble selection on validation data, and the selection folded into one model.

    videopool ensemble select runs/a runs/b runs/c --data 'd/validate-*.tfrecord' --out ens [--max-models 7]
    videopool ensemble build ens/selection.json --out runs/ensemble
    videopool evaluate runs/ensemble --data 'd/validate-*.tfrecord'      # predict and export alike

``select`` scores every candidate on ``--data`` once (full float16 probabilities, cached under ``--cache``,
default ``OUT/cache``; a second call with the same checkpoints, data and frame settings reads them), then starts
from the best single model and keeps adding the candidate that raises the GAP of the averaged probabilities most,
a model already chosen included, until none raises it or ``--max-models`` picks are made (Miech et al. 2017, §8).
It prints the GAP curve and writes ``OUT/selection.json`` (the picks, the curve, the members with their weights)
and ``OUT/gap_curve.png``. Weights (``--weights``): ``counts`` (default) — each model's weight is the number of
times it was picked, which is the average the curve measured; ``equal`` — each model at most once, equal weights.

``build`` writes ``RUN_DIR/best.safetensors``: one checkpoint of an ensemble model whose forward averages its
members' probabilities with those weights, each member on its own modalities. ``--member-frames all`` (default):
every member sees every frame the loader gives, so the ensemble scores a video as the weighted mean of what
``videopool evaluate RUN`` gives each member; ``trained``: each member sees the frames per video its run trained
with, as a deterministic uniform subsample of each video (on the demo data this scored lower, see
docs/results.md). Its arguments are a ``selection.json`` or run directories / checkpoints (each one weight 1; a
run given twice weighs 2).
"""

from __future__ import annotations

import argparse
import json
import os

from videopool.cli.arguments import output_directory, positive_int
from videopool.cli.options import add_inference_options

SELECTION_FILE = "selection.json"
SELECTION_FORMAT = "videopool-ensemble-selection-1"
MEMBER_FRAMES = ("all", "trained")  # videopool.inference.ensemble_select.MEMBER_FRAMES, without importing torch


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("ensemble", help="greedy ensemble selection; fold an ensemble into one model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="ensemble_action", metavar="ACTION", required=True)
    s = actions.add_parser("select", help="greedy selection of runs on validation data (GAP curve)",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("runs", nargs="+", metavar="RUN", help="candidate run directories or .safetensors checkpoints")
    s.add_argument("--data", nargs="+", required=True, metavar="GLOB", help="labelled validation TFRecord files")
    s.add_argument("--out", required=True, metavar="DIR", type=output_directory,
                   help="writes selection.json and gap_curve.png here")
    s.add_argument("--max-models", type=positive_int, default=None, metavar="M",
                   help="stop after M picks (default: when no candidate raises the GAP)")
    s.add_argument("--weights", choices=("counts", "equal"), default="counts",
                   help="counts (default): selection with replacement, weight = times picked; equal: each model "
                        "at most once")
    s.add_argument("--member-frames", choices=MEMBER_FRAMES, default="all",
                   help="frames each candidate sees per video: every frame the loader gives (default) or its "
                        "run's training count (a uniform subsample)")
    s.add_argument("--cache", metavar="DIR", type=output_directory, default=None,
                   help="prediction cache folder (default: OUT/cache)")
    s.add_argument("--top-k", type=positive_int, default=20, help="GAP@k (default 20, the challenge's)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_inference_options(s)
    s.set_defaults(func=run_select)
    b = actions.add_parser("build", help="fold a selection (or runs) into one checkpoint",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("sources", nargs="+", metavar="SELECTION_OR_RUN",
                   help="a selection.json written by `ensemble select`, or run directories / checkpoints")
    b.add_argument("--out", required=True, metavar="RUN_DIR", type=output_directory,
                   help="writes RUN_DIR/best.safetensors")
    b.add_argument("--member-frames", choices=MEMBER_FRAMES, default=None,
                   help="frames each member sees (default: the selection's setting, else all)")
    b.set_defaults(func=run_build)


def run_select(args) -> int:
    from videopool.cli.options import inference_loader, report_skipped
    from videopool.core.precision import resolve_device, resolve_precision
    from videopool.inference.ensemble_select import (FrameSettings, bytes_per_thousand_videos,
                                                     candidate_predictions, format_curve, greedy_select, plot_curve)

    device = resolve_device(args.device)
    # every inference option that changes the scores is part of the cache key
    options = tuple((name, getattr(args, name)) for name in ("test_time_samples", "layout", "on_bad_record",
                                                               "max_bad_records") if hasattr(args, name))
    settings = FrameSettings(args.sampling, args.num_frames, args.seed, resolve_precision(args.precision, device),
                             args.member_frames, options)
    cache = args.cache or os.path.join(args.out, "cache")

    def loader_factory(info):
        loader, num_frames = inference_loader(args, info, device)
        loaders.append(loader)
        return loader, num_frames

    loaders = []
    found = candidate_predictions(args.runs, args.data, cache, settings, loader_factory=loader_factory,
                                  device=device, compile=args.compile, progress=not args.no_progress)
    for loader in loaders[:1]:  # every candidate read the same records
        report_skipped("ensemble select", loader)
    computed = sum(item.computed for item in found)
    labels = found[0].labels
    selection = greedy_select([item.probabilities for item in found], labels, max_models=args.max_models,
                              replacement=args.weights == "counts", top_k=args.top_k)
    names = short_names([item.path for item in found])
    print(f"{len(found)} candidates on {len(labels)} videos, {labels.shape[1]} classes "
          f"({computed} scored, {len(found) - computed} read from the cache {cache})")
    for name, gap in zip(names, selection.single_gaps):
        print(f"  {name}: GAP@{args.top_k} {gap:.5f}")
    print(f"\ngreedy selection ({'with' if args.weights == 'counts' else 'without'} replacement), "
          f"stopped: {selection.stop}")
    print(format_curve(selection, names))
    per_thousand = bytes_per_thousand_videos(found)
    print(f"\nprediction cache: {per_thousand / 1e6:.3f} MB per 1,000 videos per candidate "
          f"(float16 [videos, {labels.shape[1]}] + ids + bit-packed labels; "
          f"{2 * 3862 * 1000 / 1e6:.1f} MB of float16 at V = 3,862)")
    os.makedirs(args.out, exist_ok=True)
    png = plot_curve(selection, names, os.path.join(args.out, "gap_curve.png"),
                     f"greedy ensemble, {len(labels)} validation videos")
    document = selection_document(args, found, selection, names, per_thousand)
    write_json(os.path.join(args.out, SELECTION_FILE), document)
    print(f"wrote {os.path.join(args.out, SELECTION_FILE)} ({len(document['members'])} members) and {png}")
    return 0


def selection_document(args, found, selection, names, per_thousand: float) -> dict:
    return {
        "format": SELECTION_FORMAT,
        "data": list(args.data),
        "num_videos": len(found[0].ids),
        "top_k": args.top_k,
        "settings": {"sampling": args.sampling, "num_frames": args.num_frames, "seed": args.seed,
                     "precision": args.precision, "member_frames": args.member_frames, "weights": args.weights},
        "candidates": [{"name": name, "checkpoint": item.path, "gap": gap, "num_frames": item.num_frames}
                       for name, item, gap in zip(names, found, selection.single_gaps)],
        "picks": [{"models": m + 1, "added": found[index].path, "gap": gap}
                  for m, (index, gap) in enumerate(zip(selection.picks, selection.curve))],
        "stop": selection.stop,
        "members": [{"checkpoint": found[index].path, "weight": count, "num_frames": found[index].num_frames,
                     "sha256": found[index].sha256} for index, count in selection.counts.items()],
        "gap": selection.curve[-1],
        "cache": {"folder": args.cache or os.path.join(args.out, "cache"), "bytes_per_1000_videos": per_thousand},
    }


def run_build(args) -> int:
    from videopool.models.checkpoint import data_checksum, save_weights
    from videopool.models.ensemble import ensemble_from_checkpoints

    from videopool.core.errors import UserError

    if any(os.path.exists(os.path.join(args.out, name)) for name in ("config.yaml", "resume.pt")):
        raise UserError(f"--out {args.out!r} holds a training run; give a new directory for the ensemble")
    members, selection_path, selected_frames = read_sources(args.sources)
    member_frames = args.member_frames or selected_frames or "all"
    paths = [m["checkpoint"] for m in members]
    weights = [float(m["weight"]) for m in members]
    counts = member_frames  # "all" or "trained" (each run's training count)
    if member_frames == "trained" and selected_frames == "trained":
        counts = [m.get("num_frames") for m in members]  # the counts the selection scored
    checksums = [data_checksum(path) for path in paths]
    for member, checksum in zip(members, checksums):
        if member.get("sha256") not in (None, checksum):
            raise UserError(f"checkpoint {member['checkpoint']!r} changed after the selection scored it "
                            f"(sha256 {checksum[:12]}... instead of {member['sha256'][:12]}...); "
                            "run `videopool ensemble select` again")
    model, infos = ensemble_from_checkpoints(paths, weights, counts)
    frames = [c for c in model.frame_counts if c is not None]
    train = infos[0].get("train_config") or {}
    info = {
        "model_config": model.config.to_dict(),
        "num_classes": model.config.num_classes,
        "feature_names": list(model.config.modalities),
        # what inference reads from a run's training config: the loader's frame count for --sampling
        # uniform/random (the largest member's), and the loss evaluate reports
        "train_config": {"num_frames": max(frames, default=300), "frame_selection": "uniform",
                         "loss": train.get("loss", "bce_sum")},
        "step": None,
        "ensemble": {"selection": selection_path, "member_frames": member_frames,
                     "members": [{"checkpoint": info["path"], "sha256": checksum, "weight": w, "num_frames": c}
                                 for info, checksum, w, c in zip(infos, checksums, weights, model.frame_counts)]},
    }
    out = os.path.join(args.out, "best.safetensors")
    save_weights(out, model.state_dict(), info)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {len(paths)} members, {params:,} parameters, {os.path.getsize(out) / 2**20:.1f} MiB")
    for member, info in zip(model.config.members, infos):
        frames_text = "every frame" if member.num_frames is None else f"{member.num_frames} frames (uniform)"
        print(f"  weight {member.weight:g}  {frames_text:<22} {info['path']}")
    return 0


def read_sources(sources: list[str]) -> tuple[list[dict], str | None, str | None]:
    """``(members [{checkpoint, weight, num_frames}], selection file or None, its member_frames or None)``."""
    from videopool.core.errors import UserError
    from videopool.models.checkpoint import find_checkpoint

    selections = [s for s in sources if s.endswith(".json")]
    if selections:
        if len(sources) != 1:
            raise UserError(f"give either one selection file or runs, not both: {' '.join(sources)}")
        path = selections[0]
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except json.JSONDecodeError as err:
            raise UserError(f"{path!r} is not JSON ({err}); give a selection.json written by `ensemble select`")
        if not isinstance(document, dict) or document.get("format") != SELECTION_FORMAT:
            raise UserError(f"{path!r} is not a selection written by `videopool ensemble select`")
        return document["members"], os.path.abspath(path), document.get("settings", {}).get("member_frames")
    weights: dict[str, dict] = {}
    for source in sources:
        path = os.path.abspath(find_checkpoint(source))
        entry = weights.setdefault(path, {"checkpoint": path, "weight": 0})
        entry["weight"] += 1
    return list(weights.values()), None, None


def short_names(paths: list[str]) -> list[str]:
    """Each checkpoint's short name (:func:`~videopool.inference.ensemble_select.run_name`), made unique."""
    from videopool.inference.ensemble_select import run_name

    names = [run_name(path) for path in paths]
    return [f"{name}#{names[:i].count(name) + 1}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def write_json(path: str, document: dict) -> None:
    from videopool.core.files import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
