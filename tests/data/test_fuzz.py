"""Parsers never crash, hang or over-allocate on bad bytes (docs/reliability.md, section 4).

Property-based tests (hypothesis) over the record decoder (fast path and general protobuf parse) and the
TFRecord framing, regression tests for the bugs the fuzzer found, and a bounded run of the fuzz command
itself (``python -m videopool.data.fuzz``; the long run is in docs/reliability.md)."""

import os
import struct
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videopool.data import fuzz
from videopool.data.codec import decode_record, encode_video, infer_schema
from videopool.data.errors import KINDS, ErrorPolicy, RecordError
from videopool.data.io import iter_videos
from videopool.data.schema import FeatureSpec, Schema
from videopool.data.tfrecord import TFRecordWriter, index_records, masked_crc32c, read_record_at, read_records
from videopool.data.video import Video

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = fuzz.make_seeds()
SMALL = SEEDS[0]  # 3 frames of rgb[16] + audio[4], labels, id
HUGE = (2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**64 - 1)
FIELDS = fuzz._all_fields(SMALL.tree, [])  # every (field, parent) of the small record's wire tree
DELIMITED = [item for item, _ in FIELDS if item.wire == 2]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(payload, schema, **options):
    """("ok", video) or ("error", kind) of one path; anything but a RecordError fails the test."""
    try:
        return "ok", decode_record(payload, schema, **options)
    except RecordError as error:
        assert error.kind in KINDS and error.message
        return "error", error.kind


def _decode_both(payload, schema, **options):
    """Decode on the fast path and the general parse; they must agree. Returns the fast outcome."""
    fast = _outcome(memoryview(payload), schema, fast=True, **options)
    general = _outcome(payload, schema, fast=False, **options)
    assert fast[0] == general[0], (fast, general)
    if fast[0] == "ok":
        assert fuzz._same_video(fast[1], general[1])
    else:
        assert fast[1] == general[1]
    return fast


def _serialize(plan_item, *actions):
    return fuzz._serialize(SMALL.tree, {id(plan_item): list(actions)})


# -- the decoder -----------------------------------------------------------------------------

@PROPERTY
@given(st.binary(max_size=600), st.sampled_from(SEEDS))
def test_arbitrary_bytes_parse_or_raise_a_record_error(data, seed):
    _decode_both(data, seed.schema, dequantize=False)
    try:
        infer_schema(data)
    except RecordError as error:
        assert error.kind in KINDS


@PROPERTY
@given(st.sampled_from(SEEDS), st.data())
def test_truncations_and_bit_flips(seed, data):
    payload = bytearray(seed.payload)
    cut = data.draw(st.integers(0, len(payload)))
    flips = data.draw(st.lists(st.integers(0, 8 * len(payload) - 1), max_size=4))
    for bit in flips:
        payload[bit >> 3] ^= 1 << (bit & 7)
    _decode_both(bytes(payload[:cut]), seed.schema, num_classes=4000)


def test_every_truncation_of_a_record_is_an_error():
    for cut in range(len(SMALL.payload)):
        assert _decode_both(SMALL.payload[:cut], SMALL.schema)[0] == "error"


@pytest.mark.parametrize("length", HUGE + (1 << 20, 1 << 28))
def test_huge_declared_length_in_any_field_is_an_error_without_allocation(length):
    """A length far past the bytes left, at every length-delimited field of the message (the outer
    lengths stay consistent, so the parser meets it), on both paths: not_a_record, and nothing the
    size of the declared length is allocated (Python and numpy allocations traced)."""
    tracemalloc.start()
    try:
        for item in DELIMITED:
            for pad in (0, 10):  # also as a 10-byte varint
                payload = _serialize(item, ("length", length), ("pad_length", pad))
                assert _decode_both(payload, SMALL.schema) == ("error", "not_a_record")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"decoding allocated {peak} bytes"


@pytest.mark.parametrize("size", range(1, 16))
def test_padded_and_over_long_varints(size):
    """A tag or length written with ``size`` bytes: up to 5 bytes every backend reads the same video;
    over 10 bytes the varint is invalid (not_a_record); in between the backend decides, the paths agree."""
    original = decode_record(SMALL.payload, SMALL.schema)
    for item, _ in FIELDS:
        for target in ("pad_tag", "pad_length") if item.wire == 2 else ("pad_tag",):
            outcome = _decode_both(_serialize(item, (target, size)), SMALL.schema)
            if size > 10:
                assert outcome == ("error", "not_a_record")
            elif size <= 5 and (target == "pad_length" or fuzz._api_type() == "upb"):
                assert outcome[0] == "ok" and fuzz._same_video(outcome[1], original)


def _ld(number, body):
    return fuzz._varint(number << 3 | 2) + fuzz._varint(len(body)) + body


@pytest.mark.parametrize("value, size, expected", [
    (5, 1, "ok"), (5, 10, "ok"), (2**64 - 1, 10, "ok"), ((1 << 64) | 5, 10, "ok"),  # bits over 64 are dropped
    (5, 11, "not_a_record"), (5, 20, "not_a_record")])
def test_unpacked_label_varints_over_10_bytes_and_over_64_bits(value, size, expected):
    """A label written as an unpacked Int64List varint of ``size`` bytes (``value`` may exceed 64 bits)."""
    label = _ld(3, b"\x08" + fuzz._varint(value, size))  # Feature.int64_list { value: <varint> }
    features = _ld(1, _ld(1, b"id") + _ld(2, _ld(1, _ld(1, b"vid")))) + _ld(1, _ld(1, b"labels") + _ld(2, label))
    features += _ld(1, _ld(1, b"x") + _ld(2, _ld(2, _ld(1, struct.pack("<f", 1.0)))))
    payload = _ld(1, features)
    outcome = _decode_both(payload, Schema((FeatureSpec("x", 1, "float"),), level="video"))
    assert outcome[0] == ("ok" if expected == "ok" else "error")
    if expected == "ok":
        assert outcome[1].labels == [np.int64(np.uint64(value & (2**64 - 1))).item()]
    else:
        assert outcome[1] == expected


@pytest.mark.parametrize("wire", range(8))
def test_wrong_wire_types(wire):
    for item, _ in FIELDS:
        if item.wire != wire:
            _decode_both(_serialize(item, ("wire", wire)), SMALL.schema)


def test_missing_and_duplicated_fields():
    for item, _ in FIELDS:
        _decode_both(_serialize(item, ("delete", None)), SMALL.schema)
        _decode_both(_serialize(item, ("duplicate", None)), SMALL.schema)


@PROPERTY
@given(st.sampled_from(SEEDS), st.integers(0, 2**32 - 1))
def test_structural_mutations(seed, rng_seed):
    """The fuzzer's structural mutations, driven by hypothesis (shrinks to a small failing case)."""
    import random
    from collections import Counter

    if not seed.tree:
        return
    rng = random.Random(rng_seed)
    plan = {}
    try:
        for _ in range(rng.choice((1, 2, 3))):
            fuzz._mutate_tree(seed.tree, rng, [s.tree for s in SEEDS], plan, Counter())
        payload = fuzz._serialize(seed.tree, plan)
    finally:
        fuzz._undo_inserts(plan)
    _decode_both(payload, seed.schema, dequantize=rng.random() < 0.5, max_frames=rng.choice((None, 1)))


# -- regressions found by the fuzzer ---------------------------------------------------------

def test_fast_path_rejects_what_the_general_parse_rejects_in_an_unread_feature_list():
    """A feature list the schema does not read, whose body is not a FeatureList, used to pass the fast path."""
    video = Video("a", [1], {"rgb": np.zeros((2, 16), np.uint8), "audio": np.zeros((2, 4), np.uint8),
                             "junk": np.zeros((2, 4), np.uint8)})
    schema = Schema((FeatureSpec("rgb", 16), FeatureSpec("audio", 4), FeatureSpec("junk", 4)))
    tree = fuzz._parse_tree(encode_video(video, schema), "SequenceExample")
    entry = next(item for item, _ in fuzz._all_fields(tree, []) if item.kind == "string" and item.value == b"junk")
    lists = next(item for item, _ in fuzz._all_fields(tree, [])
                 if item.kind == "message" and any(child is entry for child in item.value))
    value = next(child for child in lists.value if child.number == 2)
    payload = fuzz._serialize(tree, {id(value): [("body", b"\xff\xff\xff")]})
    assert _decode_both(payload, SMALL.schema) == ("error", "not_a_record")


def test_six_byte_length_varint_takes_the_general_parse():
    """upb refuses length varints over 5 bytes; the fast path used to accept them (up to 10)."""
    frames = next(item for item in DELIMITED if item.kind == "message" and item.number == 2)
    payload = _serialize(frames, ("pad_length", 6))
    assert _decode_both(payload, SMALL.schema)[0] == ("error" if fuzz._api_type() == "upb" else "ok")


def test_video_level_hint_on_bytes_that_are_not_a_sequence_example():
    """The "it is a frame-level record" hint parsed the payload again unguarded (a DecodeError escaped)."""
    payload = SEEDS[6].payload + b"\x12\x03\xff\xff\xff"  # Example + an unknown field 2
    video_level = SEEDS[6].schema.select("mean_rgb")
    missing = Schema((FeatureSpec("other", 8, "float"),), level="video")
    assert _decode_both(payload, video_level)[0] == "ok"
    assert _decode_both(payload, missing) == ("error", "missing_feature")


def test_pure_python_protobuf_backend_errors_are_record_errors(monkeypatch):
    """protobuf's pure-Python backend raises UnicodeDecodeError (not DecodeError) on an invalid UTF-8 map
    key, which escaped decode_record; the whole backend is fuzzed by the next-but-one test."""
    from videopool.data import example_proto as pb

    def python_backend_parse(data):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte in field: tensorflow.Features")

    for name in ("SequenceExample", "Example", "Features", "FeatureList"):
        monkeypatch.setattr(getattr(pb, name), "FromString", staticmethod(python_backend_parse))
    for seed in (SMALL, SEEDS[6]):
        assert _decode_both(seed.payload, seed.schema) == ("error", "not_a_record")
    with pytest.raises(RecordError, match="not a tf.train"):
        infer_schema(SMALL.payload)


# -- the framing ---------------------------------------------------------------------------

def _write(path, payloads):
    with TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    return open(path, "rb").read()


def _read_all(path, **options):
    policy = ErrorPolicy("skip", max_examples=1000)
    records = [(r.index, r.offset, bytes(r.payload)) for r in read_records(path, errors=policy, **options)]
    return records, [(e.kind, e.index, e.offset, e.path) for e in policy.examples]


def _pipe_path(data):
    """A path that reads ``data`` through a pipe (cannot be memory-mapped, sized or seeked)."""
    read_fd, write_fd = os.pipe()

    def feed():
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return f"/proc/self/fd/{read_fd}", read_fd, thread


@pytest.fixture
def two_records(tmp_path):
    path = tmp_path / "two.tfrecord"
    data = _write(path, [SMALL.payload, SEEDS[3].payload])
    return str(path), data


@PROPERTY
@given(st.data())
def test_damaged_files_are_framed_the_same_by_every_reader(tmp_path_factory, data):
    """Truncations, bit flips and changed lengths of a file: the memory-mapped and block readers, both
    error modes, index_records and iter_videos agree, and every error names the file, record and offset."""
    original = _write(tmp_path_factory.mktemp("f") / "x.tfrecord", [SMALL.payload, SEEDS[3].payload])
    damaged = bytearray(original)
    kind = data.draw(st.sampled_from(["truncate", "flip", "length"]))
    if kind == "truncate":
        damaged = damaged[:data.draw(st.integers(0, len(damaged)))]
    elif kind == "flip":
        for bit in data.draw(st.lists(st.integers(0, 8 * len(damaged) - 1), min_size=1, max_size=3)):
            damaged[bit >> 3] ^= 1 << (bit & 7)
    else:
        start = data.draw(st.sampled_from([0, 16 + len(SMALL.payload)]))
        length = struct.pack("<Q", data.draw(st.sampled_from(HUGE) | st.integers(0, 4096)))
        damaged[start:start + 12] = length + struct.pack("<I", masked_crc32c(length))  # a trusted length
    path = str(tmp_path_factory.mktemp("d") / "damaged.tfrecord")
    with open(path, "wb") as out:
        out.write(damaged)
    verify = data.draw(st.booleans())
    mapped = _read_all(path, verify_crc=verify)
    assert _read_all(path, verify_crc=verify, use_mmap=False) == mapped
    for error in mapped[1]:
        assert error[0] in KINDS and error[1] is not None and error[2] is not None and error[3] == path
    framing = [e for e in mapped[1] if e[0] != "payload_crc"]
    try:
        offsets = index_records(path, verify_crc=verify).tolist()
        assert not framing
        assert offsets == sorted([r[1] for r in mapped[0]] + [e[2] for e in mapped[1] if e[0] == "payload_crc"])
    except RecordError as error:
        assert (error.kind, error.index, error.offset, error.path) == framing[0]
    policy = ErrorPolicy("skip", max_examples=1000)
    videos = list(iter_videos(path, schema=SMALL.schema, verify_crc=verify, errors=policy))
    assert len(videos) + policy.count - len(mapped[1]) == len(mapped[0])
    for error in policy.examples:
        assert error.path == path and f"record {error.index}, byte offset {error.offset}" in str(error)


@pytest.mark.parametrize("length", HUGE)
@pytest.mark.parametrize("reader", ["mmap", "blocks", "pipe", "index", "random_access"])
def test_huge_trusted_length_is_truncated_without_allocating_it(tmp_path, length, reader):
    """A record header announcing up to 2**64 - 1 bytes, with a valid length CRC: a "truncated" error at
    that record, and whatever the reader at most two 8 MiB read blocks allocated (a pipe: the block
    holding the header and one more read; a regular file: no more than the file's size)."""
    packed = struct.pack("<Q", length)
    data = _write(tmp_path / "ok.tfrecord", [SMALL.payload]) + packed + struct.pack("<I", masked_crc32c(packed))
    data += b"\x00" * 64
    path = str(tmp_path / "huge.tfrecord")
    with open(path, "wb") as out:
        out.write(data)
    offset = 16 + len(SMALL.payload)
    tracemalloc.start()
    try:
        with pytest.raises(RecordError) as info:
            if reader == "index":
                index_records(path)
            elif reader == "random_access":
                read_record_at(path, offset, index=1)
            elif reader == "pipe":
                pipe, read_fd, thread = _pipe_path(data)
                try:
                    list(read_records(pipe))
                finally:
                    os.close(read_fd)
                    thread.join()
            else:
                list(read_records(path, use_mmap=reader == "mmap"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (info.value.kind, info.value.index, info.value.offset) == ("truncated", 1, offset)
    limit = (17 << 20) if reader == "pipe" else 1 << 20
    assert peak < limit, f"{reader} allocated {peak} bytes for a {length}-byte declared length"


def test_block_reader_sizes_a_record_against_the_bytes_after_it(tmp_path):
    """A length that fits the file counted from its start but not from the record's own offset is truncated at
    once (the block reader used to allocate it first), and a small file costs no 8 MiB block."""
    big = b"\x0a" * (4 << 20)
    packed = struct.pack("<Q", len(big))  # the second record claims as much again, with a valid CRC
    data = _write(tmp_path / "a.tfrecord", [big]) + packed + struct.pack("<I", masked_crc32c(packed)) + b"\x00" * 8
    path = tmp_path / "b.tfrecord"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(RecordError) as info:
            for record in read_records(path, use_mmap=False):
                del record
        big_peak = tracemalloc.get_traced_memory()[1]
        small = tmp_path / "small.tfrecord"
        _write(small, [SMALL.payload])
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]  # the error above still holds its 4 MiB block
        assert len(list(read_records(small, use_mmap=False))) == 1
        small_peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert (info.value.kind, info.value.index) == ("truncated", 1)
    assert big_peak < (4 << 20) + (1 << 20), big_peak  # the one block holding the file, nothing for the bad length
    assert small_peak < 64 << 10, small_peak


def test_pipes_are_read_like_files(two_records):
    """Reading through a pipe used to fail (the block reader seeked, and sized records by st_size = 0)."""
    path, data = two_records
    for cut in (len(data), len(data) - 3, 30):
        with open(path + ".cut", "wb") as out:
            out.write(data[:cut])
        expected = _read_all(path + ".cut")
        pipe, read_fd, thread = _pipe_path(data[:cut])
        try:
            got = _read_all(pipe)
        finally:
            os.close(read_fd)
            thread.join()
        assert got[0] == expected[0]
        assert [e[:3] for e in got[1]] == [e[:3] for e in expected[1]]


def test_block_reader_starts_at_an_offset_of_a_pipe(two_records):
    path, data = two_records
    offset = index_records(path)[1]
    pipe, read_fd, thread = _pipe_path(data)
    try:
        with open(pipe, "rb") as file:
            from videopool.data.tfrecord import _read_blocks

            records = list(_read_blocks(file, pipe, True, int(offset), 1, lambda error: None))
    finally:
        os.close(read_fd)
        thread.join()
    assert [(r.index, r.offset, bytes(r.payload)) for r in records] == [(1, offset, SEEDS[3].payload)]


# -- the fuzz command ----------------------------------------------------------------------

@pytest.mark.slow
def test_fuzz_command_bounded_run():
    """CI's bounded run of the fuzz command (the long run and its figures: docs/reliability.md)."""
    result = subprocess.run(
        [sys.executable, "-m", "videopool.data.fuzz", "--inputs", "3000", "--seed", "0",
         "--corpus", os.path.join(ROOT, "tests", "fixtures", "*.tfrecord")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3,000 inputs" in result.stdout and "bugs: 0" in result.stdout
    assert "payload: parsed" in result.stdout and "file: RecordError truncated" in result.stdout


@pytest.mark.slow
def test_fuzz_command_under_the_pure_python_protobuf_backend():
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")  # --protobuf python re-executes
    result = subprocess.run([sys.executable, "-m", "videopool.data.fuzz", "--inputs", "500", "--seed", "1",
                             "--protobuf", "python"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "protobuf backend python" in result.stdout and "bugs: 0" in result.stdout


def test_fuzzer_reports_crashes_hangs_and_wrong_outcomes(monkeypatch, capsys):
    """The oracle itself: a decoder that crashes, hangs, or differs between paths is reported with the
    command that replays it, and the command exits 1."""
    real = fuzz.decode_record
    calls = {"n": 0}

    def broken(payload, schema, **options):  # replaces the decoder of the payload inputs only
        calls["n"] += 1
        if calls["n"] == 3:
            raise IndexError("planted crash")
        if calls["n"] == 6:  # a hang: CPU time (the limit is on CPU time, not wall time)
            import time

            end = time.process_time() + 1.0
            while time.process_time() < end:
                pass
        if calls["n"] == 9:
            raise RecordError("planted undocumented kind", kind="not_a_kind")
        return real(payload, schema, **options)

    monkeypatch.setattr(fuzz, "decode_record", broken)
    report = fuzz.run_fuzz(30, seed=5, time_limit=0.5, memory_limit_mb=None, warm_up=0)
    categories = {category for _, category, _ in report.bugs}
    assert categories == {"crash", "hang", "wrong outcome"}
    out = capsys.readouterr().out
    assert "planted crash" in out and "reproduce: python -m videopool.data.fuzz --seed 5 --replay" in out


def test_replay_prints_the_input(capsys):
    assert fuzz.main(["--seed", "0", "--replay", "3"]) == 0
    out = capsys.readouterr().out
    assert "input 3: no bug" in out and ("payload (" in out or "file (" in out)
