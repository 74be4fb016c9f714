"""``videopool make-demo-data DIR``: write the synthetic demo dataset (see ``docs/demo-data.md``)."""

from __future__ import annotations

import argparse

from videopool.cli.arguments import non_negative_int, output_directory, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "make-demo-data", help="write the synthetic YouTube-8M-format demo dataset",
        description="Write train/validate/test shards, vocabulary.csv, manifest.json and README.md of a "
                    "synthetic dataset whose classes need learnable pooling, audio-visual fusion and "
                    "label structure to be recognised. Deterministic: the same seed and sizes give "
                    "identical files.")
    parser.add_argument("out_dir", metavar="DIR", type=output_directory, help="output directory (created if missing)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the whole dataset (default: 0)")
    parser.add_argument("--train-videos", type=non_negative_int, default=4000, metavar="N", help="default: 4000")
    parser.add_argument("--validate-videos", type=non_negative_int, default=1000, metavar="N", help="default: 1000")
    parser.add_argument("--test-videos", type=non_negative_int, default=1000, metavar="N", help="default: 1000")
    parser.add_argument("--classes", type=positive_int, default=256, metavar="C",
                        help="vocabulary size, 12 to 100,000 (default: 256)")
    parser.add_argument("--videos-per-shard", type=positive_int, default=500, metavar="N", help="default: 500")
    parser.add_argument("--layout", metavar="LAYOUT", default=None,
                        help="record layout to write: yt8m_frame (default), yt8m_video, audioset, mediapipe, or a "
                             "layout YAML file (docs/custom-features.md)")
    parser.add_argument("--segment-train-videos", type=non_negative_int, default=0, metavar="N",
                        help="also write N videos of segment-rated training data, segments-train-*.tfrecord "
                             "(videopool.demo.segments; default 0: none)")
    parser.add_argument("--segment-validate-videos", type=non_negative_int, default=0, metavar="N",
                        help="also write N videos of segment-rated held-out data, segments-validate-*.tfrecord")
    parser.add_argument("--force", action="store_true", help="overwrite demo files already in DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from videopool.demo.dataset import make_demo_data

    manifest = make_demo_data(args.out_dir, seed=args.seed, train_videos=args.train_videos,
                              validate_videos=args.validate_videos, test_videos=args.test_videos,
                              num_classes=args.classes, videos_per_shard=args.videos_per_shard,
                              progress=not args.quiet, force=args.force, layout=args.layout)
    for split, stats in manifest["splits"].items():
        print(f"{split}: {stats['videos']} videos in {len(stats['files'])} file(s), "
              f"{stats['mean_labels_per_video']} labels/video")
    print(f"wrote {args.out_dir} ({manifest['config']['num_classes']} classes; see manifest.json)")
    if args.segment_train_videos or args.segment_validate_videos:
        from videopool.demo.segments import make_segment_splits

        summary = make_segment_splits(args.out_dir, seed=args.seed, train_videos=args.segment_train_videos,
                                      validate_videos=args.segment_validate_videos, num_classes=args.classes,
                                      videos_per_shard=args.videos_per_shard, force=args.force)
        for split, stats in summary["splits"].items():
            print(f"{split}: {stats['videos']} videos, {stats['rated_segments']} rated segments, "
                  f"{stats['rated_pairs']} rated pairs ({stats['positive_pairs']} positive)")
    return 0
