"""The training loop through the Python API (``build_config`` → ``num_classes_for`` → ``train``) on the tiny data
set of :mod:`tests.tiny_run`: checkpoints, exact resume (fp32 and bf16), the run directory, and stopping on a
non-finite loss. The command line around it is tested in tests/cli."""

import json
import os

import numpy as np
import pytest
import torch

from tests.tiny_run import MODEL, NUM_CLASSES, resume_tiny, train_settings, train_tiny
from videopool.core.schema import ConfigError
from videopool.data import RecordError
from videopool.models.checkpoint import read_info, read_weights
from videopool.training import NonFiniteLossError, build_config, num_classes_for, train


def test_resume_after_a_kill_gives_the_weights_of_an_uninterrupted_run(tiny_data, tmp_path):
    # dropout makes the result depend on torch's RNG stream, which the resume file must restore
    settings = {"num_classes": NUM_CLASSES, "hidden.dropout": 0.3}
    summary = train_tiny(tiny_data, tmp_path / "full", **settings, max_steps=6)
    assert summary["step"] == 6 and summary["run_dir"] == str(tmp_path / "full")
    # "killed" after step 2 (mid-epoch: 16 videos / batch 4 = 4 steps per epoch), then resumed
    train_tiny(tiny_data, tmp_path / "part", **settings, max_steps=2)
    assert read_info(str(tmp_path / "part" / "last.safetensors"))["step"] == 2
    resumed_summary = resume_tiny(tmp_path / "part", max_steps=6)
    assert resumed_summary["step"] == 6 and resumed_summary["examples_seen"] == summary["examples_seen"]
    full = read_weights(str(tmp_path / "full" / "last.safetensors"))
    resumed = read_weights(str(tmp_path / "part" / "last.safetensors"))
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    info = read_info(str(tmp_path / "full" / "last.safetensors"))
    assert info["step"] == 6 and info["examples_seen"] == 24 and info["num_classes"] == NUM_CLASSES
    assert info["model_config"]["pooling"]["cluster_size"] == 2
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == [
        f"step-{step:06d}.{kind}" for step in (2, 4, 6) for kind in ("resume.pt", "safetensors")]


def test_bf16_training_keeps_fp32_checkpoints_and_resumes_exactly(tiny_data, tmp_path):
    # hold every matrix of >= 1000 weights (the hidden FC, 2176 x 8) in bf16 with fp32 masters
    settings = {"num_classes": NUM_CLASSES, "precision": "bf16", "clip_mode": "global",
                "bf16_master_min_numel": 1000}
    train_tiny(tiny_data, tmp_path / "full", **settings, max_steps=3)
    train_tiny(tiny_data, tmp_path / "part", **settings, max_steps=1)
    resume_tiny(tmp_path / "part", max_steps=3)
    full = read_weights(str(tmp_path / "full" / "last.safetensors"))
    resumed = read_weights(str(tmp_path / "part" / "last.safetensors"))
    assert all(t.dtype == torch.float32 for t in full.values() if t.is_floating_point())
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    # the checkpoint holds the fp32 masters, not their bf16 copies
    hidden = full["hidden.weight"]
    assert (hidden != hidden.bfloat16().float()).any()


def test_training_writes_the_run_directory(trained_run):
    names = set(os.listdir(trained_run))
    assert {"config.yaml", "checkpoints", "last.safetensors", "best.safetensors", "resume.pt",
            "metrics.jsonl", "tb"} <= names
    records = [json.loads(line) for line in open(trained_run / "metrics.jsonl")]
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in val] == [4, 8]
    assert all(0 <= r["gap"] <= 1 and r["num_videos"] == 9 for r in val)
    best_step = max(val, key=lambda r: r["gap"])["step"]
    assert read_info(str(trained_run / "best.safetensors"))["step"] == best_step
    train_records = [r for r in records if r["kind"] == "train"]
    assert train_records and all(np.isfinite(r["loss"]) and r["lr"] == pytest.approx(2e-4) for r in train_records)


def test_the_vocabulary_gives_the_number_of_classes(trained_run, tiny_data):
    config = build_config(None, None, {}, str(trained_run), resume=True)
    assert config.vocabulary == str(tiny_data / "vocabulary.csv")
    assert num_classes_for(config) == NUM_CLASSES
    assert read_info(str(trained_run / "last.safetensors"))["num_classes"] == NUM_CLASSES


def test_nan_loss_stops_with_step_and_batch_ids(tiny_data, tmp_path):
    with pytest.raises(NonFiniteLossError) as raised:
        train_tiny(tiny_data, tmp_path / "r", num_classes=NUM_CLASSES, max_steps=8, checkpoint_every=1,
                   learning_rate=1e30)
    message = str(raised.value)
    assert "at step" in message and "on the batch of videos [" in message
    assert "last good checkpoint" in message
    good = read_info(str(tmp_path / "r" / "last.safetensors"))
    weights = read_weights(str(tmp_path / "r" / "last.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert f"step {good['step']}" in message


# --- mistakes the command line turns into exit code 2 (tests/cli) ------------------


def test_unknown_config_key_names_the_closest_key(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'clip_mod'; did you mean 'clip_mode'\?"):
        build_config(MODEL, None, train_settings(tiny_data, num_classes=NUM_CLASSES, max_steps=1,
                                                 clip_mod="global"), str(tmp_path / "r"))


def test_data_glob_matching_nothing(tiny_data, tmp_path):
    pattern = str(tiny_data / "nothing-*.tfrecord")
    config = build_config(MODEL, None, train_settings(tiny_data, train_data=[pattern], num_classes=NUM_CLASSES,
                                                      max_steps=1), str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match="matches no file") as raised:
        train(config, num_classes_for(config))
    assert pattern in str(raised.value)


def test_an_existing_run_is_not_overwritten(trained_run, tiny_data):
    with pytest.raises(ValueError, match="pass --resume"):
        build_config(MODEL, None, train_settings(tiny_data, num_classes=NUM_CLASSES, max_steps=1), str(trained_run))


def test_resume_with_another_model_is_refused(trained_run):
    with pytest.raises(ValueError, match="differs from the run's model"):
        build_config("netvlad_128_small", None, {}, str(trained_run), resume=True)


def test_resume_without_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        build_config(None, None, {}, str(tmp_path / "nothing"), resume=True)


def test_the_number_of_classes_is_required(tiny_data, tmp_path):
    config = build_config(MODEL, None, train_settings(tiny_data, max_steps=1), str(tmp_path / "r"))
    with pytest.raises(ValueError, match="--num-classes"):
        num_classes_for(config)


def test_vocabulary_that_does_not_cover_the_labels(tiny_data, tmp_path):
    config = build_config(MODEL, None, train_settings(tiny_data, vocabulary=str(tiny_data / "small_vocabulary.csv"),
                                                      max_steps=2), str(tmp_path / "r"))
    assert num_classes_for(config) == 2
    with pytest.raises(RecordError, match="label"):
        train(config, num_classes_for(config))

