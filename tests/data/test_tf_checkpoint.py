"""The TF V2 checkpoint reader (videopool.data.tf_checkpoint), without TensorFlow.

* Every real TF1 checkpoint of the shared fixtures reads back exactly as TensorFlow read it (``NAME.weights.npz``
  was written from ``tf.train.load_checkpoint``): same names, dtypes, shapes and bytes.
* Damaged copies of a real checkpoint are refused with the right error, naming the file and tensor.
* A small writer of the same format (tests/tf_bundle.py, written from the format description) round-trips
  random tensors through several blocks, shards, dtypes and both byte orders, and produces the unsupported cases
  (snappy blocks, string tensors, sliced variables) that TensorFlow's own Saver would not give us here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tf_bundle import TF_DTYPES, write_bundle
from videopool.data.tf_checkpoint import TFCheckpoint, TFCheckpointError, checkpoint_prefix, read_tf_checkpoint

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf1-reference"
NAMES = sorted(p.name[: -len(".ckpt.index")] for p in FIXTURES.glob("*.ckpt.index"))
needs_fixtures = pytest.mark.skipif(not NAMES, reason=f"TF1 reference fixtures not found at {FIXTURES}")

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
        name = f"scope_{i % 3}/var{'/slot' * (i % 2)}_{i}"
        tensors[name] = np.asarray(values > 0) if dtype == "bool" else values.astype(dtype)
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
