"""``videopool localize``: a 2019 YouTube-8M Segments submission (``Class,Segments``) from a trained run.

Every video of --data is cut into consecutive 5-second segments (start frames 0, 5, 10, ...; a trailing partial
segment is scored on its real frames), every segment is scored for every class of the whitelist in one batched
pass, and each class keeps its --top-n best segments in bounded memory. The CSV is written atomically. Check it
with ``videopool check-submission``. Details: docs/segments.md.
"""

from __future__ import annotations

import argparse

from videopool.cli.arguments import non_negative_int, output_file, positive_int
from videopool.cli.options import add_bad_record_options, report_skipped, skip_reporter

ALL_FRAMES = 1_000_000  # the frame cap of the loader: every frame of any real video
REAL_VOCABULARY = 3862  # the YouTube-8M 2018/2019 label space, of which the 2019 whitelist is a subset


def add_parser(subparsers) -> None:
    from videopool.core.precision import PRECISIONS

    p = subparsers.add_parser("localize", help="segment-level submission (2019 Kaggle CSV) from a run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directory (uses best, else last) or .safetensors: a segment run (train-segments) or a "
                        "video-level one (scored as a context-ignoring segment model); several: their average")
    p.add_argument("--data", nargs="+", required=True, metavar="GLOB", help="frame-level TFRecord files")
    p.add_argument("--out", required=True, metavar="CSV", type=output_file, help="submission file to write")
    p.add_argument("--top-n", type=positive_int, default=100_000, help="segments per class (Kaggle: 100000)")
    p.add_argument("--classes", metavar="CSV",
                   help="whitelist of class ids, one per line (header optional, e.g. segment_label_ids.csv); "
                        "default: the 2019 challenge's 1,000 classes for a model of the 3,862-class vocabulary, "
                        "else every class of the model")
    p.add_argument("--drop-edge-segments", action="store_true",
                   help="leave out the first 6 and the last 2 segments of every video, never rated in 2019")
    p.add_argument("--context-frames", type=non_negative_int, default=None, metavar="T",
                   help="frames of context on each side of a segment (default: the run's training value, else 0)")
    p.add_argument("--plot", metavar="VIDEO_ID",
                   help="also draw this video's segment-score timeline (needs --plot-out)")
    p.add_argument("--plot-out", metavar="PNG", type=output_file, help="where --plot writes the PNG")
    p.add_argument("--vocabulary", metavar="CSV", help="vocabulary.csv: class names for the plot")
    p.add_argument("--batch-size", type=positive_int, default=2048, help="segments per forward pass")
    p.add_argument("--video-batch", type=positive_int, default=32, help="videos read per batch")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="data-loading processes (default: 0 on a CPU machine with <= 2 cores, else 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_bad_record_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from videopool.core.errors import UserError
    from videopool.core.precision import resolve_device, resolve_precision
    from videopool.data.errors import DEFAULT_MAX_BAD_RECORDS
    from videopool.data.loader import make_loader
    from videopool.inference.localize import localize

    if bool(args.plot) != bool(args.plot_out):
        raise UserError("--plot VIDEO_ID and --plot-out FILE.png go together; give both or neither")
    device = resolve_device(args.device)
    model, info, context, video_frames = load_models(args.runs, device)
    num_classes = int(info["num_classes"])
    class_ids = class_whitelist(args.classes) if args.classes else default_classes(num_classes)
    outside = [c for c in class_ids if c >= num_classes]
    if outside:
        raise UserError(f"--classes {args.classes}: class id {outside[0]} is outside the model's {num_classes} "
                        f"classes (0..{num_classes - 1}); give the whitelist of its label space")
    names = _class_names(args.vocabulary, num_classes) if args.vocabulary else None
    context = args.context_frames if args.context_frames is not None else context
    loader = make_loader(args.data, num_classes=num_classes, batch_size=args.video_batch, strategy="all",
                         num_frames=ALL_FRAMES, shuffle=False, workers=args.workers, device=device, what="--data",
                         on_bad_record=args.on_bad_record,
                         max_bad_records=DEFAULT_MAX_BAD_RECORDS if args.max_bad_records is None
                         else args.max_bad_records,
                         on_skip=skip_reporter("localize"),
                         features=(info.get("model_config") or {}).get("modalities"), trainable=False)
    found = localize(model, loader, class_ids, top_n=args.top_n, batch_size=args.batch_size,
                     context_frames=context, video_frames=video_frames, drop_edge_segments=args.drop_edge_segments,
                     precision=resolve_precision(args.precision, device), device=device,
                     timeline_video=args.plot, progress=not args.no_progress)
    report_skipped("localize", loader)
    if found.num_segments == 0:
        raise UserError(f"--data {' '.join(args.data)}: no segment to score (no video with frames"
                        f"{' after dropping the edge segments' if args.drop_edge_segments else ''})")
    found.write(args.out)
    print(f"wrote the top {args.top_n} of {found.num_segments} segments ({found.num_videos} videos) for "
          f"{len(class_ids)} classes to {args.out}")
    if args.plot:
        from videopool.inference.timeline import plot_timeline

        if found.timeline is None:
            raise UserError(f"--plot {args.plot}: no video with this id (and segments) in --data; the submission "
                            f"{args.out} was written, the timeline was not")
        plot_timeline(args.plot_out, found.timeline, class_ids, class_names=names)
        print(f"wrote the timeline of video {args.plot} to {args.plot_out}")
    return 0


def load_models(runs: list[str], device):
    """``(model, info of the first run, context frames, whole-video frames)`` of ``runs``: one model, or the
    average of several that see the same segment windows and label space."""
    from videopool.core.errors import UserError
    from videopool.models import load_model
    from videopool.inference.localize import AveragedScorer

    loaded = [load_model(run, device) for run in runs]
    windows = {(int(i.get("train_config", {}).get("context", 0) or 0), i.get("train_config", {}).get("video_frames"))
               for _, i in loaded}
    if len(windows) > 1:
        raise UserError(f"the runs were trained with different (context, video_frames) settings {sorted(windows)}; "
                        "average runs that see the same segment windows")
    if len({int(i["num_classes"]) for _, i in loaded}) > 1:
        raise UserError("the runs have different numbers of classes; they cannot be averaged")
    models = [m for m, _ in loaded]
    model = models[0] if len(models) == 1 else AveragedScorer(models).to(device).eval()
    context, video_frames = windows.pop()
    return model, loaded[0][1], context, video_frames


def default_classes(num_classes: int) -> list[int]:
    """The 2019 whitelist for a model of the real 3,862-class vocabulary, else every class."""
    from videopool.data.segments import segment_class_ids

    return segment_class_ids().tolist() if num_classes == REAL_VOCABULARY else list(range(num_classes))


def class_whitelist(path: str) -> list[int]:
    """The ids of a --classes file, or a one-line error naming it."""
    import os

    from videopool.core.errors import UserError
    from videopool.inference.formats import read_class_ids

    if not os.path.isfile(path):
        raise UserError(f"--classes {path!r} " + ("is a directory; give the whitelist CSV" if os.path.isdir(path)
                                                  else "does not exist"))
    return read_class_ids(path)


def _class_names(path: str, num_classes: int) -> dict[int, str]:
    from videopool.data import read_vocabulary

    vocabulary = read_vocabulary(path)
    return {i: vocabulary.name(i) for i in range(min(num_classes, vocabulary.num_classes))}
