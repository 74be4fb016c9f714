"""``videopool import-tf`` on the real TF1 checkpoints of ``shared/fixtures/tf1-reference`` (see its README.md).

Each fixture is imported with the named configuration of its family and the reference's own command-line flags
(``NAME.json`` ``flags_command_line``, passed as ``--set``) plus ``l2_normalize_frames=false`` (the fixtures
recorded the model on raw inputs; the reference scripts L2-normalise outside the model). The run directory is
then an ordinary one: ``load_model`` rebuilds the model, which reproduces the recorded predictions on the
frames the reference pooled (WILLOW/NLVLAD: its ``frame_index`` draw), and ``evaluate``/``predict`` reproduce them
from a TFRecord of those frames. Then: ``train --init-from`` fine-tunes an imported run, and the mistakes a user
can make give exit 2 with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videopool.cli.main import main
from videopool.models import load_model

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf1-reference"
pytestmark = pytest.mark.skipif(not (FIXTURES / "willow_netvlad.ckpt.index").is_file(),
                                reason=f"TF1 reference fixtures not found at {FIXTURES}")

MODELS = {"willow_netvlad": "gated_netvlad_256", "willow_netvlad_gatedmoe": "gated_netvlad_256",
          "willow_netfv": "gated_netfv_128", "willow_netfv_gatedmoe": "gated_netfv_128",
          "nextvlad": "nextvlad_k128_g8", "nonlocal_netvlad": "nl_netvlad_128",
          "nonlocal_netvlad_shared2_avg": "nl_netvlad_128"}
PREDICTION_ATOL = 1e-6  # measured worst: 4.9e-7 (docs/import-tf.md)


def reference_flags(name: str) -> list[str]:
    """The fixture's command line (``--gating=True`` ...) as ``--set gating=True`` arguments."""
    flags = json.loads((FIXTURES / f"{name}.json").read_text())["flags_command_line"]
    return [arg for flag in flags for arg in ("--set", flag.removeprefix("--"))]


def import_fixture(name: str, out: Path, *extra: str) -> int:
    return main(["import-tf", str(FIXTURES / f"{name}.ckpt"), "--model", MODELS[name], "--out", str(out),
                 *reference_flags(name), "--set", "l2_normalize_frames=false", *extra])


def reference_frames(name: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """``(frames [B, N, 1152], mask or None, recorded)``: what the reference model pooled."""
    recorded = dict(np.load(FIXTURES / f"{name}.npz"))
    inputs = recorded["inputs"]
    if "frame_index" in recorded:  # WILLOW/NLVLAD sampled n frames per video, all of them valid
        return inputs[np.arange(len(inputs))[:, None], recorded["frame_index"]], None, recorded
    mask = np.arange(inputs.shape[1])[None] < recorded["num_frames"][:, None]
    return inputs, mask, recorded


def predict(model, frames: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    x = torch.from_numpy(frames)
    with torch.no_grad():
        out = model({"rgb": x[..., :1024], "audio": x[..., 1024:]}, None if mask is None else torch.from_numpy(mask))
    return out.numpy()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_imported_runs_reproduce_the_tf1_predictions(name, tmp_path, capsys):
    assert import_fixture(name, tmp_path / "run") == 0
    assert "imported " in capsys.readouterr().out
    model, info = load_model(str(tmp_path / "run"))
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    assert info["num_classes"] == meta["vocab_size"] and info["step"] == int(np.load(
        FIXTURES / f"{name}.weights.npz")["global_step"])
    assert model.config.pooling.cluster_size == meta["sizes"]["K"] and model.config.hidden.size == meta["sizes"]["H"]
    frames, mask, recorded = reference_frames(name)
    np.testing.assert_allclose(predict(model, frames, mask), recorded["predictions"], rtol=0, atol=PREDICTION_ATOL)
    train = info["train_config"]
    if "frame_index" in recorded:  # the reference's stochastic sampling of --iterations frames, also at inference
        assert (train["frame_selection"], train["eval_sampling"], train["num_frames"]) == (
            "random", "random", meta["sizes"]["n"])
    else:
        assert (train["frame_selection"], train["eval_sampling"]) == ("all", "all")
        assert model.config.pooling.options["padded_frames_in_batch_norm"] is True


def _write_records(path: Path, frames: np.ndarray, mask: np.ndarray | None, labels: list[list[int]]) -> None:
    from videopool.data import Video
    from videopool.data.io import write_videos
    from videopool.data.schema import dequantize, quantize

    videos = []
    for b, rows in enumerate(frames):
        if mask is not None:
            rows = rows[mask[b]]
        codes = quantize(rows)
        assert np.array_equal(dequantize(codes), rows)  # the fixture's inputs lie on the 8-bit grid: exact
        videos.append(Video(id=f"v{b}", labels=labels[b], features={"rgb": rows[:, :1024], "audio": rows[:, 1024:]}))
    write_videos(str(path), videos)


@pytest.mark.parametrize("name", ["willow_netvlad_gatedmoe", "nextvlad"])
def test_evaluate_and_predict_on_an_imported_run(name, tmp_path, capsys):
    from videopool.metrics import gap_at_k

    assert import_fixture(name, tmp_path / "run") == 0
    frames, mask, recorded = reference_frames(name)
    labels = [[1, 4], [0], [7, 8, 9]]
    data = tmp_path / "test.tfrecord"
    _write_records(data, frames, mask, labels)
    capsys.readouterr()
    # --sampling all feeds each stored video whole: the frames the reference sampled, so the result is exact
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(data), "--json", "--workers", "0",
                 "--top-k", "20"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    truth = np.zeros_like(recorded["predictions"])
    for b, ids in enumerate(labels):
        truth[b, ids] = 1
    assert metrics["gap"] == pytest.approx(gap_at_k(recorded["predictions"], truth, 20), abs=1e-6)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(tmp_path / "run"), "--data", str(data), "--out", str(out), "--top-k", "10",
                 "--workers", "0"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == 3
    for row in rows:
        video, pairs = row.split(",")
        values = pairs.split()
        scores = {int(values[i]): float(values[i + 1]) for i in range(0, len(values), 2)}
        expected = recorded["predictions"][int(video[1:])]
        assert sorted(scores) == list(range(10))
        np.testing.assert_allclose([scores[c] for c in range(10)], expected, rtol=1e-5)  # %g: 6 digits


def test_train_init_from_an_imported_run(tmp_path, tiny_data, capsys):
    """Fine-tuning starts from the imported weights (fresh optimizer and step counter)."""
    from tests.tiny_run import train_glob
    from videopool.models.checkpoint import read_info, read_weights

    assert import_fixture("willow_netvlad_gatedmoe", tmp_path / "run") == 0
    imported = read_weights(str(tmp_path / "run" / "last.safetensors"))
    # the imported model has V = 10 classes; the tiny data set's labels are in range
    assert main(["train", "--init-from", str(tmp_path / "run"), "--train-data", train_glob(tiny_data),
                 "--out", str(tmp_path / "tuned"), "--num-classes", "10", "--max-steps", "2", "--batch-size", "4",
                 "--lr", "1e-9", "--workers", "0", "--no-progress", "--set", "bn_recompute_batches=0",
                 "--set", "checkpoint_every=0"]) == 0
    tuned_path = tmp_path / "tuned" / "last.safetensors"
    tuned, info = read_weights(str(tuned_path)), read_info(str(tuned_path))
    assert info["step"] == 2 and info["model_config"] == read_info(str(tmp_path / "run" / "last.safetensors"))[
        "model_config"]
    # a learning rate of 1e-9 for 2 steps moves no weight by more than ~1e-8, so the start was the import
    for key in ("hidden.weight", "classifier.gate_weight", "poolings.rgb.pooling.cluster_weights"):
        assert torch.allclose(tuned[key], imported[key], atol=1e-6), key
    assert not torch.equal(tuned["hidden.weight"], imported["hidden.weight"])


def test_init_from_mistakes_exit_2(tmp_path, tiny_data, capsys):
    from tests.tiny_run import train_glob

    assert import_fixture("willow_netfv", tmp_path / "run") == 0
    common = ["--train-data", train_glob(tiny_data), "--num-classes", "10", "--workers", "0", "--max-steps", "1"]
    capsys.readouterr()
    assert main(["train", "--init-from", str(tmp_path / "run"), "--model", "gated_netvlad_256", "--out",
                 str(tmp_path / "a"), *common]) == 2
    assert "differs from the model 'gated_netfv_128' of --init-from" in capsys.readouterr().err
    assert main(["train", "--init-from", str(tmp_path / "nothing"), "--out", str(tmp_path / "b"), *common]) == 2
    assert "nothing' does not exist" in capsys.readouterr().err
    # the same model with another architecture: the stored config differs, named key by key
    assert main(["train", "--init-from", str(tmp_path / "run"), "--out", str(tmp_path / "c"), *common,
                 "--set", "hidden.size=4"]) == 2
    assert "was saved from a different model configuration" in capsys.readouterr().err


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("videopool import-tf: error: "), err
    return err[0]


def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    prefix = str(FIXTURES / "willow_netfv.ckpt")
    cases = [
        (["--model", "gated_netvlad_256"], "holds a netfv model, but --model is a netvlad configuration"),
        (["--model", "gated_netfv_128", "--set", "beforenorm=true"], "did you mean 'beforeNorm'?"),
        (["--model", "gated_netfv_128", "--set", "hidden.size=20"], "hidden1_weights [17408, 16] -> hidden.weight"),
        (["--model", "gated_netfv_128", "--set", "moe_prob_gating=true"],
         "with no variable in the checkpoint: classifier.prob_gating.weight"),
        (["--model", "gated_netfv_128", "--set", "gating=maybe"], "the reference flag gating is true or false"),
        (["--model", "no_such_model"], "unknown model 'no_such_model'"),
    ]
    for flags, message in cases:
        assert main(["import-tf", prefix, "--out", str(tmp_path / "run"), *flags]) == 2, flags
        assert message in _one_error(capsys), flags
    assert main(["import-tf", str(tmp_path / "missing.ckpt"), "--model", "gated_netfv_128", "--out",
                 str(tmp_path / "run")]) == 2
    assert "missing.ckpt.index' does not exist" in _one_error(capsys)
    assert not (tmp_path / "run" / "last.safetensors").exists()
    assert import_fixture("willow_netfv", tmp_path / "run") == 0
    assert import_fixture("willow_netfv", tmp_path / "run") == 2
    assert "already holds a run" in _one_error(capsys)


def test_rgb_eigenvalues_fold_linrongcs_preprocessing(tmp_path, capsys):
    eigenvalues = np.random.default_rng(2).uniform(0.01, 15.0, (2048, 1)).astype(np.float32)
    np.save(tmp_path / "eigenvals.npy", eigenvalues)
    assert import_fixture("nextvlad", tmp_path / "run", "--rgb-eigenvalues", str(tmp_path / "eigenvals.npy")) == 0
    model, info = load_model(str(tmp_path / "run"))
    assert info["imported_from"]["rgb_eigenvalues"] == str(tmp_path / "eigenvals.npy")
    frames, mask, recorded = reference_frames("nextvlad")
    raw = frames.astype(np.float64)  # the stored features whose pre-processing gives the recorded inputs
    raw[..., :1024] = raw[..., :1024] / (np.sqrt(eigenvalues[:1024, 0].astype(np.float64)) + 1e-4) + 4 / 512
    np.testing.assert_allclose(predict(model, raw.astype(np.float32), mask), recorded["predictions"], atol=2e-6)
    assert import_fixture("nextvlad", tmp_path / "other", "--rgb-eigenvalues", str(tmp_path / "none.npy")) == 2
    assert "--rgb-eigenvalues" in _one_error(capsys) and not (tmp_path / "other" / "last.safetensors").exists()
