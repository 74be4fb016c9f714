"""Record decoding/encoding: TensorFlow-written fixtures, the fast path against the general
protobuf parse on usual and unusual (hand-encoded) records, and write -> read round trips."""

import json
import os
import struct

import numpy as np
import pytest

from videopool.data import example_proto as pb
from videopool.data.codec import decode_record, encode_video, infer_schema
from videopool.data.fastpath import split_sequence_example, strided_frames
from videopool.data.schema import YT8M_FRAME, YT8M_VIDEO, FeatureSpec, Schema, dequantize, quantize
from videopool.data.tfrecord import read_records
from videopool.data.video import SegmentAnnotations, Video


def _expected(fixtures_dir):
    with open(os.path.join(fixtures_dir, "expected.json")) as file:
        return json.load(file)


def _payloads(fixtures_dir, name):
    return [bytes(r.payload) for r in read_records(os.path.join(fixtures_dir, name))]


def _takes_fast_path(payload: bytes, schema: Schema) -> bool:
    split = split_sequence_example(memoryview(payload))
    return split is not None and all(
        spec.name in split[1] and strided_frames(memoryview(payload), split[1][spec.name], spec.size,
                                                 spec.encoding) is not None for spec in schema.features)


# -- TensorFlow-written fixtures -------------------------------------------------------------

def test_frame_level_fixture_matches_expected(fixtures_dir):
    expected = _expected(fixtures_dir)["frame_level"]
    payloads = _payloads(fixtures_dir, "frame_level.tfrecord")
    assert len(payloads) == len(expected) == 5
    for payload, want in zip(payloads, expected):
        codes = decode_record(payload, YT8M_FRAME, dequantize=False)
        video = decode_record(payload, YT8M_FRAME)
        assert (video.id, video.labels, video.num_frames) == (want["id"], want["labels"], want["num_frames"])
        assert codes.features["rgb"].dtype == np.uint8 and video.features["rgb"].dtype == np.float32
        assert codes.features["rgb"].shape == (want["num_frames"], 1024)
        assert codes.features["audio"].shape == (want["num_frames"], 128)
        assert int(codes.features["rgb"].sum()) == want["rgb_sum_q"]
        assert int(codes.features["audio"].sum()) == want["audio_sum_q"]
        assert codes.features["rgb"][0, :8].tolist() == want["rgb_first_frame_first8_q"]
        np.testing.assert_allclose(video.features["rgb"][0, :8], want["rgb_first_frame_first8_dequantized"],
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(video.features["audio"][-1, -4:], want["audio_last_frame_last4_dequantized"],
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(video.features["rgb"].mean(axis=0, dtype=np.float64)[:4],
                                   want["rgb_mean_dequantized_first4"], rtol=0, atol=1e-6)
    assert expected[2]["labels"] == [] and expected[3]["id_key"] == "video_id"  # the cases are covered


def test_video_level_fixture_matches_expected(fixtures_dir):
    for payload, want in zip(_payloads(fixtures_dir, "video_level.tfrecord"), _expected(fixtures_dir)["video_level"]):
        video = decode_record(payload, YT8M_VIDEO)
        assert (video.id, video.labels, video.num_frames) == (want["id"], want["labels"], 1)
        assert video.features["mean_rgb"].shape == (1, 1024) and video.features["mean_audio"].shape == (1, 128)
        assert video.features["mean_rgb"][0, :4].tolist() == [float(np.float32(x)) for x in want["mean_rgb_first4"]]
        assert video.features["mean_audio"].sum(dtype=np.float64) == pytest.approx(want["mean_audio_sum"], abs=1e-9)


def test_segment_level_fixture_matches_expected(fixtures_dir):
    for payload, want in zip(_payloads(fixtures_dir, "segment_level.tfrecord"), _expected(fixtures_dir)["segment_level"]):
        video = decode_record(payload, YT8M_FRAME, dequantize=False)
        assert (video.id, video.labels, video.num_frames) == (want["id"], want["labels"], want["num_frames"])
        assert int(video.features["rgb"].sum()) == want["rgb_sum_q"]
        seg = video.segments
        assert seg.labels.tolist() == want["segment_labels"]
        assert seg.start_times.tolist() == want["segment_start_times"]
        assert seg.scores.tolist() == want["segment_scores"]
        assert seg.end_times.tolist() == [s + 5 for s in want["segment_start_times"]]


@pytest.mark.parametrize("name", ["frame_level.tfrecord", "segment_level.tfrecord"])
@pytest.mark.parametrize("dequantize_", [True, False])
def test_fast_path_equals_general_parse_on_fixtures(fixtures_dir, name, dequantize_):
    for payload in _payloads(fixtures_dir, name):
        assert _takes_fast_path(payload, YT8M_FRAME)
        _assert_same(decode_record(payload, YT8M_FRAME, dequantize=dequantize_),
                     decode_record(payload, YT8M_FRAME, dequantize=dequantize_, fast=False))


def _assert_same(a: Video, b: Video) -> None:
    assert (a.id, a.labels) == (b.id, b.labels)
    assert list(a.features) == list(b.features)
    for name in a.features:
        assert a.features[name].dtype == b.features[name].dtype
        assert np.array_equal(a.features[name], b.features[name])
    assert (a.segments is None) == (b.segments is None)
    if a.segments is not None:
        for field in ("labels", "start_times", "scores", "end_times"):
            assert np.array_equal(getattr(a.segments, field), getattr(b.segments, field))


def test_golden_bytes_reencoding_tensorflow_records(fixtures_dir):
    """Our writer's bytes equal TF's wherever TF happened to insert map keys in sorted order,
    and equal TF's message re-serialized deterministically everywhere."""
    identical = 0
    for name, schema, message in [("frame_level.tfrecord", YT8M_FRAME, pb.SequenceExample),
                                  ("segment_level.tfrecord", YT8M_FRAME, pb.SequenceExample),
                                  ("video_level.tfrecord", YT8M_VIDEO, pb.Example)]:
        for payload in _payloads(fixtures_dir, name):
            parsed = message.FromString(payload)
            context = parsed.context if message is pb.SequenceExample else parsed.features
            id_key = "video_id" if "video_id" in context.feature else "id"
            write_schema = Schema(schema.features, level=schema.level, id_keys=(id_key,))
            ours = encode_video(decode_record(payload, schema, dequantize=False), write_schema)
            assert ours == parsed.SerializeToString(deterministic=True)
            assert message.FromString(ours) == parsed
            identical += ours == payload
    assert identical == 4  # frame-level records 0, 1, 2, 4 (the legacy record and the others are unsorted)


# -- hand-encoded unusual records ------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _ld(field: int, body: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(body)) + body


def _bytes_feature(*strings: bytes) -> bytes:
    return _ld(1, b"".join(_ld(1, s) for s in strings))


def _float_feature(values, packed: bool = True) -> bytes:
    if packed:
        return _ld(2, _ld(1, struct.pack(f"<{len(values)}f", *values)))
    return _ld(2, b"".join(_varint(1 << 3 | 5) + struct.pack("<f", v) for v in values))


def _int64_feature(values, packed: bool = True) -> bytes:
    if packed:
        return _ld(3, _ld(1, b"".join(_varint(v) for v in values)))
    return _ld(3, b"".join(_varint(1 << 3 | 0) + _varint(v) for v in values))


def _map(entries, value_first: bool = False) -> bytes:
    return b"".join(_ld(1, _ld(2, value) + _ld(1, key.encode()) if value_first else
                        _ld(1, key.encode()) + _ld(2, value)) for key, value in entries)


SMALL = Schema((FeatureSpec("rgb", 16), FeatureSpec("audio", 4)))


@pytest.fixture
def small_video():
    rng = np.random.default_rng(7)
    return {"rgb": rng.integers(0, 256, (6, 16), dtype=np.uint8),
            "audio": rng.integers(0, 256, (6, 4), dtype=np.uint8)}


def _context(labels=(3, 1, 4), packed=True, extra=()):
    return [("id", _bytes_feature(b"vid")), ("labels", _int64_feature(list(labels), packed))] + list(extra)


def _frames(matrix, split=False):
    if split:  # each frame's bytes as two strings
        return b"".join(_ld(1, _bytes_feature(row[:5].tobytes(), row[5:].tobytes())) for row in matrix)
    return b"".join(_ld(1, _bytes_feature(row.tobytes())) for row in matrix)


def _sequence(context, lists, context_last=False, value_first=False):
    ctx = _ld(1, _map(context))
    fl = _ld(2, _map(lists, value_first))
    return fl + ctx if context_last else ctx + fl


def _unusual_records(v):
    rgb, audio = _frames(v["rgb"]), _frames(v["audio"])
    return {
        "plain": (_sequence(_context(), [("audio", audio), ("rgb", rgb)]), True),
        "lists_in_other_order": (_sequence(_context(), [("rgb", rgb), ("audio", audio)]), True),
        "context_after_lists": (_sequence(_context(), [("rgb", rgb), ("audio", audio)], context_last=True), True),
        "map_value_before_key": (_sequence(_context(), [("rgb", rgb), ("audio", audio)], value_first=True), True),
        "unpacked_labels_and_extras": (_sequence(
            _context(packed=False, extra=[("title", _bytes_feature(b"x")), ("score", _float_feature([0.5]))]),
            [("rgb", rgb), ("timestamps", b"".join(_ld(1, _int64_feature([t])) for t in range(6))),
             ("audio", audio)]), True),
        "frames_as_two_strings": (_sequence(_context(), [("rgb", _frames(v["rgb"], split=True)),
                                                        ("audio", audio)]), False),
        "feature_lists_field_twice": (_ld(1, _map(_context())) + _ld(2, _map([("rgb", rgb)]))
                                      + _ld(2, _map([("audio", audio)])), False),
        "duplicate_map_key_last_wins": (_sequence(_context(), [("rgb", _frames(v["rgb"][::-1])), ("rgb", rgb),
                                                               ("audio", audio)]), False),
    }


@pytest.mark.parametrize("case", ["plain", "lists_in_other_order", "context_after_lists", "map_value_before_key",
                                  "unpacked_labels_and_extras", "frames_as_two_strings",
                                  "feature_lists_field_twice", "duplicate_map_key_last_wins"])
def test_unusual_records_are_never_misread(small_video, case):
    payload, fast_expected = _unusual_records(small_video)[case]
    pb.SequenceExample.FromString(payload)  # valid protobuf
    assert _takes_fast_path(payload, SMALL) == fast_expected
    fast = decode_record(payload, SMALL, dequantize=False)
    general = decode_record(payload, SMALL, dequantize=False, fast=False)
    _assert_same(fast, general)
    assert fast.id == "vid" and fast.labels == [3, 1, 4]
    assert np.array_equal(fast.features["rgb"], small_video["rgb"])
    assert np.array_equal(fast.features["audio"], small_video["audio"])


def test_header_check_catches_a_length_that_happens_to_fit_the_stride():
    # 11 frames of 16 bytes, each sent as two 8-byte strings, take 11 * 24 = 264 bytes = 12 plain
    # frames of stride 22: only the per-frame header comparison tells them apart.
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (11, 16), dtype=np.uint8)
    audio = rng.integers(0, 256, (11, 4), dtype=np.uint8)
    split_rgb = b"".join(_ld(1, _bytes_feature(row[:8].tobytes(), row[8:].tobytes())) for row in rgb)
    assert len(split_rgb) == 12 * 22
    payload = _sequence(_context(), [("rgb", split_rgb), ("audio", _frames(audio))])
    spans = split_sequence_example(memoryview(payload))[1]
    assert strided_frames(memoryview(payload), spans["rgb"], 16, "bytes") is None
    assert strided_frames(memoryview(payload), spans["audio"], 4, "bytes") is not None
    video = decode_record(payload, SMALL, dequantize=False)
    assert np.array_equal(video.features["rgb"], rgb) and np.array_equal(video.features["audio"], audio)


def test_float_list_frames_packed_and_unpacked():
    rng = np.random.default_rng(3)
    floats = rng.normal(size=(5, 3)).astype(np.float32)
    schema = Schema((FeatureSpec("AUDIO/feature/floats", 3, "float"),))
    packed = b"".join(_ld(1, _float_feature(row.tolist())) for row in floats)
    unpacked = b"".join(_ld(1, _float_feature(row.tolist(), packed=False)) for row in floats)
    for body, fast_expected in [(packed, True), (unpacked, False)]:
        payload = _sequence(_context(), [("AUDIO/feature/floats", body)])
        assert _takes_fast_path(payload, schema) == fast_expected
        for fast in (True, False):
            video = decode_record(payload, schema, fast=fast)
            assert video.features["AUDIO/feature/floats"].dtype == np.float32
            assert np.array_equal(video.features["AUDIO/feature/floats"], floats)


def test_max_frames_truncates_like_the_tf_reader(small_video):
    payload, _ = _unusual_records(small_video)["plain"]
    for fast in (True, False):
        video = decode_record(payload, SMALL, dequantize=False, max_frames=4, fast=fast)
        assert np.array_equal(video.features["rgb"], small_video["rgb"][:4]) and video.num_frames == 4


def test_uint8_output_owns_its_memory(small_video):
    payload = bytearray(_unusual_records(small_video)["plain"][0])
    video = decode_record(payload, SMALL, dequantize=False)
    payload[:] = bytes(len(payload))  # clobber the source buffer
    assert np.array_equal(video.features["rgb"], small_video["rgb"])


# -- write -> read round trips ---------------------------------------------------------------

def test_frame_level_round_trip_float_input_is_quantized():
    rng = np.random.default_rng(1)
    features = {"rgb": rng.uniform(-2.5, 2.5, (7, 1024)), "audio": rng.uniform(-2, 2, (7, 128))}
    payload = encode_video(Video("a", [5, 2], features), YT8M_FRAME)
    assert _takes_fast_path(payload, YT8M_FRAME)
    video = decode_record(payload, YT8M_FRAME)
    for name in features:
        assert np.array_equal(video.features[name], dequantize(quantize(features[name])))
        assert np.abs(video.features[name] - np.clip(features[name], -2, 2)).max() <= 2 / 255 + 4 / 512 + 1e-6
    assert (video.id, video.labels) == ("a", [5, 2])
    assert encode_video(Video("a", [5, 2], features), YT8M_FRAME) == payload  # deterministic


def test_segment_round_trip():
    rng = np.random.default_rng(2)
    codes = {"rgb": rng.integers(0, 256, (20, 1024), dtype=np.uint8),
             "audio": rng.integers(0, 256, (20, 128), dtype=np.uint8)}
    segments = SegmentAnnotations(np.array([4, 9]), np.array([0, 10]), np.array([1.0, 0.0], np.float32))
    video = decode_record(encode_video(Video("s", [4], codes, segments), YT8M_FRAME), YT8M_FRAME, dequantize=False)
    assert np.array_equal(video.features["rgb"], codes["rgb"]) and video.labels == [4]
    assert video.segments.labels.tolist() == [4, 9] and video.segments.start_times.tolist() == [0, 10]
    assert video.segments.scores.tolist() == [1.0, 0.0] and video.segments.end_times is None


def test_video_level_round_trip_accepts_vectors():
    rng = np.random.default_rng(4)
    features = {"mean_rgb": rng.normal(size=1024).astype(np.float32),
                "mean_audio": rng.normal(size=(1, 128)).astype(np.float32)}
    payload = encode_video(Video("v", [], features), YT8M_VIDEO)
    video = decode_record(payload, YT8M_VIDEO)
    assert video.labels == [] and video.num_frames == 1
    assert np.array_equal(video.features["mean_rgb"][0], features["mean_rgb"])
    assert np.array_equal(video.features["mean_audio"], features["mean_audio"])


def test_rgb_only_schema_round_trip_and_missing_feature_on_full_schema():
    rgb_only = Schema.yt8m_frame(audio=False)
    codes = np.random.default_rng(5).integers(0, 256, (3, 1024), dtype=np.uint8)
    payload = encode_video(Video("r", [1], {"rgb": codes}), rgb_only)
    video = decode_record(payload, rgb_only, dequantize=False)
    assert list(video.features) == ["rgb"] and np.array_equal(video.features["rgb"], codes)
    with pytest.raises(Exception, match="'audio' is missing"):
        decode_record(payload, YT8M_FRAME)


def test_encode_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"'rgb' has shape \(3, 10\)"):
        encode_video(Video("x", [], {"rgb": np.zeros((3, 10)), "audio": np.zeros((3, 128))}), YT8M_FRAME)
    with pytest.raises(ValueError, match="no feature 'audio'"):
        encode_video(Video("x", [], {"rgb": np.zeros((3, 1024))}), YT8M_FRAME)


def test_infer_schema(fixtures_dir):
    assert infer_schema(_payloads(fixtures_dir, "frame_level.tfrecord")[0]) == YT8M_FRAME
    assert infer_schema(_payloads(fixtures_dir, "video_level.tfrecord")[0]) == YT8M_VIDEO
    assert infer_schema(_payloads(fixtures_dir, "segment_level.tfrecord")[0]) == YT8M_FRAME
    mediapipe_like = _sequence(_context(), [("RGB/feature/floats", _ld(1, _float_feature([0.0] * 6))),
                                            ("RGB/feature/timestamp", _ld(1, _int64_feature([0])))])
    schema = infer_schema(mediapipe_like)
    assert schema.level == "frame" and schema.features == (FeatureSpec("RGB/feature/floats", 6, "float"),)
