"""``videopool inspect``: summary figures on the fixtures, text and JSON output, and the CLI."""

import json
import os
import shutil

import pytest

from videopool.cli.main import main
from videopool.data.inspect import format_report, frame_histogram, inspect_shards
from videopool.data.vocabulary import read_vocabulary, write_vocabulary


@pytest.fixture
def shards(fixtures_dir, tmp_path):
    for name in ("frame_level.tfrecord", "segment_level.tfrecord", "corrupt_payload_crc.tfrecord"):
        shutil.copy(os.path.join(fixtures_dir, name), tmp_path / name)
    return tmp_path


def test_summary_figures(shards):
    report = inspect_shards(str(shards / "*.tfrecord"))
    data = report.to_dict()
    assert data["num_files"] == 3 and data["level"] == "frame"
    assert data["num_videos"] == 4 + 5 + 2 and data["num_records"] == 5 + 5 + 2
    assert data["features"] == [{"name": "rgb", "size": 1024, "encoding": "bytes"},
                                {"name": "audio", "size": 128, "encoding": "bytes"}]
    # frames: corrupt file keeps 1, 17, 3, 300; frame_level 5, 1, 17, 3, 300; segments 60, 45
    assert data["frames"]["min"] == 1 and data["frames"]["max"] == 300 and data["frames"]["count"] == 11
    assert {item["from"]: item["videos"] for item in data["frames_histogram"]}[1] == 7
    assert data["videos_without_labels"] == 2
    top = {item["id"]: item["videos"] for item in data["top_labels"]}
    assert top[5] == 2 + 2 and top[3861] == 2  # label 5: both segment videos + "long" in two shards
    assert data["segments"] == {"videos": 2, "rated": 6, "positives": 4, "classes": 2}
    bad = data["bad_records"]
    assert bad["count"] == 1 and bad["by_kind"] == {"payload_crc": 1}
    assert bad["examples"][0]["index"] == 0 and bad["examples"][0]["path"].endswith("corrupt_payload_crc.tfrecord")


def test_text_report_with_vocabulary(shards, tmp_path):
    vocabulary = tmp_path / "vocabulary.csv"
    write_vocabulary(vocabulary, {5: "Dog", 3861: "Last class"})
    text = format_report(inspect_shards(str(shards / "*.tfrecord")), read_vocabulary(vocabulary), top=3)
    assert "files: 3" in text and "videos: 11" in text
    assert "Dog" in text and "Last class" in text
    assert "bad records: 1 (payload_crc: 1)" in text and "record 0, byte offset 0" in text
    assert "#" * 40 in text  # the fullest histogram bin gets the full bar


def test_frame_histogram_bins():
    import numpy as np
    bins = frame_histogram(np.array([1, 30, 31, 300, 301, 450]), width=30, top=300)
    assert bins[0] == (1, 30, 2) and bins[1] == (31, 60, 1) and bins[9] == (271, 300, 1)
    assert bins[-1] == (301, 450, 2)


def test_cli_json_and_exit_codes(fixtures_dir, capsys):
    assert main(["inspect", os.path.join(fixtures_dir, "video_level.tfrecord"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["level"] == "video" and data["num_videos"] == 4
    assert main(["inspect", os.path.join(fixtures_dir, "corrupt_truncated.tfrecord")]) == 1  # bad records found
    assert "truncated" in capsys.readouterr().out
    assert main(["inspect", os.path.join(fixtures_dir, "nothing-*.tfrecord")]) == 2  # a user's mistake
    assert "no files match the pattern" in capsys.readouterr().err
    assert main(["inspect", os.path.join(fixtures_dir, "frame_level.tfrecord"), "--num-classes", "100"]) == 1
    assert "label_range: 1" in capsys.readouterr().out
