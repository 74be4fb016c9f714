"""The demo's segment-rated splits, for segment fine-tuning and localisation (``docs/demo-data.md``).

``make_segment_splits(out_dir, seed=S)`` adds to a demo dataset made with the same seed (or writes into a new
folder) ``segments-train-*.tfrecord`` and ``segments-validate-*.tfrecord``: frame-level records of the same
generative world (classes, prototypes, mechanisms: :class:`~videopool.demo.world.DemoWorld` of ``seed``), so a
video-level model trained on the demo's ``train`` split transfers, plus 2019-style segment ratings. It does not
touch the demo's other files: its videos come from their own random streams (``[seed, 101 | 102, index]``;
the demo's splits use ``[seed, 1 | 2 | 3, index]``), and its summary goes to ``segments.json``.

Planted segments (the generative model, :mod:`videopool.demo.world`): a leaf class's evidence is added only in
its spans, 2–6 whole 5-second segments, so the seconds where a class is present are known exactly. Ratings,
for *every* leaf class of the video with a rateable positive segment (the validate split of the demo rates one
class per video): up to :data:`RATED_PER_CLASS` segments, positives where the class's evidence covers at least
3 of the 5 frames, negatives where it covers none; never the first 6 or the last 2 segments (as in the 2019
data). Segments with 1–2 frames of evidence, and every other (segment, class) pair, stay unrated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from videopool.core.files import atomic_path
from videopool.data.io import write_videos
from videopool.data.schema import FeatureSpec, Schema
from videopool.data.video import SegmentAnnotations, Video
from videopool.demo.dataset import UNRATED_HEAD, UNRATED_TAIL, shard_names
from videopool.demo.world import SEGMENT_FRAMES, DemoConfig, DemoVideo, DemoWorld

SEGMENT_SPLITS = {"segments-train": 101, "segments-validate": 102}  # split -> random stream
RATED_PER_CLASS = 5


def rate_every_class(video: DemoVideo, rng: np.random.Generator) -> SegmentAnnotations:
    """Rate up to :data:`RATED_PER_CLASS` segments of each leaf class that has a rateable positive segment (see
    the module docstring); pairs sorted by start time, then class."""
    segments = video.num_frames // SEGMENT_FRAMES
    rateable = np.arange(UNRATED_HEAD, max(segments - UNRATED_TAIL, UNRATED_HEAD))
    labels, starts, scores = [], [], []
    for class_id in sorted(video.evidence):
        coverage = video.evidence[class_id][: segments * SEGMENT_FRAMES].reshape(segments, SEGMENT_FRAMES).sum(1)
        positives = rng.permutation(rateable[coverage[rateable] >= 3])
        negatives = rng.permutation(rateable[coverage[rateable] == 0])
        if not len(positives):
            continue
        num_positive = min(len(positives), max(3, RATED_PER_CLASS - len(negatives)))
        chosen = np.concatenate([positives[:num_positive], negatives[: RATED_PER_CLASS - num_positive]])
        labels += [class_id] * len(chosen)
        starts += list(chosen * SEGMENT_FRAMES)
        scores += [1.0] * num_positive + [0.0] * (len(chosen) - num_positive)
    order = np.lexsort((np.asarray(labels, dtype=np.int64), np.asarray(starts, dtype=np.int64)))
    start_times = np.asarray(starts, dtype=np.int64)[order]
    return SegmentAnnotations(labels=np.asarray(labels, dtype=np.int64)[order], start_times=start_times,
                              scores=np.asarray(scores, dtype=np.float32)[order],
                              end_times=start_times + SEGMENT_FRAMES)


def generate_segment_video(world: DemoWorld, seed: int, split: str, index: int) -> tuple[Video, DemoVideo]:
    """Video ``index`` of a segment split, with its ratings and its latent description (the evidence spans)."""
    rng = np.random.default_rng([seed, SEGMENT_SPLITS[split], index])
    latent = world.sample_video(rng)
    features = {"rgb": world.project(latent.rgb_latent, "rgb", rng),
                "audio": world.project(latent.audio_latent, "audio", rng)}
    video_id = f"{split.split('-')[1][:3]}{index:07d}"  # tra0000001 / val0000001
    return Video(id=video_id, labels=latent.labels, features=features,
                 segments=rate_every_class(latent, rng)), latent


def make_segment_splits(out_dir: str | os.PathLike, *, seed: int = 0, train_videos: int = 2000,
                        validate_videos: int = 500, num_classes: int = 256, videos_per_shard: int = 500,
                        config: DemoConfig | None = None, force: bool = False) -> dict:
    """Write the two segment splits into ``out_dir`` and return their summary (also ``segments.json``).
    Use the seed and class count of the demo dataset whose video-level model is fine-tuned."""
    config = config or DemoConfig(num_classes=num_classes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in out.glob("segments-*.tfrecord"))
    if existing and not force:
        raise FileExistsError(f"{out} already holds segment splits ({existing[0]}, ...); pass force=True")
    for name in existing:
        (out / name).unlink()
    world = DemoWorld(config, seed)
    schema = Schema(features=(FeatureSpec("rgb", config.rgb_size, "bytes"), FeatureSpec("audio", config.audio_size,
                                                                                       "bytes")), level="frame")
    summary: dict = {"generator": "videopool.demo.segments (see docs/demo-data.md)", "seed": seed,
                     "num_classes": config.num_classes, "splits": {}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls, as in make_demo_data
    try:
        for split, total in (("segments-train", train_videos), ("segments-validate", validate_videos)):
            names = shard_names(split, total, videos_per_shard) if total else []
            counts = {"videos": 0, "rated_pairs": 0, "positive_pairs": 0, "rated_segments": 0}
            for shard, name in enumerate(names):
                indices = range(shard * videos_per_shard, min(total, (shard + 1) * videos_per_shard))
                with atomic_path(str(out / name)) as tmp:
                    write_videos(tmp, (_counted(generate_segment_video(world, seed, split, i)[0], counts)
                                       for i in indices), schema=schema)
            summary["splits"][split] = {"files": names, **counts}
    finally:
        torch.set_num_threads(threads)
    with atomic_path(str(out / "segments.json")) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _counted(video: Video, counts: dict) -> Video:
    counts["videos"] += 1
    counts["rated_pairs"] += len(video.segments.labels)
    counts["positive_pairs"] += int((video.segments.scores > 0).sum())
    counts["rated_segments"] += len(np.unique(video.segments.start_times))
    return video
