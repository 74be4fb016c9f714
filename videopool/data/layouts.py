"""Named record layouts: which keys of a record hold which features, of what size, dtype and quantization.

The same two message types (``SequenceExample`` per video at frame level, ``Example`` at video level) carry
data sets that name their keys differently. A :class:`~videopool.data.schema.Schema` says how to read one of
them; this module names the known ones, reads user-defined ones from YAML, and tells which one a record is in:

==============  ===== =========================================================  =============================
layout          level features (record key -> name: size, dtype)                 id / labels
==============  ===== =========================================================  =============================
``yt8m_frame``  frame ``rgb`` 1024 uint8, ``audio`` 128 uint8 (range [-2, 2])    ``id`` (2017: ``video_id``) /
                                                                                 ``labels``
``yt8m_video``  video ``mean_rgb`` 1024 float, ``mean_audio`` 128 float          same
``audioset``    frame ``audio_embedding`` -> ``audio``: 128 uint8 ([-2, 2])      ``video_id`` / ``labels``
``mediapipe``   frame ``RGB/feature/floats`` -> ``rgb``: 1024 float,             ``clip/media_id`` (else
                      ``AUDIO/feature/floats`` -> ``audio``: 128 float           ``example/id``,
                                                                                 ``clip/data_path``) /
                                                                                 ``clip/label/index``
==============  ===== =========================================================  =============================

AudioSet's embeddings are VGGish features quantized like YouTube-8M's audio, so ``audioset`` names them
``audio`` and an audio-only YouTube-8M model reads them. MediaPipe's YouTube-8M feature extractor
(``mediapipe/graphs/youtube8m/feature_extraction.pbtxt``: ``PackMediaSequenceCalculator`` with
``FLOAT_FEATURE_RGB`` / ``FLOAT_FEATURE_AUDIO``, keys from ``mediapipe/util/sequence/media_sequence.py``)
writes the PCA'd Inception and VGGish features unquantized as float lists, so ``mediapipe`` names them
``rgb`` and ``audio`` and a model trained on the YouTube-8M release reads them.

A layout file (YAML, strictly parsed)::

    description: my sensor data
    level: frame                  # frame | video
    id_keys: [id]                 # the first present holds the video id
    label_key: labels
    features:
      - {name: accel, size: 3, encoding: float}
      - {name: mfcc.v1, key: audio/mfcc, size: 13, encoding: bytes, range: [-8, 8]}
      - {name: depth, size: 4, encoding: bytes, scale: 0.05, offset: 0}   # x = q * scale + offset
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from videopool.core.errors import UserError
from videopool.core.schema import ConfigError, check_choice, closest_hint, parse_dataclass
from videopool.data import example_proto as pb
from videopool.data.codec import infer_schema
from videopool.data.schema import MAX_QUANTIZED_VALUE, MIN_QUANTIZED_VALUE, FeatureSpec, Schema

__all__ = ["LAYOUTS", "Layout", "apply_layout", "detect_layout", "features_text", "load_layout", "resolve_layout"]


@dataclass(frozen=True)
class Layout:
    """A named :class:`Schema` with a one-line description."""

    name: str
    schema: Schema
    description: str = ""

    def describe(self) -> str:
        """``rgb (1024 uint8 [-2, 2]), audio (128 uint8 [-2, 2])``, record keys shown where they differ."""
        parts = []
        for spec in self.schema.features:
            key = f" <- {spec.record_key!r}" if spec.key and spec.key != spec.name else ""
            if spec.encoding == "float":
                dtype = "float"
            elif spec.scale is not None:
                dtype = f"uint8, x = q * {spec.scale:g} + {spec.offset:g}"
            else:
                dtype = f"uint8 [{spec.min_value:g}, {spec.max_value:g}]"
            parts.append(f"{spec.name} ({spec.size} {dtype}){key}")
        return ", ".join(parts)


_YT8M_IDS = ("id", "video_id")
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("yt8m_frame", Schema.yt8m_frame(), "YouTube-8M frame level (2017 files: id key video_id)"),
    Layout("yt8m_video", Schema.yt8m_video(), "YouTube-8M video level (2017 files: id key video_id)"),
    Layout("audioset", Schema((FeatureSpec("audio", 128, "bytes", key="audio_embedding"),), level="frame",
                              id_keys=("video_id",), label_key="labels"),
           "AudioSet embeddings (VGGish, 128 uint8 per second)"),
    Layout("mediapipe", Schema((FeatureSpec("rgb", 1024, "float", key="RGB/feature/floats"),
                                FeatureSpec("audio", 128, "float", key="AUDIO/feature/floats")), level="frame",
                               id_keys=("clip/media_id", "example/id", "clip/data_path"),
                               label_key="clip/label/index"),
           "MediaPipe YouTube-8M feature extractor output (float features)"),
)}


# --- layout files -----------------------------------------------------------------------------------------

@dataclass
class _FeatureEntry:
    name: str
    size: int
    encoding: str = "bytes"
    key: str = ""
    range: tuple[float, float] = (MIN_QUANTIZED_VALUE, MAX_QUANTIZED_VALUE)
    scale: float | None = None  # an explicit decoder x = q * scale + offset (instead of range)
    offset: float | None = None

    def __post_init__(self) -> None:
        check_choice("encoding", self.encoding, ("bytes", "float"))
        if not self.name:
            raise ConfigError("a feature needs a non-empty name")
        if self.size < 1:
            raise ConfigError(f"feature {self.name!r}: size must be a positive integer, got {self.size}")
        if not self.range[0] < self.range[1]:
            raise ConfigError(f"feature {self.name!r}: range must be [min, max] with min < max, got {list(self.range)}")
        if (self.scale is None) != (self.offset is None):
            raise ConfigError(f"feature {self.name!r}: give both scale and offset (x = q * scale + offset), or range")
        if self.scale is not None and not self.scale > 0:
            raise ConfigError(f"feature {self.name!r}: scale must be > 0, got {self.scale}")


@dataclass
class _LayoutFile:
    features: list[dict[str, Any]]
    description: str = ""
    level: str = "frame"
    id_keys: tuple[str, ...] = _YT8M_IDS
    label_key: str = "labels"

    def __post_init__(self) -> None:
        check_choice("level", self.level, ("frame", "video"))
        if not self.features:
            raise ConfigError("features must list at least one feature")
        if not self.id_keys:
            raise ConfigError("id_keys must name at least one context key")


def layout_from_dict(data: Any, name: str, source: str) -> Layout:
    """A :class:`Layout` from the YAML mapping of a layout file (module docstring); :class:`ConfigError` naming
    the key on any mistake."""
    parsed = parse_dataclass(_LayoutFile, data, source)
    specs = []
    for i, item in enumerate(parsed.features):
        entry = parse_dataclass(_FeatureEntry, item, source, f"features[{i}]")
        specs.append(FeatureSpec(entry.name, entry.size, entry.encoding, key=entry.key,
                                 min_value=entry.range[0], max_value=entry.range[1], scale=entry.scale,
                                 offset=entry.offset))
    try:
        schema = Schema(tuple(specs), level=parsed.level, id_keys=parsed.id_keys, label_key=parsed.label_key)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    return Layout(name, schema, parsed.description)


def load_layout(path: str | os.PathLike) -> Layout:
    """Read a layout file; its name is the file stem."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise UserError(f"layout file {path!r} does not exist (--layout takes one of {', '.join(LAYOUTS)} "
                        "or a YAML file)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return layout_from_dict(data, os.path.splitext(os.path.basename(path))[0], path)


def resolve_layout(name_or_path: str | Layout | None) -> Layout | None:
    """A built-in layout by name, a YAML layout file by path, or None for None."""
    if name_or_path is None or isinstance(name_or_path, Layout):
        return name_or_path
    if name_or_path in LAYOUTS:
        return LAYOUTS[name_or_path]
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return load_layout(name_or_path)
    raise UserError(f"unknown layout {name_or_path!r}{closest_hint(name_or_path, LAYOUTS)} (built in: "
                    f"{', '.join(LAYOUTS)}; or the path of a .yaml layout file)")


# --- reading records in a layout ---------------------------------------------------------------------------

def apply_layout(found: Schema, layout: Layout | Schema | None) -> Schema:
    """The schema of a record as ``found`` by :func:`~videopool.data.codec.infer_schema` (names = record keys),
    seen through ``layout``: the features the layout names are renamed and carry its quantization range (with the
    size and encoding found, so a misfit is reported as it is); the others keep their keys as names."""
    if layout is None:
        return found
    schema = layout.schema if isinstance(layout, Layout) else layout
    by_key = {spec.record_key: spec for spec in schema.features}
    present = {spec.name: spec for spec in found.features}
    taken = {spec.name for spec in schema.features if spec.record_key in present}  # names the layout gives here
    specs = [FeatureSpec(named.name, present[key].size, present[key].encoding, key=named.record_key,
                         min_value=named.min_value, max_value=named.max_value, scale=named.scale, offset=named.offset)
             for key, named in by_key.items() if key in present]  # in the layout's order
    specs += [spec for spec in found.features if spec.name not in by_key and spec.name not in taken]
    return Schema(tuple(specs), level=found.level, id_keys=schema.id_keys, label_key=schema.label_key,
                  segment_keys=schema.segment_keys)


@dataclass
class Detection:
    """What :func:`detect_layout` found in one record: the ``layout`` (None if none fits), its ``variant``
    (``"2017 id key video_id"``), and the keys the record holds (``keys``: feature name -> ``"1024 bytes"``;
    ``context``: the context keys)."""

    layout: Layout | None
    found: Schema
    variant: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    context: list[str] = field(default_factory=list)


def detect_layout(payload: bytes | memoryview, candidates: dict[str, Layout] | None = None) -> Detection:
    """Which of ``candidates`` (default: the built-in :data:`LAYOUTS`) a record is in: same level, every feature
    under its record key with its size and encoding, and one of its id keys present."""
    found = infer_schema(payload)  # a RecordError for what is no record
    # an Example's features and a SequenceExample's context are both field 1 (a Features message)
    context = list(pb.SequenceExample.FromString(payload).context.feature)
    keys = {spec.name: f"{spec.size} {'bytes' if spec.encoding == 'bytes' else 'floats'}" for spec in found.features}
    detection = Detection(None, found, keys=keys, context=sorted(context))
    present = {spec.name: spec for spec in found.features}
    for layout in (candidates or LAYOUTS).values():
        schema = layout.schema
        if schema.level != found.level:
            continue
        if not all(spec.record_key in present and present[spec.record_key].size == spec.size
                   and present[spec.record_key].encoding == spec.encoding for spec in schema.features):
            continue
        id_key = next((key for key in schema.id_keys if key in context), None)
        if id_key is None:
            continue
        detection.layout = layout
        if id_key != schema.id_keys[0]:
            detection.variant = f"id key {id_key!r}" + (" (2017 data)" if id_key == "video_id" else "")
        break
    return detection


def features_text(features: dict[str, int]) -> str:
    """``rgb:1024,audio:128``: the ``--features`` value for ``{name: size}``."""
    return ",".join(f"{name}:{size}" for name, size in features.items())


def parse_features(text: str) -> dict[str, int]:
    """``"x:12,y:3"`` -> ``{"x": 12, "y": 3}`` (a name may hold ':' — the size is after the last one)."""
    features: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, size = item.rpartition(":")
        if not sep or not name or not size.strip().isdigit() or int(size) < 1:
            raise UserError(f"--features {text!r}: {item!r} is not NAME:SIZE with a positive size "
                            "(e.g. --features rgb:1024,audio:128)")
        if name in features:
            raise UserError(f"--features {text!r}: feature {name!r} is named twice")
        features[name] = int(size)
    if not features:
        raise UserError(f"--features {text!r} names no feature (e.g. --features x:12)")
    return features
