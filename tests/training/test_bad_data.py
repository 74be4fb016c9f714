"""Bad data in training (docs/reliability.md, section 2), through the Python API on the tiny model: ``on_bad_record``
error (default) or skip with the run's list ``RUN/bad_records.jsonl``, its end summary and the threshold; the same
skips and data position after ``--resume``; train and validation shards checked before the first step; 0-step runs.
"""

import json
import os

import numpy as np
import pytest
import torch

from tests.bad_data import BAD_KINDS, write_damaged_shard
from tests.tiny_run import NUM_CLASSES, resume_tiny, tiny_videos, train_tiny
from videopool.core.schema import ConfigError
from videopool.data import RecordError, Video, write_videos
from videopool.data.errors import BadRecordLimitError
from videopool.data.preflight import ShardLayoutError
from videopool.models.checkpoint import read_weights
from videopool.training.run_log import read_metrics

SKIP = {"on_bad_record": "skip", "max_bad_records": 20, "num_classes": NUM_CLASSES, "bn_recompute_batches": 2}


@pytest.fixture(scope="module")
def damaged_data(tmp_path_factory):
    """``train-0`` (8 videos + one bad record of each kind), ``train-1`` (8 videos), ``validate-0`` (5 videos + the
    same 6 kinds); returns (root, {shard name: [(index, offset, kind)]})."""
    root = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(0)
    prototypes = rng.normal(0, 0.8, (NUM_CLASSES, 1152))
    bad = {"train-0": write_damaged_shard(root / "train-0.tfrecord", tiny_videos(rng, "a", 8, prototypes), NUM_CLASSES),
           "validate-0": write_damaged_shard(root / "validate-0.tfrecord", tiny_videos(rng, "v", 5, prototypes),
                                             NUM_CLASSES)}
    write_videos(root / "train-1.tfrecord", tiny_videos(rng, "b", 8, prototypes))
    return root, bad


def _listed(run):
    with open(run / "bad_records.jsonl") as f:
        return [json.loads(line) for line in f]


def _located(entries):
    return sorted((os.path.basename(e["path"]).split(".")[0], e["index"], e["offset"], e["kind"]) for e in entries)


def _expected(bad, *shards):
    return sorted((shard, *entry) for shard in shards for entry in bad[shard])


def test_error_is_the_default_and_stops_at_the_first_bad_record(damaged_data, tmp_path):
    root, bad = damaged_data
    with pytest.raises(RecordError) as raised:
        train_tiny(root, tmp_path / "run", num_classes=NUM_CLASSES, max_steps=8)
    error = raised.value
    assert error.path == str(root / "train-0.tfrecord") and (error.index, error.offset, error.kind) in bad["train-0"]
    assert not os.path.exists(tmp_path / "run" / "last.safetensors")


def test_skip_trains_on_the_good_videos_and_lists_each_bad_record_once(damaged_data, tmp_path):
    root, bad = damaged_data
    run = tmp_path / "run"
    summary = train_tiny(root, run, **SKIP, epochs=2, val_data=[str(root / "validate-*.tfrecord")])
    assert summary["step"] == 8 and summary["examples_seen"] == 32  # 16 good videos, batch 4, two epochs
    listed = _listed(run)  # two epochs, two validations, BN refreshes: still each record once
    assert _located(listed) == _expected(bad, "train-0", "validate-0")
    assert sorted(e["data"] for e in listed) == ["train"] * 6 + ["val"] * 6
    assert all(e["message"] and e["epoch"] == 0 for e in listed if e["data"] == "train")
    assert summary["bad_records"] == {"count": 12, "train": 6, "val": 6, "by_kind": dict.fromkeys(BAD_KINDS, 2),
                                      "path": str(run / "bad_records.jsonl")}
    (end,) = [r for r in read_metrics(str(run)) if r["kind"] == "bad_records"]
    assert (end["step"], end["count"], end["train"], end["val"], end["kind_truncated"]) == (8, 12, 6, 6, 2)
    val = [r for r in read_metrics(str(run)) if r["kind"] == "val"]
    assert [r["num_videos"] for r in val] == [5, 5]  # the validation videos that are intact


def test_the_threshold_stops_the_run_naming_the_list(damaged_data, tmp_path):
    root, _ = damaged_data
    run = tmp_path / "run"
    with pytest.raises(BadRecordLimitError) as raised:  # default: 1% of the records read, at least one
        train_tiny(root, run, on_bad_record="skip", num_classes=NUM_CLASSES, max_steps=8)
    assert "--train-data" in str(raised.value) and str(run / "bad_records.jsonl") in str(raised.value)
    assert len(_listed(run)) == raised.value.count >= 2


def test_a_resumed_run_skips_the_same_records_and_keeps_its_data_position(damaged_data, tmp_path):
    root, bad = damaged_data
    settings = {**SKIP, "hidden.dropout": 0.3}
    full = train_tiny(root, tmp_path / "full", **settings, max_steps=6)
    train_tiny(root, tmp_path / "part", **settings, max_steps=2)  # "killed" mid-epoch, after 2 of 4 batches
    resumed = resume_tiny(tmp_path / "part", max_steps=6)
    assert resumed["step"] == 6 and resumed["examples_seen"] == full["examples_seen"] == 24
    a = read_weights(str(tmp_path / "full" / "last.safetensors"))
    b = read_weights(str(tmp_path / "part" / "last.safetensors"))
    assert all(torch.equal(a[name], b[name]) for name in a)
    # the replayed batches met the same bad records again: listed once, as in the uninterrupted run
    assert _located(_listed(tmp_path / "part")) == _located(_listed(tmp_path / "full")) == _expected(bad, "train-0")
    assert resumed["bad_records"]["train"] == 6


# -- checked before the first step --------------------------------------------------------------------------

def _no_step_ran(run):
    records = read_metrics(str(run)) if os.path.exists(run / "metrics.jsonl") else []
    assert not [r for r in records if r["kind"] == "train"] and not os.path.exists(run / "last.safetensors")


def _video_level(path, labels=(1,)):
    rng = np.random.default_rng(2)
    write_videos(path, [Video(f"m{i}", list(labels), {"mean_rgb": rng.normal(size=1024).astype(np.float32),
                                                      "mean_audio": rng.normal(size=128).astype(np.float32)})
                        for i in range(4)])
    return str(path)


def test_wrong_validation_data_fails_before_the_first_step(tiny_data, tmp_path):
    settings = {"num_classes": NUM_CLASSES, "epochs": 50}  # an epoch would be long: the check comes first
    video_level = _video_level(tmp_path / "video-level.tfrecord")
    with pytest.raises(ShardLayoutError, match=rf"--val-data: {video_level} is a video-level file"):
        train_tiny(tiny_data, tmp_path / "a", **settings, val_data=[video_level])
    _no_step_ran(tmp_path / "a")

    frames = {"rgb": np.zeros((3, 1024), np.float32), "audio": np.zeros((3, 128), np.float32)}
    other_vocabulary = tmp_path / "other-0.tfrecord"
    write_videos(other_vocabulary, [Video("w", [NUM_CLASSES + 1], frames)])
    with pytest.raises(RecordError, match="outside") as raised:  # labels of another vocabulary
        train_tiny(tiny_data, tmp_path / "b", **settings, val_data=[str(other_vocabulary)])
    assert (raised.value.kind, raised.value.path, raised.value.index) == ("label_range", str(other_vocabulary), 0)
    _no_step_ran(tmp_path / "b")

    unlabelled = tmp_path / "test-0.tfrecord"
    write_videos(unlabelled, [Video("t", [], frames)])
    with pytest.raises(ValueError, match="--val-data: no video has labels .*use `videopool predict`"):
        train_tiny(tiny_data, tmp_path / "c", **settings, val_data=[str(unlabelled)])
    _no_step_ran(tmp_path / "c")


def test_a_mixed_training_set_blames_the_odd_shard_and_the_named_override_reads_it(tiny_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    odd = _video_level(data / "a-video-level.tfrecord")  # sorts before the good shards
    for name in ("train-0.tfrecord", "train-1.tfrecord"):
        os.link(tiny_data / name, data / name)
    with pytest.raises(ShardLayoutError) as raised:
        train_tiny(data, tmp_path / "run", num_classes=NUM_CLASSES, max_steps=2,
                   train_data=[str(data / "*.tfrecord")])
    message = str(raised.value)
    assert raised.value.path == odd and "train-0" not in message and "train-1" not in message
    assert message.endswith("this model reads it with --features mean_rgb:1024,mean_audio:128")
    _no_step_ran(tmp_path / "run")
    # the option it names does read that kind of file (--features sets the modalities; the divisors follow)
    summary = train_tiny(data, tmp_path / "fixed", num_classes=NUM_CLASSES, max_steps=1, train_data=[odd],
                         modalities={"mean_rgb": 1024, "mean_audio": 128})
    assert summary["step"] == 1


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 0}, "epochs must be at least 1, got 0: training would run 0 steps"),
    ({"epochs": -1}, "epochs must be at least 1, got -1"),
    ({"max_steps": 0}, "max_steps must be at least 1, got 0"),
])
def test_zero_steps_is_an_error(tiny_data, tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        train_tiny(tiny_data, tmp_path / "run", num_classes=NUM_CLASSES, **settings)


def test_empty_training_data_is_an_error_not_an_untrained_checkpoint(tiny_data, tmp_path):
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="holds no video to train on: training would run 0 steps"):
        train_tiny(tiny_data, tmp_path / "run", num_classes=NUM_CLASSES, epochs=1, train_data=[str(empty)])
    _no_step_ran(tmp_path / "run")
