"""``videopool evaluate-segments RUN [RUN ...] --data GLOB``: the 2019 segment metric of segment models.

Scores every rated segment of ``--data`` and prints segment mAP@100,000 (the Kaggle metric of the YouTube-8M
Segments challenge, spec §8.6: per class, the segments in descending score, cut at 100,000, unrated pairs
dropped, AP over the rated positives) and, for comparison, the video-level GAP@20 / mAP of the same model on the
same videos (each whole video scored as one segment with itself as context). Several runs are averaged (seed
paper 004: context-ignoring + context-aware); ``--json`` prints everything, with the per-class APs.
"""

from __future__ import annotations

import argparse
import json

from videopool.cli.arguments import positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate-segments", help="segment mAP@100,000 of segment models",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="segment run directory or checkpoint; several: averaged")
    p.add_argument("--data", nargs="+", required=True, metavar="GLOB", help="segment-rated TFRecord files")
    p.add_argument("--top-n", type=positive_int, default=100_000, help="per-class cut (default 100,000)")
    p.add_argument("--classes", choices=("rated", "whitelist"), default="rated",
                   help="rated: every class with a rated positive in --data (default); whitelist: the 2019 "
                        "challenge's 1,000 classes (those of them rated in --data)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-video-metrics", action="store_true", help="skip the video-level comparison")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (per-class APs included)")
    p.set_defaults(func=run)


def load_segment_models(runs: list[str], device):
    """The models of ``runs`` (averaged when several), their infos and the window/context settings they share."""
    from videopool.core.errors import UserError
    from videopool.models import load_model
    from videopool.models.segment import AveragedSegmentClassifier, is_segment_config

    models, infos = [], []
    for run in runs:
        model, info = load_model(run, device)
        if not is_segment_config(info.get("model_config")):
            raise UserError(f"{run!r} holds a video-level model; evaluate-segments takes segment runs "
                            "(train-segments), `videopool evaluate` video-level ones")
        models.append(model)
        infos.append(info)
    windows = {(i.get("train_config", {}).get("context", 0), i.get("train_config", {}).get("video_frames", 300))
               for i in infos}
    if len(windows) > 1:
        raise UserError(f"the runs were trained with different (context, video_frames) settings {sorted(windows)}; "
                        "average runs that see the same segment windows")
    if len({int(i["num_classes"]) for i in infos}) > 1:
        raise UserError("the runs have different numbers of classes; they cannot be averaged")
    model = models[0] if len(models) == 1 else AveragedSegmentClassifier.of(models).to(device).eval()
    context, video_frames = windows.pop()
    return model, infos, context, video_frames


def run(args) -> int:
    from videopool.core.precision import resolve_device
    from videopool.data.loader import expand_patterns
    from videopool.data.segments import SegmentLoader, segment_class_ids
    from videopool.inference.segment_eval import score_rated_segments, segment_metrics

    device = resolve_device(args.device)
    model, infos, context, video_frames = load_segment_models(args.runs, device)
    num_classes = int(infos[0]["num_classes"])
    loader = SegmentLoader(expand_patterns(args.data, "--data"), num_classes, batch_size=args.batch_size,
                           context=context, with_video=model.needs_video_context, video_frames=video_frames,
                           features=list(model.config.modalities))
    ids, scores, targets, rated = score_rated_segments(model, loader, device=device)
    classes = segment_class_ids() if args.classes == "whitelist" else None
    results = segment_metrics(ids, scores, targets, rated, classes=classes, top_n=args.top_n)
    results["runs"] = [info["path"] for info in infos]
    if not args.no_video_metrics:
        results["video_level"] = _video_metrics(model, args.data, num_classes, args.batch_size, video_frames, device)
    if args.json:
        results["per_class_ap"] = {str(k): v for k, v in results["per_class_ap"].items()}
        print(json.dumps(results, indent=2))
        return 0
    print(f"{' + '.join(results['runs'])}: {results['num_segments']} rated segments, {results['num_rated_pairs']} "
          f"rated pairs ({results['num_positive_pairs']} positive), {results['num_classes']} classes")
    print(f"  segment mAP@{args.top_n:,}  {results['segment_map']:.6f}")
    print(f"  rated-pair loss       {results['rated_pair_loss']:.6f}")
    video = results.get("video_level")
    if video:
        print(f"  video level ({video['num_videos']} videos): GAP@20 {video['gap']:.6f}, mAP {video['map']:.6f}")
    elif video is None and not args.no_video_metrics:
        print("  video level: no video of --data has video-level labels")
    return 0


def _video_metrics(model, data, num_classes: int, batch_size: int, video_frames: int, device) -> dict | None:
    """GAP@20 / Hit@1 / mAP of ``model`` on the whole videos of ``data`` (None when they carry no labels)."""
    from videopool.data.loader import make_loader
    from videopool.inference import evaluate
    from videopool.inference.segment_eval import WholeVideo

    # the context-aware model's view of a video: at most video_frames evenly spaced frames
    loader = make_loader(data, num_classes=num_classes, batch_size=batch_size, strategy="uniform",
                         num_frames=video_frames, shuffle=False, workers=0, device=device, what="--data",
                         features=dict(model.config.modalities), trainable=False)
    try:
        results = evaluate(WholeVideo(model), loader, device=device)
    except ValueError as err:
        if "no video has labels" in str(err):
            return None
        raise
    return {k: results[k] for k in ("gap", "hit_at_1", "perr", "map", "num_videos")}
