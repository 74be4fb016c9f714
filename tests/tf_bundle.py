"""A minimal writer of TensorFlow's V2 checkpoint format (tensor bundle), for tests only.

Written from the format's description (LevelDB table blocks with prefix-compressed keys and restart points, block
trailers with the masked CRC32C, the 48-byte footer; ``BundleHeaderProto`` under the empty key and one
``BundleEntryProto`` per tensor), so that the reader can be tested on bundles TensorFlow's Saver would not write
here: several blocks and shards, big-endian data, and the unsupported cases (snappy blocks, string dtypes,
partitioned variables).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from videopool.data.tf_checkpoint import TABLE_MAGIC, BundleEntryProto, BundleHeaderProto, masked_crc32c

TF_DTYPES = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "int64": 9, "bool": 10,
             "uint16": 17, "float16": 19, "uint32": 22, "uint64": 23}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]], restart_every: int = 2) -> bytes:
    """A table block: prefix-compressed keys (a full key at every restart point), restart offsets, their count."""
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    for offset in restarts:
        out += struct.pack("<I", offset)
    return bytes(out + struct.pack("<I", len(restarts)))


def _with_trailer(block: bytes, kind: int = 0) -> bytes:
    return block + bytes([kind]) + struct.pack("<I", masked_crc32c(block + bytes([kind])))


def write_bundle(prefix: str, tensors: dict[str, np.ndarray], *, num_shards: int = 1, entries_per_block: int = 3,
                 big_endian: bool = False, overrides: dict[str, dict] | None = None, compression: int = 0) -> None:
    """Write ``tensors`` as a TF V2 bundle at ``prefix`` (tensor i in shard i % num_shards). ``overrides``: fields
    to set on a tensor's BundleEntryProto after it is filled in (dtype, slices, ...)."""
    shards = [bytearray() for _ in range(num_shards)]
    items = []
    for i, name in enumerate(sorted(tensors)):
        array = np.array(tensors[name], order="C")  # ascontiguousarray would make a scalar 1-d
        data = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
        shard = shards[i % num_shards]
        entry = BundleEntryProto(dtype=TF_DTYPES[array.dtype.name], shard_id=i % num_shards, offset=len(shard),
                                 size=len(data), crc32c=masked_crc32c(data))
        for size in array.shape:
            entry.shape.dim.add(size=size)
        for field, value in (overrides or {}).get(name, {}).items():
            if field == "slices":
                entry.slices.add().extent.add(start=0, length=1)
            else:
                setattr(entry, field, value)
        shard += data
        items.append((name.encode(), entry.SerializeToString()))
    header = BundleHeaderProto(num_shards=num_shards, endianness=1 if big_endian else 0)
    header.version.producer = 1
    items.insert(0, (b"", header.SerializeToString()))
    out, index = bytearray(), []
    for start in range(0, len(items), entries_per_block):
        chunk = items[start:start + entries_per_block]
        block = _block(chunk)
        index.append((chunk[-1][0], _varint(len(out)) + _varint(len(block))))
        out += _with_trailer(block, compression)
    meta = _block([])
    meta_handle = _varint(len(out)) + _varint(len(meta))
    out += _with_trailer(meta)
    index_block = _block(index)
    index_handle = _varint(len(out)) + _varint(len(index_block))
    out += _with_trailer(index_block)
    footer = meta_handle + index_handle
    out += footer + bytes(40 - len(footer)) + struct.pack("<Q", TABLE_MAGIC)
    Path(prefix + ".index").write_bytes(bytes(out))
    for number, data in enumerate(shards):
        Path(f"{prefix}.data-{number:05d}-of-{num_shards:05d}").write_bytes(bytes(data))
