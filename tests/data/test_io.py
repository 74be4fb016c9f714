"""iter_videos / write_videos: path expansion, schema auto-detection, options, round trips."""

import os
import shutil
import warnings

import numpy as np
import pytest

from videopool.data import Video, iter_videos, write_videos
from videopool.data.io import expand_paths
from videopool.data.schema import YT8M_FRAME, FeatureSpec, Schema


def _videos(n, frames=(3, 5), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = int(rng.integers(*frames))
        out.append(Video(f"v{i}", [i % 7, 10 + i % 3], {"rgb": rng.integers(0, 256, (t, 1024), dtype=np.uint8),
                                                         "audio": rng.integers(0, 256, (t, 128), dtype=np.uint8)}))
    return out


def test_write_then_iterate_round_trip(tmp_path):
    videos = _videos(6)
    assert write_videos(tmp_path / "a.tfrecord", videos) == 6  # schema picked from the feature names
    back = list(iter_videos(tmp_path / "a.tfrecord", dequantize=False))
    assert [v.id for v in back] == [v.id for v in videos]
    for got, want in zip(back, videos):
        assert got.labels == want.labels
        assert all(np.array_equal(got.features[k], want.features[k]) for k in ("rgb", "audio"))
    floats = next(iter_videos(tmp_path / "a.tfrecord"))
    assert floats.features["rgb"].dtype == np.float32


def test_glob_patterns_are_expanded_and_sorted(tmp_path):
    for name, seed in [("train-2.tfrecord", 2), ("train-0.tfrecord", 0), ("train-1.tfrecord", 1)]:
        write_videos(tmp_path / name, [Video(name, [], _videos(1, seed=seed)[0].features)])
    (tmp_path / "notes.txt").write_text("not a shard")
    ids = [v.id for v in iter_videos(str(tmp_path / "train-*.tfrecord"))]
    assert ids == ["train-0.tfrecord", "train-1.tfrecord", "train-2.tfrecord"]
    assert expand_paths(tmp_path) == sorted(str(tmp_path / f"train-{i}.tfrecord") for i in range(3))
    assert expand_paths([str(tmp_path / "train-2*"), str(tmp_path / "train-0*")]) == [
        str(tmp_path / "train-2.tfrecord"), str(tmp_path / "train-0.tfrecord")]  # order of the patterns kept


def test_pattern_matching_nothing_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "validate*.tfrecord")
    with pytest.raises(FileNotFoundError, match="validate\\*.tfrecord"):
        list(iter_videos(pattern))
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(iter_videos(tmp_path / "missing.tfrecord"))
    with pytest.raises(FileNotFoundError, match="no .tfrecord files|contains no"):
        list(iter_videos(tmp_path))


def test_schema_is_detected_from_the_first_record(fixtures_dir):
    video_level = list(iter_videos(os.path.join(fixtures_dir, "video_level.tfrecord")))
    assert [v.features["mean_rgb"].shape for v in video_level] == [(1, 1024)] * 4
    frame_level = list(iter_videos(os.path.join(fixtures_dir, "frame_level.tfrecord")))
    assert [v.num_frames for v in frame_level] == [5, 1, 17, 3, 300]
    assert [v.id for v in frame_level][3] == "legacy"  # 2017 key video_id


def test_num_classes_and_max_frames(fixtures_dir):
    path = os.path.join(fixtures_dir, "frame_level.tfrecord")
    assert len(list(iter_videos(path, num_classes=3862))) == 5
    assert max(v.num_frames for v in iter_videos(path, max_frames=10)) == 10
    with pytest.raises(Exception, match=r"label id\(s\) \[3861\] outside \[0, 100\)"):
        list(iter_videos(path, num_classes=100))


def test_rgb_only_schema_reads_only_rgb(fixtures_dir):
    videos = list(iter_videos(os.path.join(fixtures_dir, "frame_level.tfrecord"), schema=YT8M_FRAME.select("rgb")))
    assert all(list(v.features) == ["rgb"] for v in videos)


def test_write_videos_video_level_and_custom_schema(tmp_path):
    vectors = [Video("m", [1], {"mean_rgb": np.full(1024, 0.25, np.float32), "mean_audio": np.zeros(128, np.float32)})]
    write_videos(tmp_path / "v.tfrecord", vectors)
    (video,) = iter_videos(tmp_path / "v.tfrecord")
    assert video.features["mean_rgb"].shape == (1, 1024) and float(video.features["mean_rgb"][0, 0]) == 0.25
    custom = Schema((FeatureSpec("flow", 8, "float"),))
    write_videos(tmp_path / "f.tfrecord", [Video("c", [], {"flow": np.ones((2, 8), np.float32)})], schema=custom)
    (video,) = iter_videos(tmp_path / "f.tfrecord")  # inferred: frame level, float feature "flow"
    assert np.array_equal(video.features["flow"], np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="not the YouTube-8M ones"):
        write_videos(tmp_path / "g.tfrecord", [Video("c", [], {"flow": np.ones((2, 8))})])


def test_skip_mode_across_files_keeps_going(fixtures_dir, tmp_path):
    for name in ("frame_level.tfrecord", "corrupt_payload_crc.tfrecord"):
        shutil.copy(os.path.join(fixtures_dir, name), tmp_path / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = [v.id for v in iter_videos(str(tmp_path / "*.tfrecord"), on_error="skip")]
    # corrupt_payload_crc sorts first; its record 0 is dropped.
    assert ids == ["vidB", "vidC", "legacy", "long", "vidA", "vidB", "vidC", "legacy", "long"]
    assert len(caught) == 1 and "skipped 1 bad record" in str(caught[0].message)
