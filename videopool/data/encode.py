"""One :class:`~videopool.data.video.Video` -> one serialized record (the writer's codec).

Frame level: a ``SequenceExample`` with ``id``/``labels`` (+ segment fields) in the context and
one ``Feature`` per frame in each feature list. Video level: an ``Example`` with the same
context keys and one value list per feature. Float features of byte-encoded specs are
quantized with :func:`~videopool.data.schema.quantize`; uint8 arrays are written as they are.
Map keys are serialized in sorted order, so equal videos give equal bytes.

The writer refuses what the reader refuses (:mod:`videopool.data.codec`): a frame-level video without
frames, feature lists with different frame counts, labels (or segment labels) that are not integers >= 0,
and segment fields of different lengths, so a file written here never holds a record that reads back as
a bad record. ``validate=False`` writes such records anyway (to make bad data for tests).
"""

from __future__ import annotations

import numpy as np

from videopool.data import example_proto as pb
from videopool.data.schema import FeatureSpec, Schema
from videopool.data.video import Video


def encode_video(video: Video, schema: Schema, *, validate: bool = True) -> bytes:
    """Serialize ``video`` as a frame-level ``SequenceExample`` or video-level ``Example``.

    Float features of byte-encoded specs are quantized (:func:`~videopool.data.schema.quantize`);
    uint8 arrays are written as they are. Map keys are emitted sorted (deterministic bytes).

    Raises:
        ValueError: a feature is missing or has the wrong shape; or (unless ``validate=False``) the video
            is one the reader would refuse: zero frames, different frame counts between feature lists,
            a label that is not an integer >= 0, segment fields of different lengths.
    """
    matrices = [_feature_matrix(video, spec, schema.level) for spec in schema.features]
    if validate:
        _check_writable(video, schema, matrices)
    if schema.level == "frame":
        message = pb.SequenceExample()
        context = message.context.feature
    else:
        message = pb.Example()
        context = message.features.feature
    context[schema.id_keys[0]].bytes_list.value.append(str(video.id).encode("utf-8"))
    context[schema.label_key].int64_list.value.extend(int(label) for label in video.labels)
    if video.segments is not None:
        seg = video.segments
        label_key, start_key, score_key, end_key = schema.segment_keys
        context[label_key].int64_list.value.extend(np.asarray(seg.labels).tolist())
        context[start_key].int64_list.value.extend(np.asarray(seg.start_times).tolist())
        context[score_key].float_list.value.extend(np.asarray(seg.scores, dtype=np.float32).tolist())
        if seg.end_times is not None:
            context[end_key].int64_list.value.extend(np.asarray(seg.end_times).tolist())
    for spec, matrix in zip(schema.features, matrices):
        if schema.level == "frame":
            frames = message.feature_lists.feature_list[spec.record_key].feature
            for row in matrix:
                _fill_feature(frames.add(), row, spec)
        else:
            _fill_feature(context[spec.record_key], matrix[0], spec)
    return message.SerializeToString(deterministic=True)


def _check_writable(video: Video, schema: Schema, matrices: list[np.ndarray]) -> None:
    """Refuse what :func:`~videopool.data.codec.decode_record` would refuse to read back."""
    if schema.level == "frame":
        counts = {spec.name: int(matrix.shape[0]) for spec, matrix in zip(schema.features, matrices)}
        empty = [name for name, count in counts.items() if count == 0]
        if empty:
            raise ValueError(f"video {video.id!r}: feature {empty[0]!r} has zero frames; a frame-level video "
                             "needs at least one frame (the reader refuses it as 'no_frames')")
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{name}={count}" for name, count in counts.items())
            raise ValueError(f"video {video.id!r}: feature lists have different frame counts ({detail}); "
                             "every modality needs one row per frame")
    _check_label_values(video.id, "labels", video.labels)
    if video.segments is not None:
        seg = video.segments
        _check_label_values(video.id, "segment labels", np.asarray(seg.labels).ravel())
        lengths = {"labels": len(seg.labels), "start_times": len(seg.start_times), "scores": len(seg.scores)}
        if seg.end_times is not None:
            lengths["end_times"] = len(seg.end_times)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"video {video.id!r}: segment fields have different lengths ({lengths})")


def _check_label_values(video_id: str, what: str, labels) -> None:
    for label in labels:
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or label < 0:
            shown = label.item() if isinstance(label, np.generic) else label
            raise ValueError(f"video {video_id!r}: {what} must be integers >= 0, got {shown!r} "
                             f"({type(label).__name__})")


def _feature_matrix(video: Video, spec: FeatureSpec, level: str) -> np.ndarray:
    if spec.name not in video.features:
        raise ValueError(f"video {video.id!r} has no feature {spec.name!r} (it has: "
                         f"{', '.join(video.features) or 'none'})")
    matrix = np.asarray(video.features[spec.name])
    if matrix.ndim == 1 and level == "video":
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != spec.size or (level == "video" and matrix.shape[0] != 1):
        expected = "[1, %d] or [%d]" % (spec.size, spec.size) if level == "video" else f"[num_frames, {spec.size}]"
        raise ValueError(f"video {video.id!r}: feature {spec.name!r} has shape {matrix.shape}, expected {expected}")
    if spec.encoding == "bytes":
        return np.ascontiguousarray(matrix if matrix.dtype == np.uint8 else spec.quantize(matrix))
    return np.asarray(matrix, dtype=np.float32)


def _fill_feature(feature, row: np.ndarray, spec: FeatureSpec) -> None:
    if spec.encoding == "bytes":
        feature.bytes_list.value.append(row.tobytes())
    else:
        feature.float_list.value.extend(row.tolist())
