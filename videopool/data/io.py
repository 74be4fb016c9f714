"""Read and write YouTube-8M shards: the public entry points of :mod:`videopool.data`.

    >>> for video in iter_videos("data/train*.tfrecord", num_classes=3862):
    ...     video.id, video.labels, video.features["rgb"].shape      # float32 [T, 1024]

    >>> write_videos("mine.tfrecord", videos, schema=Schema.yt8m_frame())
"""

from __future__ import annotations

import glob
import os
from typing import Iterable, Iterator

from videopool.data.codec import decode_record, encode_video, infer_schema
from videopool.data.errors import ErrorPolicy, RecordError
from videopool.data.remote import expand_url, is_url, local_path
from videopool.data.schema import Schema
from videopool.data.tfrecord import TFRecordWriter, read_records
from videopool.data.video import Video

__all__ = ["iter_videos", "write_videos", "decode_record", "expand_paths", "infer_schema"]

_GLOB_CHARS = set("*?[")


def expand_paths(paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Expand glob patterns (each sorted) and directories (their ``*.tfrecord`` files, sorted).

    An fsspec URL (``gs://bucket/train*.tfrecord``, ``memory://...``) is listed through fsspec
    (:func:`videopool.data.remote.expand_url`); ``file://`` URLs are read as local paths.
    Raises ``FileNotFoundError`` naming the first pattern, directory or path that matches nothing.
    """
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    files: list[str] = []
    for item in paths_or_globs:
        item = local_path(item)
        if is_url(item):
            files.extend(expand_url(item))
        elif _GLOB_CHARS & set(item):
            matches = sorted(path for path in glob.glob(item) if os.path.isfile(path))
            if not matches:
                raise FileNotFoundError(f"no files match the pattern {item!r}")
            files.extend(matches)
        elif os.path.isdir(item):
            matches = sorted(glob.glob(os.path.join(item, "*.tfrecord")))
            if not matches:
                raise FileNotFoundError(f"directory {item!r} contains no *.tfrecord files")
            files.extend(matches)
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise FileNotFoundError(f"no such file: {item!r}")
    if not files:
        raise FileNotFoundError("no input files given")
    return files


def iter_videos(paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike], *, schema: Schema | None = None,
                verify_crc: bool = True, on_error: str = "error", dequantize: bool = True,
                num_classes: int | None = None, max_frames: int | None = None,
                errors: ErrorPolicy | None = None) -> Iterator[Video]:
    """Iterate over the videos of one or more TFRecord shards, in file order.

    Args:
        paths_or_globs: files, directories or glob patterns (each expanded and sorted).
        schema: the record layout; ``None`` infers it from the first record (frame level
            ``SequenceExample`` vs video level ``Example``, feature names and sizes).
        verify_crc: check the TFRecord CRCs (cheap with the native CRC-32C; keep it on).
        on_error: ``"error"`` raises :class:`RecordError` on the first bad record;
            ``"skip"`` skips bad records and warns once at the end with their count.
        dequantize: byte features as float32 (``True``) or raw uint8 codes (``False``).
        num_classes: reject label ids outside ``[0, num_classes)``.
        max_frames: keep at most this many leading frames per video.
        errors: an :class:`ErrorPolicy` to use instead of ``on_error`` (the caller then reads
            its counters and warns itself).
    """
    files = expand_paths(paths_or_globs)
    policy = errors if errors is not None else ErrorPolicy(on_error)
    for path in files:
        for record in read_records(path, verify_crc=verify_crc, errors=policy):
            try:
                if schema is None:
                    schema = infer_schema(record.payload)
                video = decode_record(record.payload, schema, dequantize=dequantize,
                                      num_classes=num_classes, max_frames=max_frames)
            except RecordError as error:
                policy.handle(error.located(path, record.index, record.offset))
                continue
            yield video
    if errors is None:
        policy.warn_summary()


def default_schema_for(video: Video) -> Schema:
    """The YT8M schema matching a video's feature names (video level for ``mean_*``)."""
    names = set(video.features)
    if names and names <= {"mean_rgb", "mean_audio"}:
        return Schema.yt8m_video(rgb="mean_rgb" in names, audio="mean_audio" in names)
    if names and names <= {"rgb", "audio"}:
        return Schema.yt8m_frame(rgb="rgb" in names, audio="audio" in names)
    raise ValueError(f"video {video.id!r} has features {sorted(names)}, which are not the YouTube-8M ones; "
                     "pass schema=Schema(features=(FeatureSpec(name, size, encoding), ...), level=...)")


def write_videos(path: str | os.PathLike, videos: Iterable[Video], *, schema: Schema | None = None) -> int:
    """Write videos to one TFRecord file; returns the number written.

    Frame-level schemas write ``SequenceExample`` records (one Feature per frame), video-level
    schemas ``Example`` records. Float features of byte-encoded specs are quantized; segment
    annotations are written when a video has them. ``schema=None`` picks the YT8M schema from
    the first video's feature names (``rgb``/``audio`` or ``mean_rgb``/``mean_audio``).
    """
    with TFRecordWriter(path) as writer:
        for video in videos:
            if schema is None:
                schema = default_schema_for(video)
            writer.write(encode_video(video, schema))
        return writer.num_records
