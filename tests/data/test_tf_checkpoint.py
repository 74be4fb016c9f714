"""The TF V2 checkpoint reader (videopool.data.tf_checkpoint), without TensorFlow.

* Every real TF1 checkpoint of the shared fixtures reads back exactly as TensorFlow read it (``NAME.weights.npz``
  was written from ``tf.train.load_checkpoint``): same names, dtypes, shapes and bytes.
* Damaged copies of a real checkpoint are refused with the right error, naming the file and tensor.
* A small writer of the same format (below, written from the format description, not from the reader) round-trips
  random tensors through several blocks, shards, dtypes and both byte orders, and produces the unsupported cases
  (snappy blocks, string tensors, sliced variables) that TensorFlow's own Saver would not give us here.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videopool.data.tf_checkpoint import (TABLE_MAGIC, BundleEntryProto, BundleHeaderProto, TFCheckpoint,
                                          TFCheckpointError, checkpoint_prefix, masked_crc32c, read_tf_checkpoint)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf1-reference"
NAMES = sorted(p.name[: -len(".ckpt.index")] for p in FIXTURES.glob("*.ckpt.index"))
needs_fixtures = pytest.mark.skipif(not NAMES, reason=f"TF1 reference fixtures not found at {FIXTURES}")

TF_DTYPES = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "int64": 9, "bool": 10,
             "uint16": 17, "float16": 19, "uint32": 22, "uint64": 23}


# ------------------------------------------------------------------------------------------ a writer for tests

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


# ------------------------------------------------------------------------------------------- real checkpoints

@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_reads_exactly_what_tensorflow_read(name):
    expected = np.load(FIXTURES / f"{name}.weights.npz")
    found = read_tf_checkpoint(str(FIXTURES / f"{name}.ckpt"))
    assert sorted(found) == sorted(expected.files)
    for key in expected.files:
        assert found[key].dtype == expected[key].dtype, key
        assert found[key].shape == expected[key].shape, key
        assert found[key].tobytes() == expected[key].tobytes(), key
    assert found["global_step"].dtype == np.int32 and found["global_step"].shape == ()


@needs_fixtures
def test_the_prefix_can_be_given_as_index_or_shard_or_directory(tmp_path):
    prefix = str(FIXTURES / "willow_netvlad.ckpt")
    assert checkpoint_prefix(prefix + ".index") == prefix
    assert checkpoint_prefix(prefix + ".data-00000-of-00001") == prefix
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(prefix + suffix, tmp_path / f"model.ckpt-7{suffix}")
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-7"\n'
                                         'all_model_checkpoint_paths: "model.ckpt-7"\n')
    assert TFCheckpoint(str(tmp_path)).prefix == str(tmp_path / "model.ckpt-7")
    assert TFCheckpoint(str(tmp_path)).shapes()["hidden1_weights"] == (8704, 32)


def _copy(tmp_path, name="willow_netvlad") -> str:
    prefix = str(tmp_path / name)
    for suffix in (".ckpt.index", ".ckpt.data-00000-of-00001"):
        shutil.copy(FIXTURES / f"{name}{suffix}", prefix + suffix)
    return prefix + ".ckpt"


@needs_fixtures
def test_a_flipped_data_byte_is_a_crc_error_naming_the_tensor(tmp_path):
    prefix = _copy(tmp_path)
    ckpt = TFCheckpoint(prefix)
    entry = ckpt.entries["gates/weights"]
    path = Path(ckpt.shard_path(0))
    data = bytearray(path.read_bytes())
    data[entry.offset + entry.size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError, match=r"CRC mismatch for tensor 'gates/weights' in .*data-00000-of-00001"):
        TFCheckpoint(prefix).read("gates/weights")
    np.testing.assert_array_equal(TFCheckpoint(prefix).read("experts/weights"),
                                  np.load(FIXTURES / "willow_netvlad.weights.npz")["experts/weights"])


@needs_fixtures
@pytest.mark.parametrize("cut", [10, 30, 500])
def test_a_truncated_index_is_refused(tmp_path, cut):
    prefix = _copy(tmp_path)
    index = Path(prefix + ".index")
    index.write_bytes(index.read_bytes()[:-cut])
    with pytest.raises(TFCheckpointError, match=r"willow_netvlad\.ckpt\.index (is truncated|is not a TensorFlow)"):
        TFCheckpoint(prefix)


@needs_fixtures
def test_a_corrupt_index_block_is_a_crc_error(tmp_path):
    prefix = _copy(tmp_path)
    index = Path(prefix + ".index")
    data = bytearray(index.read_bytes())
    data[40] ^= 0x01  # inside the first data block
    index.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError, match="CRC mismatch in its data block"):
        TFCheckpoint(prefix)


@needs_fixtures
def test_missing_and_short_shards_are_named(tmp_path):
    prefix = _copy(tmp_path)
    ckpt = TFCheckpoint(prefix)
    shard = Path(ckpt.shard_path(0))
    shard.write_bytes(shard.read_bytes()[:1000])
    last = max(ckpt.entries.values(), key=lambda e: e.offset)
    with pytest.raises(TFCheckpointError, match=f"is truncated: tensor '{last.name}'"):
        ckpt.read(last.name)
    shard.unlink()
    with pytest.raises(TFCheckpointError, match=r"shard .*data-00000-of-00001' .* is missing"):
        ckpt.read("global_step")
    with pytest.raises(TFCheckpointError, match=r"does not exist"):
        TFCheckpoint(str(tmp_path / "nothing.ckpt"))


# -------------------------------------------------------------------------------------- written by the test

@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_bundles_round_trip(tmp_path_factory, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    tensors = {}
    for i in range(data.draw(st.integers(1, 9))):
        dtype = data.draw(st.sampled_from(sorted(TF_DTYPES)))
        shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3)))
        values = rng.normal(size=shape) * 100
        # names sharing prefixes exercise the key compression
        tensors[f"scope_{i % 3}/var{'/slot' * (i % 2)}_{i}"] = np.asarray(values > 0) if dtype == "bool" else values.astype(dtype)
    prefix = str(tmp_path_factory.mktemp("bundle") / "model.ckpt")
    write_bundle(prefix, tensors, num_shards=data.draw(st.integers(1, 3)),
                 entries_per_block=data.draw(st.integers(1, 4)), big_endian=data.draw(st.booleans()))
    found = read_tf_checkpoint(prefix)
    assert sorted(found) == sorted(tensors)
    for name, expected in tensors.items():
        assert found[name].dtype == expected.dtype and found[name].shape == expected.shape, name
        np.testing.assert_array_equal(found[name], expected, err_msg=name)


def test_bfloat16_is_widened_exactly(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 2.0**100], dtype=np.float32)  # all exact in bfloat16
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    write_bundle(str(tmp_path / "m"), {"w": bits}, overrides={"w": {"dtype": 14}})
    np.testing.assert_array_equal(TFCheckpoint(str(tmp_path / "m")).read("w"), values)


def test_unsupported_features_are_refused_by_name(tmp_path):
    prefix = str(tmp_path / "m")
    write_bundle(prefix, {"a": np.zeros(3, np.float32), "names": np.zeros(2, np.uint8)},
                 overrides={"names": {"dtype": 7}})
    ckpt = TFCheckpoint(prefix)
    np.testing.assert_array_equal(ckpt.read("a"), np.zeros(3, np.float32))
    with pytest.raises(TFCheckpointError, match="tensor 'names' has dtype string, which this reader does not"):
        ckpt.read("names")
    write_bundle(prefix, {"part": np.zeros(3, np.float32)}, overrides={"part": {"slices": True}})
    with pytest.raises(TFCheckpointError, match="tensor 'part' is a partitioned variable"):
        TFCheckpoint(prefix)
    write_bundle(prefix, {"a": np.zeros(3, np.float32)}, compression=1)
    with pytest.raises(TFCheckpointError, match="snappy-compressed, which this reader does not support"):
        TFCheckpoint(prefix)
    write_bundle(prefix, {"a": np.zeros(3, np.float32)}, overrides={"a": {"size": 8}})
    with pytest.raises(TFCheckpointError, match=r"tensor 'a' of shape \[3\] and dtype float32 needs 12 bytes"):
        TFCheckpoint(prefix).read("a")
    write_bundle(prefix, {"a": np.zeros(3, np.float32)}, overrides={"a": {"shard_id": 4}})
    with pytest.raises(TFCheckpointError, match="names shard 4, but the bundle has 1"):
        TFCheckpoint(prefix)
