"""TFRecord framing against TensorFlow-written fixtures and hand-built files."""

import os
import struct

import numpy as np
import pytest

from videopool.data import tfrecord
from videopool.data.errors import RecordError
from videopool.data.tfrecord import (TFRecordWriter, index_records, masked_crc32c, read_record_at,
                                     read_records)

FIXTURE_FILES = ["frame_level.tfrecord", "video_level.tfrecord", "segment_level.tfrecord"]


def _frame_by_hand(data: bytes) -> list[tuple[int, bytes]]:
    """Independent framing: (offset, payload) from the length fields alone."""
    records, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        records.append((pos, data[pos + 12:pos + 12 + length]))
        pos += 16 + length
    return records


def test_masked_crc32c_matches_known_check_value():
    # CRC-32C("123456789") = 0xE3069283 (the Castagnoli check value); mask by hand.
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("name", FIXTURE_FILES)
@pytest.mark.parametrize("use_mmap", [True, False])
def test_reads_tensorflow_files(fixtures_dir, name, use_mmap):
    data = open(os.path.join(fixtures_dir, name), "rb").read()
    expected = _frame_by_hand(data)
    records = list(read_records(os.path.join(fixtures_dir, name), use_mmap=use_mmap))
    assert [(r.offset, bytes(r.payload)) for r in records] == expected
    assert [r.index for r in records] == list(range(len(expected)))


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_writer_reproduces_tensorflow_framing_byte_for_byte(fixtures_dir, tmp_path, name):
    source = os.path.join(fixtures_dir, name)
    out = tmp_path / name
    with TFRecordWriter(out) as writer:
        for record in read_records(source):
            writer.write(bytes(record.payload))
    assert out.read_bytes() == open(source, "rb").read()
    assert writer.num_records == len(_frame_by_hand(out.read_bytes()))


def test_index_and_random_access(fixtures_dir):
    path = os.path.join(fixtures_dir, "frame_level.tfrecord")
    expected = _frame_by_hand(open(path, "rb").read())
    offsets = index_records(path)
    assert offsets.dtype == np.int64
    assert offsets.tolist() == [offset for offset, _ in expected]
    with open(path, "rb") as file:  # an open file is reused across calls
        for offset, payload in reversed(expected):
            assert read_record_at(file, int(offset)) == payload
    assert read_record_at(path, int(offsets[2])) == expected[2][1]


def test_start_offset_resumes_mid_file(fixtures_dir):
    path = os.path.join(fixtures_dir, "frame_level.tfrecord")
    offsets = index_records(path)
    tail = list(read_records(path, start_offset=int(offsets[3]), start_index=3))
    assert [r.index for r in tail] == [3, 4]
    assert [r.offset for r in tail] == offsets[3:].tolist()


def test_block_reader_handles_records_across_block_boundaries(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    payloads = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 900, 40)]
    path = tmp_path / "many.tfrecord"
    with TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    monkeypatch.setattr(tfrecord, "_BLOCK_SIZE", 257)  # smaller than most records
    blocks = [bytes(r.payload) for r in read_records(path, use_mmap=False)]
    assert blocks == payloads
    assert [bytes(r.payload) for r in read_records(path)] == payloads


def test_empty_file_has_no_records(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    assert list(read_records(path)) == []
    assert index_records(path).tolist() == []


def test_corrupt_length_field_is_detected_by_index_and_random_access(fixtures_dir):
    path = os.path.join(fixtures_dir, "corrupt_length_crc.tfrecord")
    with pytest.raises(RecordError, match="length CRC") as info:
        index_records(path)
    assert (info.value.path, info.value.index, info.value.offset) == (path, 0, 0)
    with pytest.raises(RecordError, match="payload CRC"):
        read_record_at(os.path.join(fixtures_dir, "corrupt_payload_crc.tfrecord"), 0)
    # Without CRC checks the payload-corrupt record reads (the length field is intact).
    assert len(read_record_at(os.path.join(fixtures_dir, "corrupt_payload_crc.tfrecord"), 0, verify_crc=False))


def test_truncated_file_is_detected_by_index(fixtures_dir):
    with pytest.raises(RecordError, match="truncated") as info:
        index_records(os.path.join(fixtures_dir, "corrupt_truncated.tfrecord"))
    assert info.value.index == 4 and info.value.kind == "truncated"


def test_header_only_tail_is_truncation(tmp_path):
    path = tmp_path / "tail.tfrecord"
    with TFRecordWriter(path) as writer:
        writer.write(b"abc")
    with open(path, "ab") as file:
        file.write(b"\x05\x00\x00")  # 3 stray bytes: not even a header
    with pytest.raises(RecordError, match="inside a record header") as info:
        list(read_records(path))
    assert info.value.offset == 19 and info.value.index == 1


def test_writer_refuses_writes_after_close(tmp_path):
    writer = TFRecordWriter(tmp_path / "x.tfrecord")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")


@pytest.mark.parametrize("use_mmap", [True, False])
def test_corrupt_length_without_crc_check_is_truncation_not_a_huge_allocation(fixtures_dir, use_mmap):
    path = os.path.join(fixtures_dir, "corrupt_length_crc.tfrecord")  # byte 3 of the length flipped
    with pytest.raises(RecordError, match="truncated record") as info:
        list(read_records(path, verify_crc=False, use_mmap=use_mmap))
    assert info.value.offset == 0
    with pytest.raises(RecordError, match="truncated record"):
        read_record_at(path, 0, verify_crc=False)
