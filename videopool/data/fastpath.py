"""Structure-aware, zero-copy decoding of the usual frame-level record layout.

A YouTube-8M frame-level ``SequenceExample`` stores each frame of a feature list as::

    0x0A len(Feature) | 0x0A len(BytesList) | 0x0A D | <D bytes>        (bytes_list, one string)
    0x0A len(Feature) | 0x12 len(FloatList) | 0x0A 4D | <4D bytes>      (float_list, packed)

so with a fixed ``D`` every frame starts with the same few header bytes and the frames sit
at a constant stride. Instead of building one protobuf object per frame, this module walks
only the two outer message levels, checks that the feature list is exactly ``T`` copies of
``header + data`` (every header compared, the length an exact multiple of the stride), and
returns the ``[T, D]`` matrix as a strided numpy view over the payload.

Every function returns ``None`` as soon as anything differs from that layout (other wire
types, repeated or unknown fields, several strings per frame, unpacked floats, another size);
the caller then uses the general protobuf parse, so an unusual but valid record is never
misread. Checking every header against the expected bytes is what makes the view exact: the
sequential protobuf parse of such a region visits precisely these frame boundaries.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_TAG_FIELD1_LEN = 0x0A  # field 1, wire type 2 (length-delimited)
_TAG_FIELD2_LEN = 0x12  # field 2, wire type 2


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_MAX_LENGTH_BYTES = 5  # a length is a 32-bit varint: upb rejects longer encodings (even zero-padded ones)
_MAX_LENGTH = 2**31 - 1  # protobuf's limit on one message or field


def _read_length(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode the length varint at ``pos``; returns (value, next position), or (-1, pos) if it is
    malformed, longer than 5 bytes or over 2**31 - 1.

    Stricter than protobuf never misreads a record: anything refused here goes to the general
    parse, which decides. At most 5 bytes are read whatever the input, so a run of continuation
    bytes costs nothing, and the value is compared with the bytes left by the caller before
    any use."""
    value = 0
    limit = min(end, pos + _MAX_LENGTH_BYTES)
    shift = 0
    while pos < limit:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value, pos) if value <= _MAX_LENGTH else (-1, pos)
        shift += 7
    return -1, pos


@lru_cache(maxsize=64)
def frame_header(size: int, encoding: str) -> tuple[bytes, int]:
    """The bytes that precede each frame's data, and the frame's data length in bytes."""
    if encoding == "bytes":
        nbytes = size
        inner = bytes([_TAG_FIELD1_LEN]) + _varint_bytes(nbytes)  # BytesList.value[0]
        kind_tag = _TAG_FIELD1_LEN  # Feature.bytes_list
    else:
        nbytes = 4 * size
        inner = bytes([_TAG_FIELD1_LEN]) + _varint_bytes(nbytes)  # packed FloatList.value
        kind_tag = _TAG_FIELD2_LEN  # Feature.float_list
    kind = bytes([kind_tag]) + _varint_bytes(len(inner) + nbytes) + inner
    header = bytes([_TAG_FIELD1_LEN]) + _varint_bytes(len(kind) + nbytes) + kind  # FeatureList.feature[t]
    return header, nbytes


def split_sequence_example(buf: memoryview) -> tuple[memoryview, dict[str, tuple[int, int]]] | None:
    """Locate the context and each feature list of a serialized ``SequenceExample``.

    Returns (context bytes, {feature list name: (start, end) of its FeatureList body}),
    or ``None`` if the record is not in the plain layout (each field at most once, known
    fields only, well-formed lengths).
    """
    end = len(buf)
    pos = 0
    context = None
    lists_span = None
    while pos < end:
        tag = buf[pos]
        length, pos = _read_length(buf, pos + 1, end)
        if length < 0 or pos + length > end:
            return None
        if tag == _TAG_FIELD1_LEN and context is None:
            context = buf[pos:pos + length]
        elif tag == _TAG_FIELD2_LEN and lists_span is None:
            lists_span = (pos, pos + length)
        else:
            return None
        pos += length
    if context is None or lists_span is None:
        return None
    lists: dict[str, tuple[int, int]] = {}
    pos, lists_end = lists_span
    while pos < lists_end:  # map<string, FeatureList> entries
        if buf[pos] != _TAG_FIELD1_LEN:
            return None
        length, pos = _read_length(buf, pos + 1, lists_end)
        if length < 0 or pos + length > lists_end:
            return None
        entry = _parse_map_entry(buf, pos, pos + length)
        if entry is None or entry[0] in lists:
            return None
        lists[entry[0]] = entry[1]
        pos += length
    return context, lists


def _parse_map_entry(buf: memoryview, pos: int, end: int) -> tuple[str, tuple[int, int]] | None:
    key = None
    value = None
    while pos < end:
        tag = buf[pos]
        length, pos = _read_length(buf, pos + 1, end)
        if length < 0 or pos + length > end:
            return None
        if tag == _TAG_FIELD1_LEN and key is None:
            try:
                key = bytes(buf[pos:pos + length]).decode("utf-8")
            except UnicodeDecodeError:
                return None
        elif tag == _TAG_FIELD2_LEN and value is None:
            value = (pos, pos + length)
        else:
            return None
        pos += length
    if key is None or value is None:
        return None
    return key, value


def strided_frames(buf: memoryview, span: tuple[int, int], size: int, encoding: str) -> np.ndarray | None:
    """The ``[T, size]`` frame matrix of one FeatureList body as a zero-copy strided view.

    uint8 for ``encoding="bytes"``, little-endian float32 for ``"float"``; ``None`` unless
    every frame has exactly the expected header and length (or there are no frames).
    """
    header, nbytes = frame_header(size, encoding)
    start, end = span
    stride = len(header) + nbytes
    total = end - start
    if total == 0 or total % stride:
        return None
    num_frames = total // stride
    rows = np.ndarray((num_frames, stride), dtype=np.uint8, buffer=buf, offset=start)
    # All T headers gathered into one bytes object and compared with T copies of the expected
    # header: a single memcmp, several times faster than an elementwise numpy comparison.
    if rows[:, : len(header)].tobytes() != header * num_frames:
        return None
    dtype = np.uint8 if encoding == "bytes" else np.dtype("<f4")
    itemsize = 1 if encoding == "bytes" else 4
    return np.ndarray((num_frames, size), dtype=dtype, buffer=buf, offset=start + len(header),
                      strides=(stride, itemsize))
