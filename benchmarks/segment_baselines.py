"""Segment mAP on the demo's held-out segment split of (a) random scores and (b) the video-level model applied to
the 11-frame windows without fine-tuning (docs/results.md, "Segment localisation").

Usage: python benchmarks/segment_baselines.py DIR   (DIR as given to benchmarks/segment_demo.sh)
"""
import glob
import sys

import numpy as np

from videopool.data.segments import SegmentLoader
from videopool.inference.segment_eval import score_rated_segments, segment_metrics
from videopool.models import load_model
from videopool.models.segment import SegmentClassifier, SegmentModelConfig

root = sys.argv[1]
video, info = load_model(f"{root}/video")
model = SegmentClassifier(SegmentModelConfig(video=info["model_config"]))
model.load_video_weights(video)
files = sorted(glob.glob(f"{root}/data/segments-validate-*.tfrecord"))
loader = SegmentLoader(files, info["num_classes"], batch_size=256, context=3, features=["rgb", "audio"])
ids, scores, targets, rated = score_rated_segments(model, loader)
print("video model, no fine-tuning:", round(segment_metrics(ids, scores, targets, rated)["segment_map"], 4))
maps = [segment_metrics(ids, np.random.default_rng(s).random(scores.shape), targets, rated)["segment_map"]
        for s in range(5)]
print("random scores (5 draws): mean", round(float(np.mean(maps)), 4), "std", round(float(np.std(maps)), 4))
