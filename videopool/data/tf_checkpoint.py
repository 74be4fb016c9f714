"""TensorFlow V2 checkpoints (the "tensor bundle" that ``tf.train.Saver`` / ``tf.train.Checkpoint`` write), read
without TensorFlow.

A checkpoint with prefix ``P`` is ``P.index`` plus the shards ``P.data-00000-of-0000N``:

* ``P.index`` is a sorted string table in LevelDB's format (TensorFlow's ``core/lib/io/table``): data blocks of
  entries ``varint shared, varint unshared, varint value_size, key suffix, value`` with prefix-compressed keys,
  each block ending in ``uint32`` restart offsets and their count, and followed on disk by a 1-byte compression
  type and the masked CRC32C of block + type byte; an index block whose values are the data blocks' handles; a
  48-byte footer (metaindex and index block handles, zero padding, the magic ``0xdb4775248b80fb57``).
* The entry with the empty key is a ``BundleHeaderProto`` (shard count, byte order, format version); every other
  key is a tensor's name and its value a ``BundleEntryProto``: dtype, shape, shard, byte offset and size in that
  shard, and the masked CRC32C of those bytes.

The two messages (from TensorFlow's public ``tensor_bundle.proto``, ``tensor_shape.proto``,
``tensor_slice.proto``, ``versions.proto``) are rebuilt here as descriptors in a private pool, as
:mod:`videopool.data.example_proto` does for ``Example``. What this reader cannot read exactly it refuses with a
:class:`TFCheckpointError` naming the file (and tensor): compressed blocks (snappy), string / resource / variant
tensors, partitioned (sliced) variables, missing or short shards, a bad magic, any CRC mismatch.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from videopool.core.errors import UserError

__all__ = ["TFCheckpointError", "TFTensorEntry", "TFCheckpoint", "checkpoint_prefix", "masked_crc32c",
           "read_tf_checkpoint"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C
_MASK_DELTA = 0xA282EAD8

# TensorFlow DataType enum values (types.proto) this reader returns, with their little-endian numpy dtype.
# bfloat16 (14) has no numpy dtype: it is widened to float32 exactly (the 16 bits are the high half of a float32).
DTYPES: dict[int, tuple[str, str]] = {
    1: ("float32", "<f4"), 2: ("float64", "<f8"), 3: ("int32", "<i4"), 4: ("uint8", "u1"), 5: ("int16", "<i2"),
    6: ("int8", "i1"), 8: ("complex64", "<c8"), 9: ("int64", "<i8"), 10: ("bool", "?"), 14: ("bfloat16", "<u2"),
    17: ("uint16", "<u2"), 18: ("complex128", "<c16"), 19: ("float16", "<f2"), 22: ("uint32", "<u4"),
    23: ("uint64", "<u8"),
}
UNSUPPORTED_DTYPES = {7: "string", 11: "qint8", 12: "quint8", 13: "qint32", 15: "qint16", 16: "quint16",
                      20: "resource", 21: "variant"}


class TFCheckpointError(UserError):
    """A TF checkpoint that is damaged or uses a feature this reader does not support (the message says which)."""


def masked_crc32c(data) -> int:
    """TensorFlow's (and LevelDB's) masked CRC32C: the CRC rotated right by 15 bits plus a constant, so that a
    CRC stored inside checksummed data does not checksum to a fixed value."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------------- messages

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name: str, number: int, kind: int, *, repeated: bool = False, type_name: str | None = None,
           oneof: int | None = None) -> None:
    f = msg.field.add(name=name, number=number, type=kind, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        f.type_name = f".tensorflow.{type_name}"
    if oneof is not None:
        f.oneof_index = oneof


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="videopool/tensorflow_bundle.proto", package="tensorflow",
                                              syntax="proto3")
    add = file.message_type.add
    version = add(name="VersionDef")
    _field(version, "producer", 1, _F.TYPE_INT32)
    _field(version, "min_consumer", 2, _F.TYPE_INT32)
    _field(version, "bad_consumers", 3, _F.TYPE_INT32, repeated=True)
    shape = add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, _F.TYPE_INT64)
    _field(dim, "name", 2, _F.TYPE_STRING)
    _field(shape, "dim", 2, _F.TYPE_MESSAGE, repeated=True, type_name="TensorShapeProto.Dim")
    _field(shape, "unknown_rank", 3, _F.TYPE_BOOL)
    tensor_slice = add(name="TensorSliceProto")
    extent = tensor_slice.nested_type.add(name="Extent")
    extent.oneof_decl.add(name="has_length")
    _field(extent, "start", 1, _F.TYPE_INT64)
    _field(extent, "length", 2, _F.TYPE_INT64, oneof=0)
    _field(tensor_slice, "extent", 1, _F.TYPE_MESSAGE, repeated=True, type_name="TensorSliceProto.Extent")
    header = add(name="BundleHeaderProto")
    _field(header, "num_shards", 1, _F.TYPE_INT32)
    _field(header, "endianness", 2, _F.TYPE_INT32)  # an enum on the wire: LITTLE = 0, BIG = 1
    _field(header, "version", 3, _F.TYPE_MESSAGE, type_name="VersionDef")
    entry = add(name="BundleEntryProto")
    _field(entry, "dtype", 1, _F.TYPE_INT32)  # DataType enum
    _field(entry, "shape", 2, _F.TYPE_MESSAGE, type_name="TensorShapeProto")
    _field(entry, "shard_id", 3, _F.TYPE_INT32)
    _field(entry, "offset", 4, _F.TYPE_INT64)
    _field(entry, "size", 5, _F.TYPE_INT64)
    _field(entry, "crc32c", 6, _F.TYPE_FIXED32)
    _field(entry, "slices", 7, _F.TYPE_MESSAGE, repeated=True, type_name="TensorSliceProto")
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_build_file())
BundleHeaderProto = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.BundleHeaderProto"))
BundleEntryProto = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.BundleEntryProto"))


# ------------------------------------------------------------------------------------------------- the table

def _varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """``(value, next position)`` of the LEB128 varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError(f"truncated or overlong varint in {what}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """The ``(key, value)`` pairs of one table block (restart array stripped)."""
    if len(block) < 4:
        raise ValueError(f"{what} is shorter than its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    if end < 0:
        raise ValueError(f"{what} claims {num_restarts} restart points, more than fit in its {len(block)} bytes")
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos, what)
        unshared, pos = _varint(block, pos, what)
        value_size, pos = _varint(block, pos, what)
        if shared > len(key) or pos + unshared + value_size > end:
            raise ValueError(f"{what} has an entry that runs past the block (corrupt key or value length)")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_size]))
        pos += value_size
    return entries


def _read_block(data: bytes, handle: bytes, path: str, what: str) -> bytes:
    """The contents of the block that the encoded handle ``handle`` points at, after its CRC check."""
    offset, pos = _varint(handle, 0, f"{path}: {what} handle")
    size, _ = _varint(handle, pos, f"{path}: {what} handle")
    stop = offset + size + BLOCK_TRAILER_SIZE
    if stop > len(data):
        raise TFCheckpointError(f"{path} is truncated: its {what} (bytes {offset}-{stop}) runs past the end of the "
                                f"{len(data)}-byte file; copy the checkpoint again")
    block, kind = data[offset:offset + size], data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if masked_crc32c(data[offset:offset + size + 1]) != stored:
        raise TFCheckpointError(f"{path}: CRC mismatch in its {what} at byte {offset}: the index file is corrupt")
    if kind != 0:
        name = {1: "snappy"}.get(kind, f"type {kind}")
        raise TFCheckpointError(f"{path}: its {what} is {name}-compressed, which this reader does not support "
                                "(TensorFlow writes bundle indexes uncompressed; re-save the checkpoint with "
                                "tf.train.Saver or tf.train.Checkpoint)")
    return block


def _table_entries(path: str) -> list[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of the sorted string table ``path``, in key order."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < FOOTER_SIZE:
        raise TFCheckpointError(f"{path} is truncated: {len(data)} bytes, shorter than the {FOOTER_SIZE}-byte table "
                                "footer; copy the checkpoint again")
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != TABLE_MAGIC:
        raise TFCheckpointError(f"{path} is not a TensorFlow checkpoint index (bad magic {magic:#018x} at its end; a "
                                "truncated copy, or a V1 checkpoint, which this reader does not read)")
    footer = data[len(data) - FOOTER_SIZE:len(data) - 8]
    try:
        _, pos = _varint(footer, 0, "footer")  # metaindex offset and size: TF bundles store no meta blocks
        _, pos = _varint(footer, pos, "footer")
        index = _read_block(data, footer[pos:], path, "index block")
        entries = []
        for _, handle in _block_entries(index, f"{path}: index block"):
            entries.extend(_block_entries(_read_block(data, handle, path, "data block"), f"{path}: data block"))
    except ValueError as err:
        if isinstance(err, TFCheckpointError):
            raise
        raise TFCheckpointError(f"{path} is corrupt: {err}") from None
    return entries


# -------------------------------------------------------------------------------------------- the checkpoint

@dataclass(frozen=True)
class TFTensorEntry:
    """Where one tensor of a bundle lives: ``shard`` is the data file's number, ``offset``/``size`` its bytes."""

    name: str
    dtype: str  # numpy-style name, e.g. "float32"; "bfloat16" is read as float32
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int
    tf_dtype: int


def checkpoint_prefix(path: str) -> str:
    """The bundle prefix ``P`` from ``P`` itself, ``P.index``, a ``P.data-*`` shard, or a directory whose TF
    ``checkpoint`` state file names it (``model_checkpoint_path: "..."``)."""
    text = os.fspath(path)
    if os.path.isdir(text):
        state = os.path.join(text, "checkpoint")
        if not os.path.isfile(state):
            raise TFCheckpointError(f"{text!r} is a directory without a TensorFlow 'checkpoint' state file; give the "
                                    "checkpoint prefix, e.g. DIR/model.ckpt-1000 (the name before .index)")
        with open(state, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model_checkpoint_path":
                    name = value.strip().strip('"')
                    return name if os.path.isabs(name) else os.path.join(text, name)
        raise TFCheckpointError(f"{state} names no model_checkpoint_path; give the checkpoint prefix instead")
    if text.endswith(".index"):
        return text[: -len(".index")]
    head, sep, _ = text.rpartition(".data-")
    return head if sep and not os.path.isfile(text + ".index") else text


class TFCheckpoint:
    """A TF V2 checkpoint opened for reading: ``entries`` (name → :class:`TFTensorEntry`, sorted by name) from the
    index, tensors read on demand from the shards with their CRC checked.

    >>> ckpt = TFCheckpoint("model.ckpt-1000")                         # doctest: +SKIP
    >>> ckpt.entries["hidden1_weights"].shape, ckpt.read("hidden1_weights").dtype   # doctest: +SKIP
    ((278528, 1024), dtype('float32'))
    """

    def __init__(self, path: str) -> None:
        self.prefix = checkpoint_prefix(path)
        self.index_path = self.prefix + ".index"
        if not os.path.isfile(self.index_path):
            raise TFCheckpointError(f"no TensorFlow checkpoint at {path!r}: {self.index_path!r} does not exist (give "
                                    "the prefix, e.g. model.ckpt-1000, whose .index and .data-* files exist)")
        raw = _table_entries(self.index_path)
        if not raw or raw[0][0] != b"":
            raise TFCheckpointError(f"{self.index_path} has no bundle header entry: not a tensor-bundle index")
        header = self._parse(BundleHeaderProto, raw[0][1], "the bundle header")
        if header.endianness not in (0, 1):
            raise TFCheckpointError(f"{self.index_path}: unknown byte order {header.endianness} in the bundle header")
        self.num_shards = max(1, header.num_shards)
        self.big_endian = header.endianness == 1
        self.entries: dict[str, TFTensorEntry] = {}
        for key, value in raw[1:]:
            name = key.decode("utf-8", errors="replace")
            proto = self._parse(BundleEntryProto, value, f"tensor {name!r}")
            if proto.slices:
                raise TFCheckpointError(f"{self.index_path}: tensor {name!r} is a partitioned variable (saved in "
                                        f"{len(proto.slices)} slices), which this reader does not support")
            if proto.shape.unknown_rank or any(d.size < 0 for d in proto.shape.dim):
                raise TFCheckpointError(f"{self.index_path}: tensor {name!r} has an unknown shape")
            if not 0 <= proto.shard_id < self.num_shards:
                raise TFCheckpointError(f"{self.index_path}: tensor {name!r} names shard {proto.shard_id}, but the "
                                        f"bundle has {self.num_shards}")
            dtype = DTYPES.get(proto.dtype, (UNSUPPORTED_DTYPES.get(proto.dtype, f"DataType {proto.dtype}"),))[0]
            self.entries[name] = TFTensorEntry(name, dtype, tuple(int(d.size) for d in proto.shape.dim),
                                               proto.shard_id, proto.offset, proto.size, proto.crc32c, proto.dtype)

    def _parse(self, cls, data: bytes, what: str):
        try:
            return cls.FromString(data)
        except message.DecodeError as err:
            raise TFCheckpointError(f"{self.index_path}: {what} is not a valid protobuf message ({err})") from None

    def shard_path(self, shard: int) -> str:
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of every tensor, without reading any data."""
        return {name: entry.shape for name, entry in self.entries.items()}

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a native-endian numpy array, after checking its size and CRC32C."""
        entry = self.entries[name]
        if entry.tf_dtype not in DTYPES:
            raise TFCheckpointError(f"{self.index_path}: tensor {name!r} has dtype {entry.dtype}, which this reader "
                                    "does not support (numeric and bool tensors only)")
        dtype = np.dtype(DTYPES[entry.tf_dtype][1])
        if self.big_endian:
            dtype = dtype.newbyteorder(">")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise TFCheckpointError(f"{self.index_path}: tensor {name!r} of shape {list(entry.shape)} and dtype "
                                    f"{entry.dtype} needs {count * dtype.itemsize} bytes, but its entry says "
                                    f"{entry.size}: the index is corrupt")
        shard = self.shard_path(entry.shard)
        try:
            with open(shard, "rb") as f:
                f.seek(entry.offset)
                data = f.read(entry.size)
        except FileNotFoundError:
            raise TFCheckpointError(f"shard {shard!r} of checkpoint {self.prefix!r} is missing (tensor {name!r} is "
                                    f"stored in it); copy all {self.num_shards} .data-* files") from None
        if len(data) != entry.size:
            raise TFCheckpointError(f"shard {shard!r} is truncated: tensor {name!r} needs bytes {entry.offset}-"
                                    f"{entry.offset + entry.size}, the file ends at {entry.offset + len(data)}")
        if masked_crc32c(data) != entry.crc32c:
            raise TFCheckpointError(f"CRC mismatch for tensor {name!r} in {shard!r} (bytes {entry.offset}-"
                                    f"{entry.offset + entry.size}): the checkpoint data is corrupt")
        array = np.frombuffer(data, dtype=dtype).reshape(entry.shape)
        if entry.tf_dtype == 14:  # bfloat16: its bits are the upper half of the float32 with the same value
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="), copy=True)

    def read_all(self, names=None) -> dict[str, np.ndarray]:
        """``{name: array}`` of ``names`` (default: every tensor)."""
        return {name: self.read(name) for name in (self.entries if names is None else names)}


def read_tf_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Every tensor of the TF V2 checkpoint at ``path`` (prefix, ``.index`` file or directory), CRC-checked."""
    return TFCheckpoint(path).read_all()
