"""One :class:`~videopool.data.video.Video` -> one serialized record (the writer's codec).

Frame level: a ``SequenceExample`` with ``id``/``labels`` (+ segment fields) in the context and
one ``Feature`` per frame in each feature list. Video level: an ``Example`` with the same
context keys and one value list per feature. Float features of byte-encoded specs are
quantized with :func:`~videopool.data.schema.quantize`; uint8 arrays are written as they are.
Map keys are serialized in sorted order, so equal videos give equal bytes.
"""

from __future__ import annotations

import numpy as np

from videopool.data import example_proto as pb
from videopool.data.schema import FeatureSpec, Schema, quantize
from videopool.data.video import Video


def encode_video(video: Video, schema: Schema) -> bytes:
    """Serialize ``video`` as a frame-level ``SequenceExample`` or video-level ``Example``.

    Float features of byte-encoded specs are quantized (:func:`~videopool.data.schema.quantize`);
    uint8 arrays are written as they are. Map keys are emitted sorted (deterministic bytes).
    """
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
    for spec in schema.features:
        matrix = _feature_matrix(video, spec, schema.level)
        if schema.level == "frame":
            frames = message.feature_lists.feature_list[spec.name].feature
            for row in matrix:
                _fill_feature(frames.add(), row, spec)
        else:
            _fill_feature(context[spec.name], matrix[0], spec)
    return message.SerializeToString(deterministic=True)


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
        return np.ascontiguousarray(matrix if matrix.dtype == np.uint8 else quantize(matrix))
    return np.asarray(matrix, dtype=np.float32)


def _fill_feature(feature, row: np.ndarray, spec: FeatureSpec) -> None:
    if spec.encoding == "bytes":
        feature.bytes_list.value.append(row.tobytes())
    else:
        feature.float_list.value.extend(row.tolist())
