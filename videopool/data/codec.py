"""One record <-> one :class:`~videopool.data.video.Video`.

* :func:`decode_record` turns a serialized ``SequenceExample`` (frame level) or ``Example``
  (video level) into a ``Video``. Frame-level records in the usual layout take the zero-copy
  fast path (:mod:`videopool.data.fastpath`); anything else goes through the general protobuf
  parse, which also produces every error message.
* :func:`encode_video` (in :mod:`videopool.data.encode`, re-exported here) is the inverse.
* :func:`infer_schema` reads a schema off one record, for readers given none.

Errors are :class:`~videopool.data.errors.RecordError` without a location; the caller, who
knows the file, index and offset, fills it in with ``error.located(...)``.
"""

from __future__ import annotations

import struct
from operator import attrgetter, itemgetter

import numpy as np
from google.protobuf.message import DecodeError

from videopool.data import example_proto as pb
from videopool.data.encode import encode_video  # re-exported: the record codec in one place
from videopool.data.errors import RecordError
from videopool.data.fastpath import split_sequence_example, strided_frames
from videopool.data.schema import FeatureSpec, Schema
from videopool.data.video import SegmentAnnotations, Video

__all__ = ["decode_record", "encode_video", "infer_schema"]

_PRESET_ORDER = ("rgb", "audio", "mean_rgb", "mean_audio")
FRAMES_IN_RECORD = "frames_in_record"  # Video.extra key: the frames of a video cut at max_frames
_BYTES_VALUES = attrgetter("bytes_list.value")
_FIRST = itemgetter(0)


def decode_record(payload: bytes | memoryview, schema: Schema, *, dequantize: bool = True,
                  num_classes: int | None = None, max_frames: int | None = None,
                  fast: bool = True) -> Video:
    """Decode one record payload into a :class:`Video`.

    Args:
        payload: the serialized message (a TFRecord payload).
        schema: which features to read and how they are encoded.
        dequantize: byte-encoded features become float32 via :func:`~videopool.data.schema.dequantize`;
            with ``False`` they stay uint8 ``[T, D]`` (float-encoded features are float32 either way).
        num_classes: if given, a label id outside ``[0, num_classes)`` is an error.
        max_frames: keep only the first ``max_frames`` frames (as the TF readers do with 300).
        fast: allow the zero-copy fast path (``False`` forces the general parse; for tests).

    Raises:
        RecordError: the payload is not the expected message, a feature is missing, has the
            wrong size or no frames, the feature lists disagree on the frame count, or a label
            is out of range.
    """
    if schema.level == "frame":
        video = _decode_frame_level(payload, schema, dequantize, max_frames, fast)
    else:
        video = _decode_video_level(payload, schema, dequantize)
    if num_classes is not None:
        _check_label_range(video, num_classes)
    return video


# Frame level -------------------------------------------------------------------------------

def _decode_frame_level(payload, schema: Schema, dequantize: bool, max_frames: int | None, fast: bool) -> Video:
    buf = memoryview(payload)
    if fast:
        split = split_sequence_example(buf)
        if split is not None:
            context_bytes, lists = split
            views = _strided_views(buf, lists, schema)
            if views is not None and _other_lists_valid(buf, lists, schema):
                context = _parse(pb.Features, context_bytes, "the context of a SequenceExample")
                video_id, labels, segments = _read_context(context.feature, schema)
                extra: dict = {}
                features = _finish_frames(schema, views, dequantize, max_frames, extra)
                return Video(video_id, labels, features, segments, extra)
    return _decode_frame_level_general(buf, schema, dequantize, max_frames)


def _strided_views(buf: memoryview, lists: dict[str, tuple[int, int]], schema: Schema) -> list[np.ndarray] | None:
    """The zero-copy ``[T, D]`` view of each schema feature, or ``None`` if any list is not in the
    plain layout (the general parse then decides, and explains any error)."""
    views = []
    for spec in schema.features:
        span = lists.get(spec.record_key)
        view = None if span is None else strided_frames(buf, span, spec.size, spec.encoding)
        if view is None:
            return None
        views.append(view)
    return views


def _other_lists_valid(buf: memoryview, lists: dict[str, tuple[int, int]], schema: Schema) -> bool:
    """Whether the feature lists the schema does not read are valid ``FeatureList`` messages.

    The fast path reads only the schema's lists; the others are parsed here so that the fast
    path accepts exactly the records the general parse accepts."""
    wanted = {spec.record_key for spec in schema.features}
    for name, (start, end) in lists.items():
        if name not in wanted:
            try:
                pb.FeatureList.FromString(buf[start:end])
            except _PARSE_ERRORS:
                return False
    return True


def _decode_frame_level_general(buf, schema: Schema, dequantize: bool, max_frames: int | None) -> Video:
    message = _parse(pb.SequenceExample, buf, "a tf.train.SequenceExample (frame-level record)")
    lists = message.feature_lists.feature_list
    if not lists:
        hint = ""
        if any(spec.record_key in message.context.feature for spec in schema.features) or any(
                f.WhichOneof("kind") == "float_list" for f in message.context.feature.values()):
            hint = "; it looks like a video-level tf.train.Example: read it with a video-level schema"
        raise RecordError(f"record has no feature lists{hint}", kind="missing_feature")
    matrices = []
    for spec in schema.features:
        if spec.record_key not in lists:
            raise RecordError(f"feature list {spec.record_key!r} is missing (the record has: "
                              f"{', '.join(sorted(lists)) or 'none'})", kind="missing_feature")
        matrices.append(_frames_from_protobuf(lists[spec.record_key].feature, spec))
    video_id, labels, segments = _read_context(message.context.feature, schema)
    extra: dict = {}
    return Video(video_id, labels, _finish_frames(schema, matrices, dequantize, max_frames, extra), segments, extra)


def _frames_from_protobuf(frames, spec: FeatureSpec, video_level: bool = False) -> np.ndarray:
    """The ``[T, D]`` matrix of a sequence of ``Feature`` messages, or a RecordError naming the frame."""
    if spec.encoding == "bytes" and len(frames):
        # Common case in bulk, with C-level map() passes; any irregular frame falls through to
        # the per-frame checks below. (A frame of another kind has an empty bytes_list.)
        lists = list(map(_BYTES_VALUES, frames))
        if set(map(len, lists)) == {1}:
            strings = list(map(_FIRST, lists))
            if set(map(len, strings)) == {spec.size}:
                return np.frombuffer(b"".join(strings), dtype=np.uint8).reshape(len(strings), spec.size)
    return _frames_checked(frames, spec, video_level)


def _frames_checked(frames, spec: FeatureSpec, video_level: bool) -> np.ndarray:
    expected_kind = "bytes_list" if spec.encoding == "bytes" else "float_list"
    rows = []
    for t, frame in enumerate(frames):
        where = f"feature {spec.name!r}" if video_level else f"frame {t} of {spec.name!r}"
        kind = frame.WhichOneof("kind")
        if kind != expected_kind:
            raise RecordError(f"{where} is a {kind or 'empty Feature'}, the schema expects "
                              f"{expected_kind} (FeatureSpec encoding {spec.encoding!r})", kind="feature_size")
        if spec.encoding == "bytes":
            values = frame.bytes_list.value
            data = values[0] if len(values) == 1 else b"".join(values)
            count = len(data)
        else:
            data = frame.float_list.value
            count = len(data)
        if count != spec.size:
            unit = "bytes" if spec.encoding == "bytes" else "floats"
            raise RecordError(f"{where} has {count} {unit}, expected {spec.size}",
                              kind="feature_size")
        rows.append(data)
    if spec.encoding == "bytes":
        return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), spec.size)
    return np.array(rows, dtype=np.float32).reshape(len(rows), spec.size)


def _finish_frames(schema: Schema, matrices: list[np.ndarray], dequantize: bool,
                   max_frames: int | None, extra: dict | None = None) -> dict[str, np.ndarray]:
    """Check frame counts, truncate, and turn views into owned float32 / uint8 arrays. A video cut at
    ``max_frames`` records its full length in ``extra[FRAMES_IN_RECORD]``, so the cut can be reported."""
    counts = [m.shape[0] for m in matrices]
    for spec, count in zip(schema.features, counts):
        if count == 0:
            raise RecordError(f"feature list {spec.name!r} has zero frames", kind="no_frames")
    if len(set(counts)) > 1:
        detail = ", ".join(f"{spec.name}={count}" for spec, count in zip(schema.features, counts))
        raise RecordError(f"feature lists have different frame counts ({detail})", kind="frame_count")
    if extra is not None and max_frames is not None and counts[0] > max_frames:
        extra[FRAMES_IN_RECORD] = counts[0]
    features = {}
    for spec, matrix in zip(schema.features, matrices):
        if max_frames is not None:
            matrix = matrix[:max_frames]
        if spec.encoding == "float":
            features[spec.name] = np.array(matrix, dtype=np.float32)
        elif dequantize or not spec.default_range:  # the batch decoder knows only [-2, 2]: others decode here
            features[spec.name] = spec.dequantize(matrix)
        else:
            features[spec.name] = np.array(matrix)  # own the bytes: do not pin the read buffer
    return features


# Video level -------------------------------------------------------------------------------

def _decode_video_level(payload, schema: Schema, dequantize: bool) -> Video:
    message = _parse(pb.Example, payload, "a tf.train.Example (video-level record)")
    fmap = message.features.feature
    features = {}
    for spec in schema.features:
        if spec.record_key not in fmap:
            hint = ""
            try:
                if pb.SequenceExample.FromString(payload).feature_lists.feature_list:
                    hint = "; the record has feature lists, so it is a frame-level SequenceExample"
            except _PARSE_ERRORS:
                pass  # field 2 is not a valid FeatureLists: no hint
            raise RecordError(f"feature {spec.record_key!r} is missing (the record has: "
                              f"{', '.join(sorted(fmap)) or 'none'}){hint}", kind="missing_feature")
        matrix = _frames_from_protobuf([fmap[spec.record_key]], spec, video_level=True)
        if spec.encoding == "bytes" and (dequantize or not spec.default_range):
            matrix = spec.dequantize(matrix)
        features[spec.name] = matrix
    video_id, labels, segments = _read_context(fmap, schema)
    return Video(video_id, labels, features, segments)


# Context: id, labels, segments -----------------------------------------------------------

def _read_context(fmap, schema: Schema) -> tuple[str, list[int], SegmentAnnotations | None]:
    for key in schema.id_keys:
        if key in fmap:
            values = _values(fmap[key], "bytes_list", key)
            if len(values) != 1:
                raise RecordError(f"video id {key!r} must hold one string, found {len(values)}",
                                  kind="feature_size")
            video_id = values[0].decode("utf-8", errors="backslashreplace")
            break
    else:
        raise RecordError(f"no video id: none of the context keys {', '.join(map(repr, schema.id_keys))} is "
                          f"present (the record has: {', '.join(sorted(fmap)) or 'none'})", kind="missing_feature")
    labels = list(_values(fmap[schema.label_key], "int64_list", schema.label_key)) if schema.label_key in fmap else []
    segments = None
    label_key, start_key, score_key, end_key = schema.segment_keys
    if label_key in fmap:
        seg_labels = np.array(_values(fmap[label_key], "int64_list", label_key), dtype=np.int64)
        for key in (start_key, score_key):
            if key not in fmap:
                raise RecordError(f"{label_key!r} is present but {key!r} is missing", kind="missing_feature")
        starts = np.array(_values(fmap[start_key], "int64_list", start_key), dtype=np.int64)
        scores = np.array(_values(fmap[score_key], "float_list", score_key), dtype=np.float32)
        ends = None
        if end_key in fmap:
            ends = np.array(_values(fmap[end_key], "int64_list", end_key), dtype=np.int64)
        lengths = {label_key: len(seg_labels), start_key: len(starts), score_key: len(scores)}
        if ends is not None:
            lengths[end_key] = len(ends)
        if len(set(lengths.values())) > 1:
            raise RecordError(f"segment fields have different lengths ({lengths})", kind="feature_size")
        segments = SegmentAnnotations(seg_labels, starts, scores, ends)
    return video_id, labels, segments


def _values(feature, expected_kind: str, key: str):
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    if kind != expected_kind:
        raise RecordError(f"context feature {key!r} is a {kind}, expected {expected_kind}", kind="feature_size")
    return getattr(feature, kind).value


def _check_label_range(video: Video, num_classes: int) -> None:
    bad = [label for label in video.labels if not 0 <= label < num_classes]
    if video.segments is not None:
        bad += [int(label) for label in video.segments.labels if not 0 <= label < num_classes]
    if bad:
        raise RecordError(f"video {video.id!r}: label id(s) {bad[:5]} outside [0, {num_classes})",
                          kind="label_range")


# What protobuf raises on bad bytes: DecodeError from upb and cpp; the pure-Python backend also
# raises UnicodeDecodeError (invalid UTF-8 in a string field, map keys included) and, on some
# malformed inputs, the low-level errors of its decoder.
_PARSE_ERRORS = (DecodeError, UnicodeDecodeError, ValueError, IndexError, KeyError, TypeError, struct.error,
                 OverflowError, RecursionError)


def _parse(message_class, payload, what: str):
    try:
        return message_class.FromString(payload)
    except _PARSE_ERRORS as err:
        raise RecordError(f"payload is not {what}: {err}", kind="not_a_record") from None


# Schema inference ------------------------------------------------------------------------

def infer_schema(payload: bytes | memoryview, id_keys: tuple[str, ...] = ("id", "video_id"),
                 label_key: str = "labels") -> Schema:
    """Guess the schema of a dataset from one record.

    A record with feature lists is frame level: every bytes_list / float_list feature list
    becomes a feature, its size read from the first frame. Otherwise it is video level: every
    float_list context feature (and every bytes_list other than the id) becomes a feature.
    The YT8M names come first in their usual order (rgb, audio), then the rest sorted.
    """
    message = _parse(pb.SequenceExample, payload, "a tf.train.SequenceExample or tf.train.Example")
    lists = message.feature_lists.feature_list
    specs = []
    if lists:
        level = "frame"
        for name in _ordered(lists):
            frames = lists[name].feature
            if len(frames):
                spec = _spec_from_feature(name, frames[0])
                if spec is not None:
                    specs.append(spec)
    else:
        level = "video"
        skip = set(id_keys) | {label_key} | set(Schema.__dataclass_fields__["segment_keys"].default)
        fmap = message.context.feature
        for name in _ordered(key for key in fmap if key not in skip):
            spec = _spec_from_feature(name, fmap[name])
            if spec is not None:
                specs.append(spec)
    if not specs:
        raise RecordError(f"cannot infer a schema: the first record has no {level}-level bytes or float "
                          "features; pass an explicit Schema", kind="missing_feature")
    return Schema(features=tuple(specs), level=level, id_keys=tuple(id_keys), label_key=label_key)


def _ordered(names) -> list[str]:
    names = list(names)
    return [n for n in _PRESET_ORDER if n in names] + sorted(n for n in names if n not in _PRESET_ORDER)


def _spec_from_feature(name: str, feature) -> FeatureSpec | None:
    kind = feature.WhichOneof("kind")
    if kind == "bytes_list":
        size = sum(len(value) for value in feature.bytes_list.value)
        return FeatureSpec(name, size, "bytes") if size else None
    if kind == "float_list":
        size = len(feature.float_list.value)
        return FeatureSpec(name, size, "float") if size else None
    return None  # int64 lists (timestamps, counts) are not frame features
