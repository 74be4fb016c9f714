"""The demo videos in another record layout (``make-demo-data --layout``), so every layout can be trained on.

The generator makes YouTube-8M frame-level videos (``rgb`` 1024 + ``audio`` 128 uint8 codes per frame). For a
layout of other keys the same videos are re-expressed, feature by feature:

* ``rgb`` / ``audio``: the video's own frames (codes when the layout stores them quantized over [-2, 2],
  dequantized floats otherwise, e.g. MediaPipe's float lists);
* ``mean_rgb`` / ``mean_audio`` (and every feature of a video-level layout): the mean of the dequantized frames,
  as the YouTube-8M video-level release is;
* any other name (a user's layout, ``x: 12``): a fixed random projection of the concatenated dequantized
  ``[rgb, audio]`` frames to the feature's size (Gaussian, variance 1/1152, seeded by the feature's name), so
  the classes stay learnable from a small feature.

Only the frame-level YouTube-8M layout keeps the validate split's segment ratings (the others have no field
for them).
"""

from __future__ import annotations

import zlib

import numpy as np

from videopool.data.layouts import Layout
from videopool.data.schema import FeatureSpec, dequantize
from videopool.data.video import Video

_SOURCES = ("rgb", "audio")


def is_default_layout(layout: Layout) -> bool:
    return layout.name == "yt8m_frame"


def _projection(name: str, size: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    return (rng.standard_normal((width, size)) / np.sqrt(width)).astype(np.float32)


def _values(video: Video, spec: FeatureSpec, level: str, cache: dict) -> np.ndarray:
    name = spec.name
    base = name[len("mean_"):] if name.startswith("mean_") and name[len("mean_"):] in _SOURCES else name
    if base in _SOURCES:
        codes = video.features[base]
        if level == "frame" and spec.encoding == "bytes" and spec.default_range:
            return codes  # exact: the very bytes the YouTube-8M layout holds
        values = cache.setdefault(base, dequantize(codes))
    else:
        joint = cache.get("joint")
        if joint is None:
            joint = cache["joint"] = np.concatenate([dequantize(video.features[m]) for m in _SOURCES], axis=1)
        values = joint @ _projection(name, spec.size, joint.shape[1])
    if level == "video":
        values = values.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    return values


def convert_video(video: Video, layout: Layout) -> Video:
    """``video`` (YouTube-8M frame level) with the features ``layout`` names; segments only where it has them."""
    schema = layout.schema
    cache: dict = {}
    features = {}
    for spec in schema.features:
        values = _values(video, spec, schema.level, cache)
        if values.shape[1] != spec.size:
            raise ValueError(f"layout {layout.name!r}: feature {spec.name!r} has size {spec.size}, but the demo's "
                             f"{spec.name} frames have {values.shape[1]} values; name it otherwise to get a "
                             "projection of that size")
        features[spec.name] = values
    segments = video.segments if is_default_layout(layout) else None
    return Video(id=video.id, labels=video.labels, features=features, segments=segments)
