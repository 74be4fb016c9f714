"""Write the built-in demo dataset: YouTube-8M-format shards with learnable structure.

``make_demo_data(out_dir)`` writes, deterministically (same seed and sizes -> byte-identical
files on the same platform), into ``out_dir``:

* ``train-00000-of-000NN.tfrecord`` ... frame-level ``SequenceExample`` shards with ``id``,
  ``labels``, ``rgb`` (1024 bytes/frame) and ``audio`` (128 bytes/frame);
* ``validate-*.tfrecord`` — the same plus 2019-style segment ratings
  (``segment_labels``, ``segment_start_times``, ``segment_end_times``, ``segment_scores``);
* ``test-*.tfrecord`` — ``id`` and features only, like the real test set, and
  ``test_labels.csv`` (``VideoId,Labels``) holding its hidden labels;
* ``vocabulary.csv`` with the YouTube-8M columns, ``manifest.json`` and ``README.md``.

Videos are generated and written one at a time (each from its own seeded generator), so
memory does not grow with the number of videos. The generative model is in
:mod:`videopool.demo.world` and documented in ``docs/demo-data.md``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from videopool.demo.world import SEGMENT_FRAMES, DemoConfig, DemoVideo, DemoWorld
from videopool.data.io import write_videos
from videopool.data.layouts import LAYOUTS, resolve_layout
from videopool.demo.layouts import convert_video, is_default_layout
from videopool.data.video import SegmentAnnotations, Video
from videopool.data.vocabulary import write_vocabulary

SPLITS = ("train", "validate", "test")
# Like the 2019 ratings: the first 6 and the last 2 five-second segments are never rated.
UNRATED_HEAD, UNRATED_TAIL = 6, 2
RATED_PER_VIDEO = 5
_DESCRIPTIONS = {
    "vertical": "Synthetic vertical: on whenever one of its child classes is on.",
    "visual": "Synthetic: its own rgb prototype is added in some spans (visible in the mean rgb).",
    "audio": "Synthetic: its own audio prototype is added in some spans (audio only).",
    "distribution": "Synthetic: frames of some spans move by +d or -d in equal numbers; the mean frame "
                    "does not change, only the distribution of frames.",
    "conjunction": "Synthetic: an rgb motif and an audio motif, each shared with other classes; "
                   "on only when both occur in the video.",
}


def rate_segments(video: DemoVideo, rng: np.random.Generator) -> SegmentAnnotations:
    """Rate up to 5 segments of one class of the video, positives where its evidence is.

    A segment is positive when the class's evidence covers at least 3 of its 5 frames and
    negative when it covers none; others are not rated. The class is drawn among the
    video's leaf classes having a rateable positive segment; with none, nothing is rated.
    """
    segments = video.num_frames // SEGMENT_FRAMES
    rateable = np.arange(UNRATED_HEAD, max(segments - UNRATED_TAIL, UNRATED_HEAD))
    candidates = []
    for class_id in sorted(video.evidence):
        coverage = video.evidence[class_id][: segments * SEGMENT_FRAMES].reshape(segments, SEGMENT_FRAMES).sum(1)
        positives, negatives = rateable[coverage[rateable] >= 3], rateable[coverage[rateable] == 0]
        if len(positives):
            candidates.append((class_id, positives, negatives))
    if not candidates:
        empty = np.zeros(0, dtype=np.int64)
        return SegmentAnnotations(empty, empty, np.zeros(0, dtype=np.float32), empty)
    class_id, positives, negatives = candidates[int(rng.integers(len(candidates)))]
    positives, negatives = rng.permutation(positives), rng.permutation(negatives)
    num_positive = min(len(positives), max(3, RATED_PER_VIDEO - len(negatives)))
    chosen = np.concatenate([positives[:num_positive], negatives[: RATED_PER_VIDEO - num_positive]])
    scores = np.concatenate([np.ones(num_positive), np.zeros(len(chosen) - num_positive)]).astype(np.float32)
    order = np.argsort(chosen, kind="stable")
    starts = chosen[order].astype(np.int64) * SEGMENT_FRAMES
    return SegmentAnnotations(labels=np.full(len(chosen), class_id, dtype=np.int64), start_times=starts,
                              scores=scores[order], end_times=starts + SEGMENT_FRAMES)


def generate_video(world: DemoWorld, seed: int, split: str, index: int) -> tuple[Video, DemoVideo]:
    """Video ``index`` of ``split``: a quantized :class:`Video` and its latent description."""
    rng = np.random.default_rng([seed, SPLITS.index(split) + 1, index])
    latent = world.sample_video(rng)
    features = {"rgb": world.project(latent.rgb_latent, "rgb", rng),
                "audio": world.project(latent.audio_latent, "audio", rng)}
    segments = rate_segments(latent, rng) if split == "validate" else None
    labels = [] if split == "test" else latent.labels
    return Video(id=f"{split}{index:07d}", labels=labels, features=features, segments=segments), latent


def shard_names(split: str, num_videos: int, videos_per_shard: int) -> list[str]:
    count = max(1, -(-num_videos // videos_per_shard))
    return [f"{split}-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]


def make_demo_data(out_dir: str | os.PathLike, *, seed: int = 0, train_videos: int = 4000,
                   validate_videos: int = 1000, test_videos: int = 1000, num_classes: int = 256,
                   videos_per_shard: int = 500, progress: bool = True, force: bool = False,
                   config: DemoConfig | None = None, layout=None) -> dict:
    """Generate the demo dataset into ``out_dir`` and return its manifest (also written).

    Args:
        out_dir: target directory; created if missing. Refused if it already holds demo
            files, unless ``force``.
        seed: one seed for everything (classes, prototypes, every video).
        train_videos, validate_videos, test_videos: videos per split.
        num_classes: vocabulary size (verticals + leaves; at least 12).
        videos_per_shard: videos per ``.tfrecord`` file.
        progress: show a tqdm progress bar.
        config: full generative-model settings (``num_classes`` is taken from here if given).
        layout: write the videos in this record layout (a :class:`~videopool.data.layouts.Layout`, a built-in
            layout's name or a layout file; :mod:`videopool.demo.layouts`); default YouTube-8M frame level.
    """
    config = config or DemoConfig(num_classes=num_classes)
    if videos_per_shard <= 0:
        raise ValueError(f"videos_per_shard must be positive, got {videos_per_shard}")
    layout = resolve_layout(layout)  # a bad layout fails before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in out.iterdir() if p.suffix == ".tfrecord" or p.name == "manifest.json")
    if existing and not force:
        raise FileExistsError(f"{out} already holds demo files ({existing[0]}, ...); pass force=True "
                              "(CLI: --force) to overwrite")
    for name in existing:
        (out / name).unlink()
    sizes = {"train": train_videos, "validate": validate_videos, "test": test_videos}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: extra threads only spin, badly so on a busy machine
    try:
        return _generate(out, config, seed, sizes, videos_per_shard, progress, layout)
    finally:
        torch.set_num_threads(threads)


def _generate(out: Path, config: DemoConfig, seed: int, sizes: dict[str, int], videos_per_shard: int,
              progress: bool, layout=None) -> dict:
    world = DemoWorld(config, seed)
    layout = resolve_layout(layout) or LAYOUTS["yt8m_frame"]
    schema = layout.schema
    convert = (lambda video: video) if is_default_layout(layout) else (lambda video: convert_video(video, layout))
    train_counts = np.zeros(config.num_classes, dtype=np.int64)
    stats: dict[str, dict] = {}
    bar = tqdm(total=sum(sizes.values()), unit="video", desc="demo data", disable=not progress)
    for split, total in sizes.items():
        names = shard_names(split, total, videos_per_shard) if total else []
        split_stats = _SplitStats(split, train_counts if split == "train" else None)
        for shard, name in enumerate(names):
            indices = range(shard * videos_per_shard, min(total, (shard + 1) * videos_per_shard))
            videos = (convert(split_stats.count(*generate_video(world, seed, split, i), bar)) for i in indices)
            write_videos(out / name, videos, schema=schema)
        stats[split] = split_stats.summary(names)
        if split == "test":
            _write_test_labels(out / "test_labels.csv", world, seed, total)
    bar.close()
    _write_vocabulary(out / "vocabulary.csv", world, train_counts)
    manifest = _manifest(world, seed, videos_per_shard, stats)
    if not is_default_layout(layout):  # the default manifest stays as it always was
        manifest["format"] = f"layout {layout.name}: {layout.description or layout.describe()}"
        manifest["layout"] = {"name": layout.name, "features": layout.describe()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "README.md").write_text(_readme(manifest))
    return manifest


@dataclass
class _SplitStats:
    """Running statistics of one split (constant memory, whatever the number of videos)."""

    split: str
    label_counts: np.ndarray | None  # per-class video counts, kept for the train split
    videos: int = 0
    labels: int = 0
    rated: int = 0
    frames_min: int = 0
    frames_max: int = 0
    frames_sum: int = 0

    def count(self, video: Video, latent: DemoVideo, bar) -> Video:
        n = latent.num_frames
        self.frames_min = n if self.videos == 0 else min(self.frames_min, n)
        self.frames_max, self.frames_sum = max(self.frames_max, n), self.frames_sum + n
        self.videos += 1
        self.labels += len(latent.labels)
        self.rated += 0 if video.segments is None else len(video.segments.labels)
        if self.label_counts is not None:
            self.label_counts[latent.labels] += 1
        bar.update(1)
        return video

    def summary(self, files: list[str]) -> dict:
        summary = {"videos": self.videos, "files": files,
                   "mean_labels_per_video": round(self.labels / max(self.videos, 1), 3),
                   "frames_min": self.frames_min, "frames_max": self.frames_max,
                   "frames_mean": round(self.frames_sum / max(self.videos, 1), 1)}
        if self.split == "validate":
            summary["rated_segments"] = self.rated
        return summary


def _write_test_labels(path: Path, world: DemoWorld, seed: int, total: int) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["VideoId", "Labels"])
        for index in range(total):
            # Labels come from the latent draw alone, so re-sampling without projecting is exact and cheap.
            rng = np.random.default_rng([seed, SPLITS.index("test") + 1, index])
            writer.writerow([f"test{index:07d}", " ".join(map(str, world.sample_video(rng).labels))])


def _write_vocabulary(path: Path, world: DemoWorld, train_counts: np.ndarray) -> None:
    rows = [{"Index": class_id, "TrainVideoCount": int(train_counts[class_id]),
             "KnowledgeGraphId": f"/demo/{class_id:05d}", "Name": name, "Vertical1": name.split("/")[0],
             "WikiDescription": _DESCRIPTIONS[world.mechanism(class_id)]}
            for class_id, name in enumerate(world.names)]
    write_vocabulary(path, rows)


def _manifest(world: DemoWorld, seed: int, videos_per_shard: int, stats: dict) -> dict:
    by_mechanism: dict[str, list[int]] = {}
    for class_id in range(world.config.num_classes):
        by_mechanism.setdefault(world.mechanism(class_id), []).append(class_id)
    return {
        "generator": "videopool.demo.dataset (see docs/demo-data.md)",
        "format": "YouTube-8M frame level: SequenceExample with id, labels, rgb (1024 B/frame), audio (128 B/frame)",
        "seed": seed,
        "videos_per_shard": videos_per_shard,
        "config": world.config.to_dict(),
        "splits": stats,
        "classes_by_mechanism": by_mechanism,
        "conjunction_motifs": {str(world.leaf_class(leaf)): list(pair) for leaf, pair in world.motif_pairs.items()},
    }


def _readme(manifest: dict) -> str:
    lines = ["# videopool demo dataset", "",
             "Synthetic YouTube-8M-format data written by `videopool make-demo-data`; the generative model is "
             "described in videopool's `docs/demo-data.md`, every setting is in `manifest.json`.", "",
             f"Seed {manifest['seed']}, {manifest['config']['num_classes']} classes.", "",
             "| split | videos | files | labels/video | frames (min-max) |", "| --- | --- | --- | --- | --- |"]
    for split, s in manifest["splits"].items():
        lines.append(f"| {split} | {s['videos']} | {len(s['files'])} | {s['mean_labels_per_video']} | "
                     f"{s['frames_min']}-{s['frames_max']} |")
    lines += ["", "Test shards carry no labels (like the real test set); `test_labels.csv` holds them.",
              "Validate shards carry 2019-style segment ratings (5-second segments; the first 6 and last 2 "
              "segments of a video are never rated).", ""]
    return "\n".join(lines)
