"""End to end on a tiny data set: train -> checkpoint -> resume -> evaluate -> predict, and bad input."""

import csv
import json
import os

import numpy as np
import pytest
import torch

from videopool.cli.main import main
from videopool.data import Video, iter_videos, write_videos
from videopool.models.checkpoint import read_info, read_weights

NUM_CLASSES = 6
MODEL = ["--model", "gated_netvlad_256_small", "--set", "cluster_size=2", "--set", "hidden.size=8"]


def _videos(rng, prefix, count, prototypes):
    videos = []
    for i in range(count):
        labels = sorted(set(rng.choice(NUM_CLASSES, size=rng.integers(1, 3), replace=False).tolist()))
        frames = int(rng.integers(3, 9))
        signal = sum(prototypes[c] for c in labels)
        rgb = np.clip(signal[:1024] + rng.normal(0, 0.5, (frames, 1024)), -2, 2).astype(np.float32)
        audio = np.clip(signal[1024:] + rng.normal(0, 0.5, (frames, 128)), -2, 2).astype(np.float32)
        videos.append(Video(id=f"{prefix}{i:03d}", labels=labels, features={"rgb": rgb, "audio": audio}))
    return videos


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    prototypes = rng.normal(0, 0.8, (NUM_CLASSES, 1152))
    write_videos(root / "train-0.tfrecord", _videos(rng, "a", 8, prototypes))
    write_videos(root / "train-1.tfrecord", _videos(rng, "b", 8, prototypes))
    write_videos(root / "validate-0.tfrecord", _videos(rng, "v", 5, prototypes))
    write_videos(root / "validate-1.tfrecord", _videos(rng, "w", 4, prototypes))
    with open(root / "vocabulary.csv", "w") as f:
        f.write("Index,Name\n" + "".join(f"{i},thing {i}\n" for i in range(NUM_CLASSES)))
    with open(root / "small_vocabulary.csv", "w") as f:
        f.write("Index,Name\n0,a\n1,b\n")
    return root


def _train(data_dir, out, *extra):
    return main(["train", *MODEL, "--train-data", str(data_dir / "train-*.tfrecord"), "--out", str(out),
                 "--batch-size", "4", "--precision", "fp32", "--workers", "0", "--seed", "3", "--no-progress",
                 "--checkpoint-every", "2", *extra])


def test_resume_after_a_kill_gives_the_weights_of_an_uninterrupted_run(data_dir, tmp_path):
    # dropout makes the result depend on torch's RNG stream, which the resume file must restore
    classes = ["--num-classes", str(NUM_CLASSES), "--set", "hidden.dropout=0.3"]
    assert _train(data_dir, tmp_path / "full", *classes, "--max-steps", "6") == 0
    # "killed" after step 2 (mid-epoch: 16 videos / batch 4 = 4 steps per epoch), then resumed
    assert _train(data_dir, tmp_path / "part", *classes, "--max-steps", "2") == 0
    assert read_info(str(tmp_path / "part" / "last.safetensors"))["step"] == 2
    assert main(["train", "--out", str(tmp_path / "part"), "--resume", "--max-steps", "6", "--no-progress"]) == 0
    full = read_weights(str(tmp_path / "full" / "last.safetensors"))
    resumed = read_weights(str(tmp_path / "part" / "last.safetensors"))
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    info = read_info(str(tmp_path / "full" / "last.safetensors"))
    assert info["step"] == 6 and info["examples_seen"] == 24 and info["num_classes"] == NUM_CLASSES
    assert info["model_config"]["pooling"]["cluster_size"] == 2
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == [
        "step-000002.safetensors", "step-000004.safetensors", "step-000006.safetensors"]


def test_bf16_training_keeps_fp32_checkpoints_and_resumes_exactly(data_dir, tmp_path):
    # hold every matrix of >= 1000 weights (the hidden FC, 2176 x 8) in bf16 with fp32 masters
    args = ["--num-classes", str(NUM_CLASSES), "--precision", "bf16", "--set", "clip_mode=global",
            "--set", "bf16_master_min_numel=1000"]
    assert _train(data_dir, tmp_path / "full", *args, "--max-steps", "3") == 0
    assert _train(data_dir, tmp_path / "part", *args, "--max-steps", "1") == 0
    assert main(["train", "--out", str(tmp_path / "part"), "--resume", "--max-steps", "3", "--no-progress"]) == 0
    full = read_weights(str(tmp_path / "full" / "last.safetensors"))
    resumed = read_weights(str(tmp_path / "part" / "last.safetensors"))
    assert all(t.dtype == torch.float32 for t in full.values() if t.is_floating_point())
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    # the checkpoint holds the fp32 masters, not their bf16 copies
    hidden = full["hidden.weight"]
    assert (hidden != hidden.bfloat16().float()).any()


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    code = _train(data_dir, out, "--vocabulary", str(data_dir / "vocabulary.csv"), "--max-steps", "8",
                  "--val-data", str(data_dir / "validate-*.tfrecord"), "--eval-every", "4")
    assert code == 0
    return out


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
    train = [r for r in records if r["kind"] == "train"]
    assert train and all(np.isfinite(r["loss"]) and r["lr"] == pytest.approx(2e-4) for r in train)


def _direct_predictions(run, data_glob):
    """Predictions computed one video at a time without padding, the obviously-correct way."""
    from videopool.models import load_model

    model, _ = load_model(str(run / "best.safetensors"))
    ids, scores, labels = [], [], []
    with torch.no_grad():
        for video in iter_videos(data_glob):
            frames = {k: torch.as_tensor(np.asarray(v, dtype=np.float32))[None] for k, v in video.features.items()}
            scores.append(model(frames, None)[0])
            row = torch.zeros(NUM_CLASSES)
            row[video.labels] = 1
            ids.append(video.id)
            labels.append(row)
    return ids, torch.stack(scores), torch.stack(labels)


def test_evaluate_matches_an_unbatched_computation(trained_run, data_dir, tmp_path, capsys):
    from videopool.metrics import gap_at_k, hit_at_one

    glob = str(data_dir / "validate-*.tfrecord")
    assert main(["evaluate", str(trained_run), "--data", glob, "--json", "--batch-size", "4",
                 "--workers", "0", "--plots", str(tmp_path / "plots")]) == 0
    result = json.loads(capsys.readouterr().out)
    _, scores, labels = _direct_predictions(trained_run, glob)
    assert result["num_videos"] == 9
    assert result["gap"] == pytest.approx(gap_at_k(scores, labels, 20), abs=1e-6)
    assert result["hit_at_1"] == pytest.approx(float(np.mean(hit_at_one(scores, labels))), abs=1e-6)
    assert sorted(os.listdir(tmp_path / "plots")) == ["ap_vs_frequency.png", "precision_recall.png"]
    assert main(["evaluate", str(trained_run), "--data", glob, "--workers", "0"]) == 0
    table = capsys.readouterr().out
    assert "GAP@" in table and "G-TF1" in table and "G-TF2" in table


def test_predict_writes_the_kaggle_csv(trained_run, data_dir, tmp_path):
    glob = str(data_dir / "validate-*.tfrecord")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(trained_run), "--data", glob, "--out", str(out), "--top-k", "3",
                 "--workers", "0", "--with-names", "--vocabulary", str(data_dir / "vocabulary.csv")]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0][:2] == ["VideoId", "LabelConfidencePairs"]
    ids, scores, _ = _direct_predictions(trained_run, glob)
    by_id = {row[0]: row for row in rows[1:]}
    assert sorted(by_id) == sorted(ids)
    for video_id, row_scores in zip(ids, scores):
        tokens = by_id[video_id][1].split()
        classes = [int(t) for t in tokens[0::2]]
        assert classes == torch.topk(row_scores, 3).indices.tolist()
        assert [float(t) for t in tokens[1::2]] == pytest.approx(torch.topk(row_scores, 3).values.tolist(), rel=1e-5)
        assert by_id[video_id][2] == "|".join(f"thing {c}" for c in classes)


def test_bf16_inference_uses_bf16_weights_and_stays_close(trained_run, data_dir, capsys):
    glob = str(data_dir / "validate-*.tfrecord")
    results = {}
    for precision in ("fp32", "bf16"):
        assert main(["evaluate", str(trained_run), "--data", glob, "--json", "--workers", "0",
                     "--precision", precision]) == 0
        results[precision] = json.loads(capsys.readouterr().out)
    assert results["bf16"]["loss"] == pytest.approx(results["fp32"]["loss"], rel=0.05)


def test_compiled_inference_gives_the_eager_scores(trained_run, data_dir, tmp_path, capsys):
    """--compile pads every batch to a fixed frame count (and >= 2 videos) for one static graph; the scores and
    metrics must not change. Batch size 4 over 9 videos ends with a batch of 1, which is padded to 2."""
    glob = str(data_dir / "validate-*.tfrecord")
    capsys.readouterr()  # whatever the trained_run fixture printed
    results = {}
    for flags in ([], ["--compile"]):
        assert main(["evaluate", str(trained_run), "--data", glob, "--json", "--workers", "0", "--batch-size", "4",
                     *flags]) == 0
        results[bool(flags)] = json.loads(capsys.readouterr().out)
        out = tmp_path / f"predictions{len(flags)}.csv"
        assert main(["predict", str(trained_run), "--data", glob, "--out", str(out), "--workers", "0",
                     "--batch-size", "4", "--top-k", "3", *flags]) == 0
        assert "wrote top-3 predictions for 9 videos" in capsys.readouterr().out
    for key in ("gap", "hit_at_1", "perr", "map", "loss", "num_videos"):
        assert results[True][key] == pytest.approx(results[False][key], rel=1e-5), key
    eager, compiled = (list(csv.reader(open(tmp_path / f"predictions{n}.csv"))) for n in (0, 1))
    assert [row[0] for row in compiled] == [row[0] for row in eager]
    for row_eager, row_compiled in zip(eager[1:], compiled[1:]):
        assert row_compiled[1].split()[0::2] == row_eager[1].split()[0::2]
        assert [float(t) for t in row_compiled[1].split()[1::2]] == pytest.approx(
            [float(t) for t in row_eager[1].split()[1::2]], rel=1e-4)


def _error(capsys):
    return capsys.readouterr().err


def test_unknown_config_key_names_the_closest_key(data_dir, tmp_path, capsys):
    assert _train(data_dir, tmp_path / "r", "--num-classes", "6", "--max-steps", "1", "--set", "clip_mod=global") == 2
    assert "Did you mean 'clip_mode'" in _error(capsys)


def test_data_glob_matching_nothing(data_dir, tmp_path, capsys):
    code = main(["train", *MODEL, "--train-data", str(data_dir / "nothing-*.tfrecord"), "--out", str(tmp_path / "r"),
                 "--num-classes", "6", "--max-steps", "1", "--workers", "0", "--no-progress"])
    assert code == 2 and "matches no file" in _error(capsys)
    assert main(["evaluate", str(tmp_path / "missing-run"), "--data", str(data_dir / "validate-*.tfrecord")]) == 2
    assert "does not exist" in _error(capsys)


def test_an_existing_run_is_not_overwritten(trained_run, data_dir, capsys):
    assert _train(data_dir, trained_run, "--num-classes", "6", "--max-steps", "1") == 2
    assert "pass --resume" in _error(capsys)


def test_resume_with_another_model_is_refused(trained_run, capsys):
    assert main(["train", "--model", "netvlad_128_small", "--out", str(trained_run), "--resume", "--no-progress"]) == 2
    assert "differs from the run's model" in _error(capsys)


def test_vocabulary_that_does_not_cover_the_labels(data_dir, tmp_path, capsys):
    code = _train(data_dir, tmp_path / "r", "--vocabulary", str(data_dir / "small_vocabulary.csv"), "--max-steps", "2")
    assert code == 2
    message = _error(capsys)
    assert "label" in message and "does it cover the data's label ids?" in message


def test_nan_loss_stops_with_step_and_batch_ids(data_dir, tmp_path, capsys):
    code = _train(data_dir, tmp_path / "r", "--num-classes", "6", "--max-steps", "8", "--checkpoint-every", "1",
                  "--lr", "1e30")
    assert code == 1
    message = _error(capsys)
    assert "at step" in message and "on the batch of videos [" in message
    assert "last good checkpoint" in message
    good = read_info(str(tmp_path / "r" / "last.safetensors"))
    weights = read_weights(str(tmp_path / "r" / "last.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert f"step {good['step']}" in message


def test_export_writes_a_program_that_scores_like_the_checkpoint(trained_run, tmp_path, capsys):
    from videopool.inference import load_exported
    from videopool.models import load_model

    model, info = load_model(str(trained_run))
    out = tmp_path / "model.pt2"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    assert "mask [B, N] bool -> probabilities [B, 6]" in capsys.readouterr().out
    program = torch.export.load(str(out)).module()  # plain torch, no videopool metadata needed
    _, metadata = load_exported(str(out))
    assert metadata["num_classes"] == NUM_CLASSES and metadata["modalities"] == {"rgb": 1024, "audio": 128}
    assert metadata["model_config"] == info["model_config"] and metadata["precision"] == "fp32"
    generator = torch.Generator().manual_seed(0)
    for batch, frames in ((1, 1), (5, 17), (3, 300)):  # batch size and frame count are free
        inputs = {name: torch.randn(batch, frames, size, generator=generator) for name, size in
                  metadata["modalities"].items()}
        mask = torch.ones(batch, frames, dtype=torch.bool)
        mask[0, frames // 2 + 1:] = False
        with torch.no_grad():
            torch.testing.assert_close(program(inputs, mask), model(inputs, mask), rtol=1e-5, atol=1e-6)

    bf16_out = tmp_path / "model_bf16.pt2"
    assert main(["export", str(trained_run), "--out", str(bf16_out), "--precision", "bf16"]) == 0
    bf16_program, bf16_metadata = load_exported(str(bf16_out))
    assert bf16_metadata["precision"] == "bf16"
    inputs = {name: torch.randn(4, 9, size, generator=generator) for name, size in metadata["modalities"].items()}
    mask = torch.ones(4, 9, dtype=torch.bool)
    with torch.no_grad():
        scores = bf16_program({k: v.bfloat16() for k, v in inputs.items()}, mask).float()
        torch.testing.assert_close(scores, model(inputs, mask), rtol=0.05, atol=0.02)


def test_export_refuses_recurrent_pooling_and_foreign_programs(tmp_path):
    from videopool.inference.export import ExportError, load_exported, trace
    from videopool.models import create_model

    with pytest.raises(ExportError, match="LSTMPooling cannot be exported"):
        trace(create_model("lstm_2x1024_small", num_classes=4))
    foreign = tmp_path / "foreign.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(3, 2),)), str(foreign))
    with pytest.raises(ValueError, match="not one written by videopool export"):
        load_exported(str(foreign))
