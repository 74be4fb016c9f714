"""``videopool ensemble select`` and ``build`` end to end on the tiny data: the selection's files, the built
checkpoint scored by ``evaluate`` (its GAP is the selection's, up to the float16 cache), ``predict`` and
``export``; the second select reads the cache; a user's mistake is one line and exit 2."""

import json

import pytest
import torch

from tests.tiny_run import validate_glob
from videopool.cli.main import main
from videopool.inference import load_exported
from videopool.models import load_model
from videopool.models.ensemble import EnsembleClassifier


def _candidates(trained_run):
    return [str(path) for path in sorted((trained_run / "checkpoints").glob("step-*.safetensors"))]  # 3 kept


@pytest.mark.slow  # three inference passes, a build, evaluate, predict and an export trace
def test_select_build_evaluate_predict_export(trained_run, tiny_data, tmp_path, capsys):
    data = validate_glob(tiny_data)
    selected = tmp_path / "select"
    args = ["ensemble", "select", *_candidates(trained_run), "--data", data, "--out", str(selected),
            "--workers", "0", "--no-progress", "--top-k", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 candidates on 9 videos, 6 classes (3 scored, 0 read from the cache" in out
    assert "MB per 1,000 videos per candidate" in out
    document = json.loads((selected / "selection.json").read_text())
    assert (selected / "gap_curve.png").stat().st_size > 1000
    assert document["picks"][0]["gap"] == max(c["gap"] for c in document["candidates"])
    assert [p["models"] for p in document["picks"]] == list(range(1, len(document["picks"]) + 1))
    assert sum(m["weight"] for m in document["members"]) == len(document["picks"])

    assert main(args) == 0
    assert "(0 scored, 3 read from the cache" in capsys.readouterr().out

    run = tmp_path / "ensemble"
    assert main(["ensemble", "build", str(selected / "selection.json"), "--out", str(run)]) == 0
    assert f"wrote {run / 'best.safetensors'}: {len(document['members'])} members" in capsys.readouterr().out
    model, info = load_model(str(run))
    assert isinstance(model, EnsembleClassifier)
    assert [m["weight"] for m in info["ensemble"]["members"]] == [m["weight"] for m in document["members"]]

    assert main(["evaluate", str(run), "--data", data, "--workers", "0", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert abs(metrics["gap"] - document["gap"]) < 2e-3  # the selection ranked float16 probabilities

    csv = tmp_path / "predictions.csv"
    assert main(["predict", str(run), "--data", data, "--out", str(csv), "--workers", "0"]) == 0
    assert len(csv.read_text().splitlines()) == 1 + 9
    capsys.readouterr()

    pt2 = tmp_path / "ensemble.pt2"
    assert main(["export", str(run), "--out", str(pt2)]) == 0
    program, metadata = load_exported(str(pt2))
    assert metadata["modalities"] == dict(model.config.modalities)
    generator = torch.Generator().manual_seed(0)
    for frames in (3, 17):
        inputs = {name: torch.randn(2, frames, size, generator=generator) for name, size in metadata["modalities"].items()}
        mask = torch.ones(2, frames, dtype=torch.bool)
        mask[1, 2:] = False
        with torch.no_grad():
            torch.testing.assert_close(program(inputs, mask), model(inputs, mask), rtol=1e-5, atol=1e-6)


def test_build_from_runs_weighs_repeats(trained_run, tmp_path, capsys):
    best = str(trained_run / "best.safetensors")
    last = sorted((trained_run / "checkpoints").glob("step-*.safetensors"))[0]
    assert main(["ensemble", "build", best, str(last), best, "--out", str(tmp_path / "e"), "--member-frames",
                 "all"]) == 0
    model, info = load_model(str(tmp_path / "e"))
    assert [m.weight for m in model.config.members] == [2.0, 1.0]
    assert model.frame_counts == [None, None]
    assert main(["ensemble", "build", best, str(last), "--out", str(tmp_path / "t"), "--member-frames",
                 "trained"]) == 0
    assert load_model(str(tmp_path / "t"))[0].frame_counts == [300, 300]  # the tiny runs train on 300 frames
    assert "300 frames (uniform)" in capsys.readouterr().out


def _error(capsys):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("videopool ensemble: error: "), captured.err
    return lines[0]


def test_user_mistakes_are_one_line(trained_run, tiny_data, tmp_path, capsys):
    assert main(["ensemble", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "e")]) == 2
    assert "missing" in _error(capsys)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["ensemble", "build", str(bad), "--out", str(tmp_path / "e")]) == 2
    assert "not a selection written by" in _error(capsys)
    assert main(["ensemble", "select", str(trained_run), "--data", str(tmp_path / "none-*.tfrecord"), "--out",
                 str(tmp_path / "s"), "--no-progress"]) == 2
    assert "matches no file" in _error(capsys)
    assert main(["ensemble", "build", str(trained_run), "--out", str(trained_run)]) == 2
    assert "holds a training run" in _error(capsys)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({"format": "videopool-ensemble-selection-1", "settings": {}, "members": [
        {"checkpoint": str(trained_run / "best.safetensors"), "weight": 1, "num_frames": None, "sha256": "0" * 64}]}))
    assert main(["ensemble", "build", str(changed), "--out", str(tmp_path / "e")]) == 2
    assert "changed after the selection scored it" in _error(capsys)
    with pytest.raises(SystemExit) as exit_:
        main(["ensemble", "select", str(trained_run), "--data", validate_glob(tiny_data), "--out",
              str(tmp_path / "s"), "--max-models", "0"])
    assert exit_.value.code == 2
    assert "videopool ensemble select: error: argument --max-models: must be a positive integer, got '0'" in (
        capsys.readouterr().err)
