"""Fuzz the TFRecord framing and the record decoder with mutated valid records.

    python -m videopool.data.fuzz --inputs 1000000 [--seed 0] [--corpus 'tests/fixtures/*.tfrecord']
    python -m videopool.data.fuzz --seed 0 --replay 12345        # one input again, with its bytes and traceback

Valid records are made with the package's own encoder (:func:`~videopool.data.encode_video`, small and
YouTube-8M-sized, frame and video level, with segments, float frames, the 2017 ``video_id`` key) and
framed with :class:`~videopool.data.TFRecordWriter`. Input ``i`` of seed ``S`` is drawn from its own
generator (``random.Random(f"{S}:{i}")``), so any input can be replayed alone. Each input is one of

* a **payload**: a record's protobuf message parsed into its wire tree (every field's tag, length and
  value, by the ``tf.train.Example`` types) and re-serialized with one to three structural mutations —
  a field deleted (missing keys) or duplicated (duplicated keys), a wrong wire type, a wrong declared
  length, a huge declared length (2^31 .. 2^64-1, or just past the bytes left) inside an otherwise
  consistent message, a varint padded to 2..10 bytes (valid), to 11+ bytes (invalid) or with bits above
  64, a map key renamed / emptied / made invalid UTF-8, packed values set to extremes, a value's bytes
  shortened or lengthened, a sub-message swapped in from another record — and/or byte-level damage:
  truncation, bit flips, inserted, deleted or overwritten bytes. It is decoded by
  :func:`~videopool.data.codec.decode_record` on the fast path and on the general protobuf parse (with
  the record's schema, another record's schema, or one inferred from the bytes);
* a **file** of one to four records (some mutated) whose framing is damaged: truncated, bits flipped in a
  length, a CRC or a payload, a huge length with a *valid* length CRC (so the reader trusts it), bytes
  inserted or removed. It is read by ``read_records`` from the memory map and by block reads (and, for
  some inputs, through a pipe), by ``index_records`` and ``read_record_at``, and by ``iter_videos`` in
  both error modes.

Outcomes: **parsed**, or a :class:`~videopool.data.RecordError` (counted by kind). Everything else is a
**bug**, printed with the command that replays it: any other exception; a ``RecordError`` with a kind
outside :data:`~videopool.data.errors.KINDS`, or, from a file, without its path, record index and byte
offset; the fast path and the general parse disagreeing (one parses, the other fails, or they decode
different videos); the memory-mapped, block and pipe readers, ``index_records`` / ``read_record_at``
and the two error modes disagreeing; an input taking more than ``--time-limit`` seconds of CPU time (a hang); a
``MemoryError`` under the address-space ceiling (``--memory-limit-mb`` above the start-up size, set
with ``RLIMIT_AS``: a decoder that allocates a declared size before checking it against the bytes left
hits it), or the peak resident memory jumping by more than ``--rss-jump-mb`` on one input. The command
prints the counts and the peak RSS and exits 1 if there was a bug.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from videopool.data.codec import decode_record, encode_video, infer_schema
from videopool.data.errors import KINDS, ErrorPolicy, RecordError
from videopool.data.io import iter_videos
from videopool.data.schema import FeatureSpec, Schema
from videopool.data.tfrecord import (TFRecordWriter, index_records, masked_crc32c, read_record_at,
                                     read_records)
from videopool.data.video import SegmentAnnotations, Video

__all__ = ["FuzzReport", "main", "make_seeds", "run_fuzz"]

# -- the wire tree of a tf.train.(Sequence)Example ----------------------------------------------

# message type -> {field number: child type}; child types that are not message types are leaves.
_TYPES = {
    "SequenceExample": {1: "Features", 2: "FeatureLists"},  # Example's field 1 is Features too
    "Features": {1: "FeaturesEntry"},
    "FeaturesEntry": {1: "string", 2: "Feature"},
    "FeatureLists": {1: "FeatureListsEntry"},
    "FeatureListsEntry": {1: "string", 2: "FeatureList"},
    "FeatureList": {1: "Feature"},
    "Feature": {1: "BytesList", 2: "FloatList", 3: "Int64List"},
    "BytesList": {1: "bytes"},
    "FloatList": {1: "packed_fixed32"},
    "Int64List": {1: "packed_varint"},
}
_HUGE_LENGTHS = (2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 7, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1)
_EXTREME_VARINTS = (0, 1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1)
_EXTREME_FLOATS = (float("nan"), float("inf"), float("-inf"), 1e38, -0.0, 3.4e38)
_BAD_KEYS = (b"", b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"r\x00gb", b"rgb\xe2",
             b"audio", b"rgb", b"id", b"video_id", b"labels", b"segment_labels", b"mean_rgb", b"x" * 300)


def _varint(value: int, size: int = 0) -> bytes:
    """``value`` (< 2**70) as a varint of at least ``size`` bytes (padding with 0x80 continuation bytes)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value or len(out) + 1 < size:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


@dataclass(eq=False)
class _Field:
    """One field of a parsed message: ``value`` is a list of fields (a sub-message), bytes (a length-
    delimited leaf, or the raw 4/8 bytes of wire types 5/1) or an int (wire type 0)."""

    number: int
    wire: int
    value: object
    kind: str  # "message", "string", "bytes", "packed_varint", "packed_fixed32", "varint", "fixed"


def _parse_tree(data: bytes, message_type: str) -> list[_Field]:
    """Parse valid wire-format ``data`` of ``message_type`` (unknown fields kept as leaves)."""
    fields, pos, end = [], 0, len(data)
    children = _TYPES.get(message_type, {})
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            fields.append(_Field(number, wire, value, "varint"))
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            fields.append(_Field(number, wire, data[pos:pos + size], "fixed"))
            pos += size
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            body = data[pos:pos + length]
            if len(body) != length:
                raise ValueError("truncated")
            pos += length
            child = children.get(number, "bytes")
            if child in _TYPES:
                fields.append(_Field(number, wire, _parse_tree(body, child), "message"))
            else:
                fields.append(_Field(number, wire, body, child if child in (
                    "string", "packed_varint", "packed_fixed32") else "bytes"))
        else:
            raise ValueError(f"wire type {wire} in a seed record")
    return fields


def _all_fields(fields: list[_Field], out: list[tuple[_Field, list[_Field]]]) -> list:
    """Every (field, parent list) of a tree, depth first."""
    for item in fields:
        out.append((item, fields))
        if item.kind == "message":
            _all_fields(item.value, out)
    return out


def _serialize(fields: list[_Field], plan: dict) -> bytes:
    """Wire bytes of a tree, applying ``plan`` {id(field): [(action, argument), ...]}."""
    out = bytearray()
    for item in fields:
        actions = plan.get(id(item), ())
        copies = 1
        wire, tag_size, length, length_size, value_size = item.wire, 0, None, 0, 0
        body = None
        for action, arg in actions:
            if action == "delete":
                copies = 0
            elif action == "duplicate":
                copies = 2
            elif action == "wire":
                wire = arg
            elif action == "pad_tag":
                tag_size = arg
            elif action == "length":
                length = arg
            elif action == "pad_length":
                length_size = arg
            elif action == "pad_value":
                value_size = arg
            elif action == "body":
                body = arg
        if copies == 0:
            continue
        if item.kind == "varint":
            encoded = _varint(item.value if body is None else body, value_size)
        elif item.kind == "fixed":
            encoded = item.value if body is None else body
        else:
            if body is None:
                body = _serialize(item.value, plan) if item.kind == "message" else item.value
            declared = len(body) if length is None else length
            encoded = _varint(declared, length_size) + body
        one = _varint(item.number << 3 | wire, tag_size) + encoded
        out += one * copies
    return bytes(out)


def _mutate_tree(tree: list[_Field], rng: random.Random, other_trees: list[list[_Field]], plan: dict,
                 counts: Counter) -> None:
    """Add one structural mutation of a random field to ``plan`` (one of those that apply to it)."""
    item, parent = rng.choice(_all_fields(tree, []))
    actions = plan.setdefault(id(item), [])
    delimited = item.wire == 2
    leaf = isinstance(item.value, bytes) and delimited
    choices = [("delete field (missing key)", 3), ("duplicate field (duplicated key)", 3),
               ("wrong wire type", 3), ("padded varint (<= 10 bytes)", 1), ("varint over 10 bytes", 2),
               ("field transplanted from another record", 1), ("field repeated many times", 0.1)]
    if delimited:
        choices += [("wrong declared length", 3), ("huge declared length", 4)]
    if item.kind == "varint":
        choices.append(("varint over 64 bits / extreme value", 2))
    if item.kind == "string":
        choices.append(("map key renamed / invalid UTF-8", 3))
    if item.kind in ("packed_varint", "packed_fixed32"):
        choices.append(("packed values extreme / misaligned", 3))
    if leaf:
        choices.append(("value shortened / lengthened", 2))
    if item.kind == "message":
        choices.append(("sub-message replaced by random bytes", 1))
    name = rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
    counts[name] += 1
    if name == "delete field (missing key)":
        actions.append(("delete", None))
    elif name == "duplicate field (duplicated key)":
        actions.append(("duplicate", None))
    elif name == "field repeated many times":
        # once per input, and at most ~1 MB of copies: the decoder's time must stay linear, the harness's too
        if "_repeated" not in plan:
            plan["_repeated"] = True
            size = max(1, len(_serialize([item], plan)))  # 0 when an earlier mutation deleted it
            _insert(plan, parent, _index_of(parent, item) + 1, [item] * min(rng.choice((100, 1000, 3000)),
                                                                            max(1, (1 << 20) // size)))
    elif name == "wrong wire type":
        actions.append(("wire", rng.choice([w for w in range(8) if w != item.wire])))
    elif name == "wrong declared length":
        size = len(item.value) if leaf else len(_serialize(item.value, plan))
        actions.append(("length", max(0, size + rng.choice((-3, -2, -1, 1, 2, 3, 64, 1000)))))
    elif name == "huge declared length":
        if rng.random() < 0.7:
            actions.append(("length", rng.choice(_HUGE_LENGTHS)))
        else:  # just past what is left of the message (and of the whole payload)
            actions.append(("length", rng.choice((1 << 20, 1 << 24, 1 << 28)) + rng.randrange(64)))
        if rng.random() < 0.2:
            actions.append(("pad_length", 10))
    elif name in ("padded varint (<= 10 bytes)", "varint over 10 bytes"):
        size = rng.choice((2, 3, 5, 6, 9, 10)) if name.startswith("padded") else rng.choice((11, 12, 16, 40))
        targets = ["pad_tag"] + (["pad_length"] if delimited else []) + (["pad_value"] if item.kind == "varint" else [])
        actions.append((rng.choice(targets), size))
    elif name == "varint over 64 bits / extreme value":
        actions.append(("body", rng.choice(_EXTREME_VARINTS) | rng.choice((0, 1 << 64, 1 << 69))))
    elif name == "map key renamed / invalid UTF-8":
        actions.append(("body", rng.choice(_BAD_KEYS)))
    elif name == "packed values extreme / misaligned":
        count = rng.randrange(0, 6)
        if item.kind == "packed_varint":
            body = b"".join(_varint(rng.choice(_EXTREME_VARINTS), rng.choice((0, 0, 10, 11))) for _ in range(count))
            if rng.random() < 0.2:
                body += b"\x80" * rng.randrange(1, 12)  # a varint cut short / too long at the end
        else:
            body = struct.pack(f"<{count}f", *(rng.choice(_EXTREME_FLOATS) for _ in range(count)))
            body += bytes(rng.randrange(0, 4)) if rng.random() < 0.3 else b""  # not a multiple of 4
        actions.append(("body", body))
    elif name == "value shortened / lengthened":
        data = item.value
        if rng.random() < 0.5 and data:
            data = data[:rng.randrange(len(data))]
        else:
            data = data + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        actions.append(("body", data))
    elif name == "sub-message replaced by random bytes":
        actions.append(("body", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 24)))))
    else:
        donor = rng.choice([other for other in other_trees if other is not tree] or other_trees)
        donor_item = copy.deepcopy(rng.choice(_all_fields(donor, []))[0])  # a copy: never a cycle
        _insert(plan, parent, _index_of(parent, item) + 1, [donor_item])


def _index_of(items: list, item) -> int:
    return next(index for index, candidate in enumerate(items) if candidate is item)


def _insert(plan: dict, parent: list, index: int, items: list) -> None:
    """Insert fields into a (shared) tree; :func:`_undo_inserts` takes them out again."""
    parent[index:index] = items
    plan.setdefault("_inserted", []).append((parent, index, len(items)))


def _undo_inserts(plan: dict) -> None:
    for parent, index, count in reversed(plan.get("_inserted", [])):
        del parent[index:index + count]


def _mutate_bytes(data: bytes, rng: random.Random, counts: Counter) -> bytes:
    """One byte-level mutation."""
    data = bytearray(data)
    choice = rng.random()
    if choice < 0.3 or not data:
        cut = rng.randrange(len(data) + 1)
        counts["truncation"] += 1
        return bytes(data[:cut])
    if choice < 0.65:
        for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
            bit = rng.randrange(8 * len(data))
            data[bit >> 3] ^= 1 << (bit & 7)
        counts["bit flips"] += 1
    elif choice < 0.8:
        pos = rng.randrange(len(data) + 1)
        data[pos:pos] = bytes(rng.choice((0x00, 0x80, 0xFF, 0x0A, 0x12, rng.randrange(256)))
                              for _ in range(rng.randrange(1, 12)))
        counts["bytes inserted"] += 1
    elif choice < 0.9:
        pos = rng.randrange(len(data))
        del data[pos:pos + rng.randrange(1, 16)]
        counts["bytes deleted"] += 1
    else:
        pos = rng.randrange(len(data))
        data[pos:pos + 10] = rng.choice((b"\xff" * 10, b"\x80" * 10, b"\xff" * 9 + b"\x01", b"\x00" * 10))
        counts["bytes overwritten"] += 1
    return bytes(data)


# -- seeds ---------------------------------------------------------------------------------------

@dataclass
class _Seed:
    name: str
    payload: bytes
    schema: Schema
    tree: list[_Field] = field(default_factory=list)


def make_seeds(corpus: list[str] = ()) -> list[_Seed]:
    """The valid records mutated by the fuzzer (deterministic), plus every record of the ``corpus`` files."""
    rng = np.random.default_rng(0)
    small = Schema((FeatureSpec("rgb", 16), FeatureSpec("audio", 4)))
    legacy = Schema((FeatureSpec("rgb", 16), FeatureSpec("audio", 4)), id_keys=("video_id", "id"))
    floats = Schema((FeatureSpec("rgb", 4, "float"), FeatureSpec("audio", 2, "float")))
    video_small = Schema((FeatureSpec("mean_rgb", 8, "float"), FeatureSpec("mean_audio", 4, "float")), level="video")

    def frames(t, schema):
        out = {}
        for spec in schema.features:
            if spec.encoding == "bytes":
                out[spec.name] = rng.integers(0, 256, (t, spec.size), dtype=np.uint8)
            else:
                out[spec.name] = rng.standard_normal((t, spec.size)).astype(np.float32)
        return out

    segments = SegmentAnnotations(np.array([3, 7]), np.array([0, 5]), np.array([1.0, 0.0], np.float32),
                                  np.array([5, 10]))
    cases = [
        ("small-3-frames", Video("vid-1", [1, 5], frames(3, small)), small),
        ("small-1-frame-unlabelled", Video("v", [], frames(1, small)), small),
        ("small-video_id-key", Video("legacy", [2], frames(2, legacy)), legacy),
        ("small-segments", Video("seg", [3, 7], frames(4, small), segments), small),
        ("rgb-only", Video("rgb", [0], {"rgb": frames(2, small)["rgb"]}), small.select("rgb")),
        ("float-frames", Video("float", [4, 4, 9], frames(2, floats)), floats),
        ("video-level-small", Video("vl", [1], frames(1, video_small)), video_small),
        ("yt8m-frame-2-frames", Video("yt8m", [10, 3861], frames(2, Schema.yt8m_frame())), Schema.yt8m_frame()),
        ("yt8m-video-level", Video("yt8mv", [0], frames(1, Schema.yt8m_video())), Schema.yt8m_video()),
    ]
    seeds = [_Seed(name, encode_video(video, schema), schema) for name, video, schema in cases]
    for pattern in corpus:  # the readable records of these files (corrupt ones are skipped)
        for path in sorted(glob.glob(pattern)):
            for record in read_records(path, errors=ErrorPolicy("skip")):
                payload = bytes(record.payload)
                try:
                    schema = infer_schema(payload)
                except RecordError:
                    continue
                seeds.append(_Seed(f"{os.path.basename(path)}#{record.index}", payload, schema))
    for seed in seeds:
        seed.tree = _parse_tree(seed.payload, "SequenceExample")
        if _serialize(seed.tree, {}) != seed.payload:  # not canonical: mutate the bytes only
            seed.tree = []
    return seeds


# -- oracles -------------------------------------------------------------------------------------

class Bug(Exception):
    """An outcome that is neither a parse nor a documented RecordError."""


class _Hang(BaseException):
    pass


def _outcome(call):
    """("ok", value) or ("error", RecordError); any other exception propagates."""
    try:
        return "ok", call()
    except RecordError as error:
        if error.kind not in KINDS:
            raise Bug(f"RecordError with undocumented kind {error.kind!r}: {error}") from error
        if not error.message or not isinstance(error.message, str):
            raise Bug(f"RecordError without a message: {error!r}") from error
        return "error", error


def _bits(array: np.ndarray) -> bytes:
    """The bytes of ``array`` with every NaN made the canonical NaN (protobuf's pure-Python backend reads
    any NaN as ``math.nan``; a NaN's payload bits carry nothing)."""
    if array.dtype.kind == "f":
        array = np.where(np.isnan(array), np.array(np.nan, dtype=array.dtype), array)
    return array.tobytes()


def _same_video(a: Video, b: Video) -> bool:
    if (a.id, a.labels, list(a.features)) != (b.id, b.labels, list(b.features)):
        return False
    for name in a.features:
        x, y = a.features[name], b.features[name]
        if x.dtype != y.dtype or x.shape != y.shape or _bits(x) != _bits(y):
            return False
    if (a.segments is None) != (b.segments is None):
        return False
    if a.segments is not None:
        for key in ("labels", "start_times", "scores", "end_times"):
            x, y = getattr(a.segments, key), getattr(b.segments, key)
            if (x is None) != (y is None) or (x is not None and _bits(np.asarray(x)) != _bits(np.asarray(y))):
                return False
    return True


def _check_payload(payload: bytes, schema: Schema, rng: random.Random, counts: Counter) -> None:
    options = {"dequantize": rng.random() < 0.5,
               "num_classes": rng.choice((None, None, 8, 4000)),
               "max_frames": rng.choice((None, None, None, 1, 2))}
    fast = _outcome(lambda: decode_record(memoryview(payload), schema, fast=True, **options))
    general = _outcome(lambda: decode_record(payload, schema, fast=False, **options))
    if fast[0] != general[0]:
        detail = fast[1] if fast[0] == "error" else general[1]
        raise Bug(f"fast path {'parses' if fast[0] == 'ok' else 'fails'} but the general parse "
                  f"{'parses' if general[0] == 'ok' else 'fails'} ({detail})")
    if fast[0] == "ok":
        if not _same_video(fast[1], general[1]):
            raise Bug("the fast path and the general parse decode different videos")
        counts["payload: parsed"] += 1
    else:
        if fast[1].kind != general[1].kind:
            raise Bug(f"fast path fails with {fast[1].kind!r}, general parse with {general[1].kind!r}: "
                      f"{fast[1]} / {general[1]}")
        counts[f"payload: RecordError {fast[1].kind}"] += 1


def _frame(payloads: list[bytes], path: str) -> bytes:
    """The bytes of a TFRecord file of ``payloads``, written by the package's writer."""
    with TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    with open(path, "rb") as file:
        return file.read()


def _record_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos + 12 <= len(data):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return starts


def _mutate_file(data: bytes, rng: random.Random, counts: Counter) -> bytes:
    data = bytearray(data)
    starts = _record_starts(bytes(data)) or [0]
    start = rng.choice(starts)
    choice = rng.random()
    if choice < 0.2:
        counts["file: truncated"] += 1
        return bytes(data[:rng.randrange(len(data) + 1)])
    if choice < 0.45 and start + 12 <= len(data):
        if rng.random() < 0.7:
            length = rng.choice(_HUGE_LENGTHS + (len(data) - start - 15, len(data) - start - 16 + rng.randrange(1, 9)))
        else:
            length = max(0, struct.unpack_from("<Q", data, start)[0] + rng.choice((-5, -1, 1, 5, 4096)))
        packed = struct.pack("<Q", length % 2**64)
        data[start:start + 8] = packed
        if rng.random() < 0.8:  # a valid length CRC: the reader has to trust the length
            data[start + 8:start + 12] = struct.pack("<I", masked_crc32c(packed))
        counts["file: length changed (huge / off by some), CRC fixed"] += 1
    elif choice < 0.7:
        where = rng.choice(("length", "length_crc", "payload", "payload_crc", "any"))
        if where == "length":
            pos = start + rng.randrange(8)
        elif where == "length_crc":
            pos = start + 8 + rng.randrange(4)
        else:
            pos = rng.randrange(len(data)) if data else 0
        if pos < len(data):
            data[pos] ^= 1 << rng.randrange(8)
        counts["file: bit flip"] += 1
    elif choice < 0.85:
        pos = rng.randrange(len(data) + 1)
        data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        counts["file: bytes inserted"] += 1
    else:
        if data:
            pos = rng.randrange(len(data))
            del data[pos:pos + rng.randrange(1, 20)]
        counts["file: bytes deleted"] += 1
    return bytes(data)


def _framing_outcome(path: str, verify: bool, use_mmap: bool):
    """(records [(index, offset, payload)], errors [(kind, index, offset)]) reading in skip mode."""
    policy = ErrorPolicy("skip", max_examples=1 << 30)
    records = [(record.index, record.offset, bytes(record.payload))
               for record in read_records(path, verify_crc=verify, errors=policy, use_mmap=use_mmap)]
    return records, [_located(error, path) for error in policy.examples]


def _located(error: RecordError, path: str) -> tuple:
    if error.kind not in KINDS:
        raise Bug(f"RecordError with undocumented kind {error.kind!r}: {error}")
    if error.path != path or error.index is None or error.offset is None:
        raise Bug(f"RecordError without its location (path {error.path!r}, index {error.index}, "
                  f"offset {error.offset}): {error}")
    if f"record {error.index}, byte offset {error.offset}" not in str(error) or path not in str(error):
        raise Bug(f"RecordError message does not name the file, record and offset: {error}")
    return error.kind, error.index, error.offset


def _pipe_outcome(data: bytes, verify: bool, label: str):
    """Read ``data`` through a pipe (a path that cannot be memory-mapped or sized)."""
    read_fd, write_fd = os.pipe()
    path = f"/proc/self/fd/{read_fd}"

    def feed():
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        except BrokenPipeError:  # the reader stopped early (a framing error) and closed its end
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        policy = ErrorPolicy("skip", max_examples=1 << 30)
        records = [(r.index, r.offset, bytes(r.payload)) for r in read_records(path, verify_crc=verify, errors=policy)]
        errors = []
        for error in policy.examples:
            if error.path != path or error.index is None or error.offset is None or error.kind not in KINDS:
                raise Bug(f"{label}: pipe read: RecordError without its location: {error}")
            errors.append((error.kind, error.index, error.offset))
        return records, errors
    finally:
        os.close(read_fd)  # unblocks the feeder if the reader stopped early
        feeder.join()


def _check_file(data: bytes, path: str, schema: Schema, rng: random.Random, counts: Counter, pipe: bool) -> None:
    with open(path, "wb") as out:
        out.write(data)
    verify = rng.random() < 0.8
    mapped = _framing_outcome(path, verify, True)
    blocks = _framing_outcome(path, verify, False)
    if mapped != blocks:
        raise Bug(f"memory-mapped and block reads differ: errors {mapped[1]} vs {blocks[1]}, "
                  f"{len(mapped[0])} vs {len(blocks[0])} records")
    if pipe:
        piped = _pipe_outcome(data, verify, "pipe")
        if piped != mapped:
            raise Bug(f"pipe and memory-mapped reads differ: errors {piped[1]} vs {mapped[1]}, "
                      f"{len(piped[0])} vs {len(mapped[0])} records")
        counts["file: read through a pipe"] += 1
    records, errors = mapped
    for kind, _, _ in errors:
        counts[f"file: RecordError {kind}"] += 1
    # error mode: the same records up to the first error, then that error
    got = []
    try:
        for record in read_records(path, verify_crc=verify):
            got.append((record.index, record.offset, bytes(record.payload)))
        first = None
    except RecordError as error:
        first = _located(error, path)
    expected_first = errors[0] if errors else None
    if first != expected_first or got != [r for r in records if not errors or r[1] < errors[0][2]]:
        raise Bug(f"error mode and skip mode disagree: first error {first} vs {expected_first}")
    # index_records: the framing errors (not payload CRCs) and every record's offset
    framing_errors = [e for e in errors if e[0] != "payload_crc"]
    try:
        offsets = index_records(path, verify_crc=verify).tolist()
        index_error = None
    except RecordError as error:
        offsets, index_error = None, _located(error, path)
    expected_offsets = sorted([r[1] for r in records] + [e[2] for e in errors if e[0] == "payload_crc"])
    if framing_errors:
        if index_error != framing_errors[0]:
            raise Bug(f"index_records raises {index_error}, the reader reports {framing_errors[0]}")
    elif index_error is not None or offsets != expected_offsets:
        raise Bug(f"index_records gives {index_error or offsets}, the reader found records at {expected_offsets}")
    by_offset = {r[1]: r[2] for r in records}
    with open(path, "rb") as file:
        for offset in (offsets or [])[:4]:
            state, value = _outcome(lambda: read_record_at(file, offset, verify_crc=verify))
            if (state == "ok") != (offset in by_offset) or (state == "ok" and value != by_offset[offset]):
                raise Bug(f"read_record_at({offset}) gives {value!r:.80} unlike the sequential reader")
    # decoding through iter_videos, in both modes
    policy = ErrorPolicy("skip", max_examples=1 << 30)
    videos = sum(1 for _ in iter_videos(path, schema=schema if rng.random() < 0.8 else None, verify_crc=verify,
                                        errors=policy, num_classes=rng.choice((None, 4000))))
    for error in policy.examples:
        _located(error, path)
    decode_errors = policy.count - len(errors)
    if videos + decode_errors != len(records):
        raise Bug(f"iter_videos yields {videos} videos and {decode_errors} decode errors for {len(records)} records")
    try:
        for _ in iter_videos(path, schema=schema, verify_crc=verify):
            pass
    except RecordError as error:
        _located(error, path)
    counts["file: videos decoded"] += videos


# -- the run -------------------------------------------------------------------------------------

@dataclass
class FuzzReport:
    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    mutations: Counter = field(default_factory=Counter)
    bugs: list = field(default_factory=list)  # (input index, category, message)
    seconds: float = 0.0
    slowest: tuple = (0.0, -1)
    start_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    memory_limit_mb: float | None = None
    protobuf: str = ""


def _api_type() -> str:
    """The protobuf backend in use: "upb", "cpp" or "python"."""
    from google.protobuf.internal import api_implementation

    return api_implementation.Type()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _address_space_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _one_input(index: int, seed: int, seeds: list[_Seed], workdir: str, counts: Counter,
               dump: bool = False) -> None:
    rng = random.Random(f"{seed}:{index}")
    trees = [s.tree for s in seeds if s.tree]

    def mutated_payload(chosen: _Seed) -> bytes:
        payload = chosen.payload
        if chosen.tree and rng.random() < 0.75:
            plan: dict = {}
            try:
                for _ in range(rng.choice((1, 1, 1, 2, 3))):
                    _mutate_tree(chosen.tree, rng, trees, plan, counts)
                payload = _serialize(chosen.tree, plan)
            finally:
                _undo_inserts(plan)
            if rng.random() < 0.25:
                payload = _mutate_bytes(payload, rng, counts)
        else:
            for _ in range(rng.choice((1, 1, 2, 4))):
                payload = _mutate_bytes(payload, rng, counts)
        return payload

    chosen = rng.choice(seeds)
    if rng.random() < 0.85:
        payload = mutated_payload(chosen)
        if rng.random() < 0.1:
            schema = rng.choice(seeds).schema  # another record's schema (other level, sizes, names)
        elif rng.random() < 0.1:
            state, schema = _outcome(lambda: infer_schema(payload))
            if state == "error":
                counts[f"payload: RecordError {schema.kind} (infer_schema)"] += 1
                return
        else:
            schema = chosen.schema
        if dump:
            print(f"payload ({len(payload)} bytes), schema {schema}:\n{payload.hex()}")
        _check_payload(payload, schema, rng, counts)
    else:
        same_schema = [s for s in seeds if s.schema == chosen.schema]
        payloads = [rng.choice(same_schema).payload for _ in range(rng.randrange(1, 5))]
        if rng.random() < 0.3:
            payloads[rng.randrange(len(payloads))] = mutated_payload(chosen)
        path = os.path.join(workdir, f"input-{index}.tfrecord")
        try:
            data = _frame(payloads, path)
            for _ in range(rng.choice((1, 1, 2))):
                data = _mutate_file(data, rng, counts)
            if dump:
                print(f"file ({len(data)} bytes), schema {chosen.schema}:\n{data.hex()}")
            _check_file(data, path, chosen.schema, rng, counts, pipe=rng.random() < 0.03)
        finally:
            os.unlink(path)


def run_fuzz(inputs: int, seed: int = 0, *, corpus: list[str] = (), time_limit: float = 5.0,
             memory_limit_mb: float | None = 256.0, rss_jump_mb: float = 64.0, max_bugs_printed: int = 20,
             progress: bool = False, start: int = 0, warm_up: int = 50) -> FuzzReport:
    """Run ``inputs`` fuzz inputs (indices ``start ..``) and return the counts; prints each bug.

    ``memory_limit_mb`` sets ``RLIMIT_AS`` to the current address space plus this much for the
    run (restored afterwards); ``None`` leaves the limit alone.
    """
    report = FuzzReport(protobuf=_api_type())
    seeds = make_seeds(list(corpus))
    workdir = tempfile.mkdtemp(prefix="videopool-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    old_handler = signal.getsignal(signal.SIGPROF)

    def on_alarm(signum, frame):
        raise _Hang()

    # The limit is CPU time of this process (ITIMER_PROF), not wall time: a busy machine is not a hang.
    signal.signal(signal.SIGPROF, on_alarm)
    # Warm up every code path once before measuring the starting RSS and setting the ceiling.
    for index in range(start, start + min(inputs, warm_up)):
        try:
            _one_input(index, seed, seeds, workdir, Counter())
        except Exception:
            pass
    report.start_rss_mb = _peak_rss_mb()
    if memory_limit_mb is not None:
        ceiling = int((_address_space_mb() + memory_limit_mb) * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (min(ceiling, old_limit[1]) if old_limit[1] > 0 else ceiling,
                                                old_limit[1]))
        report.memory_limit_mb = ceiling / 2**20
    begin = time.perf_counter()
    rss = _peak_rss_mb()
    try:
        for index in range(start, start + inputs):
            category = None
            t0 = time.process_time()
            signal.setitimer(signal.ITIMER_PROF, time_limit)
            try:
                _one_input(index, seed, seeds, workdir, report.mutations)
            except _Hang:
                category, message = "hang", f"took more than {time_limit} s of CPU time"
            except Bug as bug:
                category, message = "wrong outcome", str(bug)
            except MemoryError as error:
                category, message = "over-allocation", f"MemoryError under the {memory_limit_mb} MiB ceiling: {error!r}"
            except Exception as error:  # noqa: BLE001 - anything else is what the fuzzer looks for
                category, message = "crash", f"{type(error).__name__}: {error}"
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            elapsed = time.process_time() - t0
            if elapsed > report.slowest[0]:
                report.slowest = (elapsed, index)
            now = _peak_rss_mb()
            if category is None and now - rss > rss_jump_mb:
                category, message = "over-allocation", f"peak RSS grew by {now - rss:.0f} MiB on one input"
            rss = now
            report.inputs += 1
            if category is not None:
                report.bugs.append((index, category, message))
                report.outcomes[f"BUG: {category}"] += 1
                if len(report.bugs) <= max_bugs_printed:
                    print(f"BUG input {index}: {category}: {message}\n    reproduce: python -m videopool.data.fuzz "
                          f"--seed {seed} --replay {index}" + "".join(f" --corpus '{c}'" for c in corpus), flush=True)
            if progress and report.inputs % max(1000, inputs // 10) == 0:
                print(f"  {report.inputs:,} inputs, {time.perf_counter() - begin:.0f} s, peak RSS {now:.0f} MiB, "
                      f"address space {_address_space_mb():.0f} MiB, bugs {len(report.bugs)}", flush=True)
    finally:
        signal.signal(signal.SIGPROF, old_handler)
        if memory_limit_mb is not None:
            resource.setrlimit(resource.RLIMIT_AS, old_limit)
        shutil.rmtree(workdir, ignore_errors=True)
    report.seconds = time.perf_counter() - begin
    report.peak_rss_mb = _peak_rss_mb()
    for key in list(report.mutations):  # outcome counters were collected with the mutations
        if key.startswith(("payload:", "file:")) and ("RecordError" in key or "parsed" in key
                                                      or "decoded" in key or "pipe" in key):
            report.outcomes[key] = report.mutations.pop(key)
    return report


def format_report(report: FuzzReport, seed: int) -> str:
    lines = [f"videopool.data.fuzz: {report.inputs:,} inputs (seed {seed}) in {report.seconds:.1f} s "
             f"({report.inputs / max(report.seconds, 1e-9):,.0f}/s), protobuf backend {report.protobuf}",
             f"peak RSS {report.peak_rss_mb:.0f} MiB (after warm-up {report.start_rss_mb:.0f} MiB; "
             f"address-space ceiling {report.memory_limit_mb:.0f} MiB)" if report.memory_limit_mb else
             f"peak RSS {report.peak_rss_mb:.0f} MiB (after warm-up {report.start_rss_mb:.0f} MiB; no ceiling)",
             f"slowest input {report.slowest[1]}: {report.slowest[0] * 1e3:.1f} ms of CPU time", "outcomes:"]
    lines += [f"  {count:>10,}  {name}" for name, count in sorted(report.outcomes.items())]
    lines.append("mutations applied:")
    lines += [f"  {count:>10,}  {name}" for name, count in sorted(report.mutations.items())]
    lines.append(f"bugs: {len(report.bugs)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videopool.data.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs to try (default 100,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="index of the first input")
    parser.add_argument("--replay", type=int, default=None, metavar="INDEX",
                        help="run input INDEX alone, printing its bytes and the traceback")
    parser.add_argument("--corpus", action="append", default=[], metavar="GLOB",
                        help="TFRecord files whose records are mutated too (repeatable)")
    parser.add_argument("--time-limit", type=float, default=5.0,
                        help="CPU seconds per input before it is a hang (default 5)")
    parser.add_argument("--memory-limit-mb", type=float, default=256.0,
                        help="address space allowed above the start-up size (RLIMIT_AS; 0 = no limit)")
    parser.add_argument("--rss-jump-mb", type=float, default=64.0)
    parser.add_argument("--protobuf", choices=("upb", "python", "cpp"), default=None,
                        help="protobuf backend to run under (re-executes with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION)")
    args = parser.parse_args(argv)
    from google.protobuf.internal import api_implementation

    if args.protobuf and api_implementation.Type() != args.protobuf:
        if os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION") == args.protobuf:
            parser.error(f"protobuf backend {args.protobuf!r} is not available (got {api_implementation.Type()!r})")
        os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = args.protobuf
        os.execv(sys.executable, [sys.executable, "-m", "videopool.data.fuzz"] + list(argv if argv is not None
                                                                                      else sys.argv[1:]))
    if args.replay is not None:
        seeds = make_seeds(args.corpus)
        counts: Counter = Counter()
        workdir = tempfile.mkdtemp(prefix="videopool-fuzz-")
        try:
            _one_input(args.replay, args.seed, seeds, workdir, counts, dump=True)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return 1
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"input {args.replay}: no bug; {dict(counts)}")
        return 0
    report = run_fuzz(args.inputs, args.seed, corpus=args.corpus, time_limit=args.time_limit,
                      memory_limit_mb=args.memory_limit_mb or None, rss_jump_mb=args.rss_jump_mb,
                      progress=True, start=args.start)
    print(format_report(report, args.seed))
    return 1 if report.bugs else 0


if __name__ == "__main__":
    sys.exit(main())
