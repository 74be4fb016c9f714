"""The tiny labelled data set and the small model that the training, inference and CLI tests share.

The fixtures ``tiny_data`` and ``trained_run`` (tests/conftest.py) are built with these helpers.
The data: 16 training videos in two shards, 9 validation videos in two shards, ``NUM_CLASSES`` classes whose
frames carry a class prototype plus noise (so training has something to learn), a vocabulary covering every
class and a small vocabulary that does not.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

NUM_CLASSES = 6
MODEL = "gated_netvlad_256_small"
MODEL_SETTINGS = {"cluster_size": 2, "hidden.size": 8}
MODEL_FLAGS = ["--model", MODEL, "--set", "cluster_size=2", "--set", "hidden.size=8"]  # the same, for the CLI
# What every test run shares; the CLI tests pass the same values as flags (tests/cli).
TRAIN_SETTINGS = {"batch_size": 4, "precision": "fp32", "workers": 0, "seed": 3, "progress": False,
                  "checkpoint_every": 2}
TRAIN_FLAGS = ["--batch-size", "4", "--precision", "fp32", "--workers", "0", "--seed", "3", "--no-progress",
               "--checkpoint-every", "2"]


def tiny_videos(rng, prefix, count, prototypes):
    from videopool.data import Video

    videos = []
    for i in range(count):
        labels = sorted(set(rng.choice(NUM_CLASSES, size=rng.integers(1, 3), replace=False).tolist()))
        frames = int(rng.integers(3, 9))
        signal = sum(prototypes[c] for c in labels)
        rgb = np.clip(signal[:1024] + rng.normal(0, 0.5, (frames, 1024)), -2, 2).astype(np.float32)
        audio = np.clip(signal[1024:] + rng.normal(0, 0.5, (frames, 128)), -2, 2).astype(np.float32)
        videos.append(Video(id=f"{prefix}{i:03d}", labels=labels, features={"rgb": rgb, "audio": audio}))
    return videos


def write_tiny_data(root) -> None:
    """``train-{0,1}.tfrecord`` (16 videos), ``validate-{0,1}.tfrecord`` (9 videos), ``vocabulary.csv``
    (classes 0..5 named ``thing i``) and ``small_vocabulary.csv`` (classes 0..1 only) in ``root``."""
    from videopool.data import write_videos

    rng = np.random.default_rng(0)
    prototypes = rng.normal(0, 0.8, (NUM_CLASSES, 1152))
    write_videos(root / "train-0.tfrecord", tiny_videos(rng, "a", 8, prototypes))
    write_videos(root / "train-1.tfrecord", tiny_videos(rng, "b", 8, prototypes))
    write_videos(root / "validate-0.tfrecord", tiny_videos(rng, "v", 5, prototypes))
    write_videos(root / "validate-1.tfrecord", tiny_videos(rng, "w", 4, prototypes))
    with open(root / "vocabulary.csv", "w") as f:
        f.write("Index,Name\n" + "".join(f"{i},thing {i}\n" for i in range(NUM_CLASSES)))
    with open(root / "small_vocabulary.csv", "w") as f:
        f.write("Index,Name\n0,a\n1,b\n")


def train_glob(data_dir) -> str:
    return str(data_dir / "train-*.tfrecord")


def validate_glob(data_dir) -> str:
    return str(data_dir / "validate-*.tfrecord")


def train_settings(data_dir, **extra: Any) -> dict[str, Any]:
    """The overrides of ``build_config`` for a fresh run of :data:`MODEL` on ``data_dir``, plus ``extra``."""
    return {**MODEL_SETTINGS, "train_data": [train_glob(data_dir)], **TRAIN_SETTINGS, **extra}


def train_tiny(data_dir, out, **extra: Any) -> dict[str, Any]:
    """Train :data:`MODEL` on ``data_dir`` into the fresh run directory ``out`` through the Python API;
    ``extra`` are more ``build_config`` overrides (``max_steps=...``, ``num_classes=...``, ``vocabulary=...``)."""
    from videopool.training import build_config, num_classes_for, train

    config = build_config(MODEL, None, train_settings(data_dir, **extra), os.fspath(out))
    return train(config, num_classes_for(config))


def resume_tiny(out, **overrides: Any) -> dict[str, Any]:
    """Continue the run in ``out`` (``videopool train --out OUT --resume``) with ``overrides`` such as max_steps."""
    from videopool.training import build_config, num_classes_for, train

    config = build_config(None, None, {"progress": False, **overrides}, os.fspath(out), resume=True)
    return train(config, num_classes_for(config), resume=True)
