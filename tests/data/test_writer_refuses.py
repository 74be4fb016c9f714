"""The record writer refuses what the reader refuses (docs/reliability.md, section 2): every video it rejects
here would read back as a bad record, and every variant it accepts reads back intact."""

import numpy as np
import pytest

from videopool.data import RecordError, Video, write_videos
from videopool.data.codec import decode_record, encode_video
from videopool.data.schema import YT8M_FRAME
from videopool.data.video import SegmentAnnotations


def _video(frames=3, audio_frames=None, labels=(1, 2), segments=None):
    rng = np.random.default_rng(0)
    audio_frames = frames if audio_frames is None else audio_frames
    return Video("v", list(labels), {"rgb": rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
                                     "audio": rng.integers(0, 256, (audio_frames, 128), dtype=np.uint8)}, segments)


def _segments(labels, starts=(0, 5), scores=(1.0, 0.0)):
    return SegmentAnnotations(np.asarray(labels), np.asarray(starts), np.asarray(scores, np.float32))


@pytest.mark.parametrize("video, message, reader_kind", [
    (_video(frames=0), "'rgb' has zero frames", "no_frames"),
    (_video(frames=3, audio_frames=4), r"different frame counts \(rgb=3, audio=4\)", "frame_count"),
    (_video(labels=(1, -1)), r"labels must be integers >= 0, got -1", "label_range"),
    (_video(segments=_segments([4, -2])), r"segment labels must be integers >= 0, got -2", "label_range"),
    (_video(segments=_segments([4, 2], starts=(0,))), "segment fields have different lengths", "feature_size"),
])
def test_the_writer_refuses_what_the_reader_refuses(tmp_path, video, message, reader_kind):
    with pytest.raises(ValueError, match=message):
        encode_video(video, YT8M_FRAME)
    with pytest.raises(ValueError, match=message):
        write_videos(tmp_path / "out.tfrecord", [video])
    # the same video written anyway is indeed refused by the reader (num_classes makes -1 out of range)
    with pytest.raises(RecordError) as raised:
        decode_record(encode_video(video, YT8M_FRAME, validate=False), YT8M_FRAME, num_classes=10)
    assert raised.value.kind == reader_kind


@pytest.mark.parametrize("labels", [(1.5,), (2.0,), ("3",), (True,), (None,)])
def test_labels_must_be_integers(labels):
    with pytest.raises(ValueError, match="labels must be integers >= 0"):
        encode_video(_video(labels=labels), YT8M_FRAME)


def test_what_the_writer_accepts_reads_back_intact():
    labels = [0, np.int64(7), np.uint16(3)]  # python and numpy integers
    video = _video(frames=1, labels=labels, segments=_segments(np.array([4, 0]), starts=np.array([0, 5])))
    decoded = decode_record(encode_video(video, YT8M_FRAME), YT8M_FRAME, num_classes=10, dequantize=False)
    assert decoded.labels == [0, 7, 3] and decoded.num_frames == 1
    assert decoded.segments.labels.tolist() == [4, 0]
    assert decode_record(encode_video(_video(labels=()), YT8M_FRAME), YT8M_FRAME).labels == []  # unlabelled
