"""Shards with one bad record of every kind the reader skips, for the bad-data tests (docs/reliability.md §2).

:func:`write_damaged_shard` writes good videos with, between them, a record that is not a protobuf, a video
without frames, a frame of the wrong size, a label out of range, a payload whose CRC fails, and a truncated
record at the end of the file: ``len(BAD_KINDS)`` bad records, returned with their index and byte offset.
"""

from __future__ import annotations

import os

import numpy as np

from videopool.data import Video
from videopool.data.codec import encode_video
from videopool.data.schema import YT8M_FRAME, FeatureSpec, Schema
from videopool.data.tfrecord import TFRecordWriter

# In file order: after good video 0, 1, 2, 3, 4 and at the very end.
BAD_KINDS = ("not_a_record", "no_frames", "feature_size", "label_range", "payload_crc", "truncated")


def _bad_payload(kind: str, video: Video, num_classes: int) -> bytes:
    if kind == "not_a_record":
        return b"\xff\xff\xff\xff this is not a protobuf"
    if kind == "no_frames":
        empty = Video(f"{video.id}-empty", video.labels, {name: value[:0] for name, value in video.features.items()})
        return encode_video(empty, YT8M_FRAME, validate=False)
    if kind == "feature_size":
        narrow = Video(f"{video.id}-narrow", video.labels, {"rgb": video.features["rgb"][:, :1000],
                                                            "audio": video.features["audio"]})
        return encode_video(narrow, Schema((FeatureSpec("rgb", 1000), FeatureSpec("audio", 128))))
    if kind == "label_range":
        return encode_video(Video(f"{video.id}-label", [num_classes + 3], video.features), YT8M_FRAME)
    if kind == "payload_crc":  # a good record whose payload is damaged after writing
        return encode_video(Video(f"{video.id}-crc", video.labels, video.features), YT8M_FRAME)
    raise ValueError(kind)


def write_damaged_shard(path, videos: list[Video], num_classes: int) -> list[tuple[int, int, str]]:
    """Write ``videos`` (at least 5) to ``path`` with the bad records of :data:`BAD_KINDS` among them;
    returns ``[(record index, byte offset, kind)]`` of the bad records in file order."""
    assert len(videos) >= 5
    payloads, bad = [], []
    for i, video in enumerate(videos):
        payloads.append(encode_video(video, YT8M_FRAME))
        if i < 5:
            bad.append((len(payloads), BAD_KINDS[i]))
            payloads.append(_bad_payload(BAD_KINDS[i], video, num_classes))
    offsets = np.cumsum([0] + [16 + len(p) for p in payloads]).tolist()
    with TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    located = [(index, offsets[index], kind) for index, kind in bad]
    with open(path, "r+b") as f:
        crc_index = next(index for index, kind in bad if kind == "payload_crc")
        f.seek(offsets[crc_index] + 12 + 40)  # a byte inside the payload
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
        f.seek(0, os.SEEK_END)
        f.write(open(path, "rb").read(20))  # the start of a record, and then the file ends
    located.append((len(payloads), offsets[-1], "truncated"))
    return located
