"""Every kind of bad input is reported with file, record index and byte offset; never zero-filled."""

import os
import pickle
import warnings

import numpy as np
import pytest

from videopool.data import RecordError, Video, iter_videos
from videopool.data import example_proto as pb
from videopool.data.codec import decode_record, encode_video
from videopool.data.errors import ErrorPolicy
from videopool.data.schema import YT8M_FRAME, YT8M_VIDEO, FeatureSpec, Schema
from videopool.data.tfrecord import TFRecordWriter, index_records


def _video(video_id="ok", frames=3, audio_frames=None, labels=(1, 2), rgb_size=1024):
    rng = np.random.default_rng(0)
    audio_frames = frames if audio_frames is None else audio_frames
    return Video(video_id, list(labels), {"rgb": rng.integers(0, 256, (frames, rgb_size), dtype=np.uint8),
                                          "audio": rng.integers(0, 256, (audio_frames, 128), dtype=np.uint8)})


def _payload(video, schema=YT8M_FRAME):
    return encode_video(video, schema, validate=False)  # the writer refuses most of these bad videos


def _decode_error(payload, schema=YT8M_FRAME, **kwargs) -> RecordError:
    for fast in (True, False):  # both paths must reject it the same way
        with pytest.raises(RecordError) as info:
            decode_record(payload, schema, fast=fast, **kwargs)
    return info.value


@pytest.mark.parametrize("name, intact_ids, bad", [
    ("corrupt_truncated.tfrecord", ["vidA", "vidB", "vidC", "legacy"], (4, 30744, "truncated")),
    ("corrupt_payload_crc.tfrecord", ["vidB", "vidC", "legacy", "long"], (0, 0, "payload_crc")),
    ("corrupt_length_crc.tfrecord", [], (0, 0, "length_crc")),
])
def test_corrupt_fixtures(fixtures_dir, name, intact_ids, bad):
    path = os.path.join(fixtures_dir, name)
    with pytest.raises(RecordError) as info:
        list(iter_videos(path))
    assert (info.value.path, info.value.index, info.value.offset, info.value.kind) == (path,) + bad
    assert f"record {bad[0]}, byte offset {bad[1]}" in str(info.value) and path in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [v.id for v in iter_videos(path, on_error="skip")] == intact_ids
    assert len(caught) == 1
    assert "skipped 1 bad record" in str(caught[0].message) and f"record {bad[0]}" in str(caught[0].message)


def test_payload_that_is_not_a_protobuf():
    error = _decode_error(b"\xff\xff\xff\xff")
    assert error.kind == "not_a_record" and "not a tf.train.SequenceExample" in error.message


def test_video_level_record_read_as_frame_level_and_vice_versa(fixtures_dir):
    example = pb.Example()
    example.features.feature["id"].bytes_list.value.append(b"v")
    example.features.feature["mean_rgb"].float_list.value.extend([0.0] * 1024)
    error = _decode_error(example.SerializeToString())
    assert error.kind == "missing_feature" and "video-level" in error.message
    with pytest.raises(RecordError, match="frame-level SequenceExample"):
        decode_record(_payload(_video()), YT8M_VIDEO)


def test_missing_feature_names_what_is_there():
    payload = _payload(Video("r", [], {"rgb": np.zeros((2, 1024), np.uint8)}), YT8M_FRAME.select("rgb"))
    error = _decode_error(payload)
    assert error.kind == "missing_feature" and "'audio' is missing" in error.message and "rgb" in error.message


def test_wrong_feature_size():
    schema_1000 = Schema((FeatureSpec("rgb", 1000), FeatureSpec("audio", 128)))
    error = _decode_error(_payload(_video(rgb_size=1000), schema_1000))
    assert error.kind == "feature_size" and "frame 0 of 'rgb' has 1000 bytes, expected 1024" in error.message


def test_wrong_encoding_is_a_clear_error():
    floats = Schema((FeatureSpec("rgb", 1024, "float"), FeatureSpec("audio", 128, "float")))
    error = _decode_error(_payload(_video()), floats)
    assert "bytes_list" in error.message and "float_list" in error.message


def test_zero_frames():
    error = _decode_error(_payload(_video(frames=0)))
    assert error.kind == "no_frames" and "zero frames" in error.message


def test_frame_counts_differ():
    error = _decode_error(_payload(_video(frames=3, audio_frames=4)))
    assert error.kind == "frame_count" and "rgb=3, audio=4" in error.message


def test_label_out_of_range_and_negative():
    payload = _payload(_video(labels=(1, 3862)))
    assert decode_record(payload, YT8M_FRAME).labels == [1, 3862]  # no num_classes: no range check
    error = _decode_error(payload, num_classes=3862)
    assert error.kind == "label_range" and "3862" in error.message
    assert _decode_error(_payload(_video(labels=(-1,))), num_classes=10).kind == "label_range"


def test_missing_id():
    message = pb.SequenceExample.FromString(_payload(_video()))
    del message.context.feature["id"]
    error = _decode_error(message.SerializeToString())
    assert error.kind == "missing_feature" and "'id', 'video_id'" in error.message


def test_segment_fields_of_different_lengths():
    message = pb.SequenceExample.FromString(_payload(_video()))
    message.context.feature["segment_labels"].int64_list.value.extend([1, 2])
    message.context.feature["segment_start_times"].int64_list.value.extend([0])
    message.context.feature["segment_scores"].float_list.value.extend([1.0, 0.0])
    assert _decode_error(message.SerializeToString()).kind == "feature_size"


def test_iter_videos_locates_decode_errors_and_skips_with_one_warning(tmp_path):
    path = tmp_path / "mixed.tfrecord"
    payloads = [_payload(_video("good0")), _payload(_video("short", frames=0)), _payload(_video("good1")),
                b"garbage!", _payload(_video("big", labels=(5000,))), _payload(_video("good2"))]
    with TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    offsets = index_records(path)
    with pytest.raises(RecordError) as info:
        list(iter_videos(path, schema=YT8M_FRAME))
    assert (info.value.index, info.value.offset, info.value.path) == (1, offsets[1], str(path))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = [v.id for v in iter_videos(path, schema=YT8M_FRAME, on_error="skip", num_classes=3862)]
    assert ids == ["good0", "good1", "good2"]
    (warning,) = caught
    text = str(warning.message)
    assert "skipped 3 bad record(s)" in text
    for index in (1, 3, 4):
        assert f"record {index}, byte offset {offsets[index]}" in text

    policy = ErrorPolicy("skip", max_examples=2)  # a caller-owned policy: counted, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(iter_videos(path, schema=YT8M_FRAME, errors=policy, num_classes=3862))) == 3
    assert policy.count == 3 and len(policy.examples) == 2
    assert policy.counts_by_kind == {"no_frames": 1, "not_a_record": 1, "label_range": 1}


def test_error_policy_and_record_error_survive_pickling():
    error = RecordError("bad", path="a.tfrecord", index=3, offset=99, kind="payload_crc")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.path, clone.index, clone.offset, clone.kind, str(clone)) == (
        "a.tfrecord", 3, 99, "payload_crc", "a.tfrecord, record 3, byte offset 99: bad")
    with pytest.raises(ValueError, match="on_error"):
        ErrorPolicy("ignore")
    with pytest.raises(RecordError):
        ErrorPolicy("error").handle(error)
