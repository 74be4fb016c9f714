"""A short training run of the small NeXtVLAD mixture through the Python API (``build_config`` / ``train``), then
the run's checkpoint through ``load_model``, ``evaluate`` and ``export_model``, unchanged for a mixture."""

from __future__ import annotations

import os

import pytest
import torch

from tests.tiny_run import NUM_CLASSES, TRAIN_SETTINGS, train_glob, validate_glob
from videopool.data import make_loader
from videopool.inference import evaluate, export_model, load_exported
from videopool.models import MixtureClassifier, load_model

MODEL = "mix_nextvlad_3x_k112_g8_small"
SETTINGS = {"cluster_size": 4, "hidden.size": 16, "gating.reduction": 4}


@pytest.fixture(scope="module")
def mixture_run(tiny_data, tmp_path_factory):
    from videopool.training import build_config, num_classes_for, train

    out = tmp_path_factory.mktemp("mixture") / "run"
    config = build_config(MODEL, None, {**SETTINGS, **TRAIN_SETTINGS, "train_data": [train_glob(tiny_data)],
                                        "val_data": [validate_glob(tiny_data)], "num_classes": NUM_CLASSES,
                                        "max_steps": 4, "eval_every": 4, "bn_recompute_batches": 2},
                          os.fspath(out))
    summary = train(config, num_classes_for(config))
    return out, summary


def test_the_mixture_trains_and_evaluates_from_its_checkpoint(mixture_run, tiny_data):
    out, summary = mixture_run
    assert summary["step"] == 4
    model, info = load_model(str(out))
    assert isinstance(model, MixtureClassifier) and not model.training and len(model.branches) == 3
    assert info["model_config"]["mixture"] == {"branches": 3, "temperature": 3.0, "distillation_weight": 9.0,
                                               "padded_frames_in_gate": False}
    loader = make_loader([validate_glob(tiny_data)], num_classes=NUM_CLASSES, batch_size=4, strategy="all",
                         num_frames=300, shuffle=False, workers=0)
    metrics = evaluate(model, loader, loss=info["train_config"]["loss"])
    assert metrics["num_videos"] == 9 and 0 <= metrics["gap"] <= 1 and metrics["loss"] > 0
    assert metrics["gap"] == pytest.approx(summary["metrics"]["gap"], abs=1e-6)  # the run's own validation


def test_the_mixture_exports(mixture_run, tmp_path):
    out, _ = mixture_run
    model, _ = load_model(str(out))
    metadata = export_model(str(out), str(tmp_path / "mix.pt2"))
    assert metadata["model_config"]["mixture"]["branches"] == 3
    program, _ = load_exported(str(tmp_path / "mix.pt2"))
    generator = torch.Generator().manual_seed(0)
    frames = {"rgb": torch.randn(3, 5, 1024, generator=generator), "audio": torch.randn(3, 5, 128, generator=generator)}
    mask = torch.arange(5)[None] < torch.tensor([5, 2, 4])[:, None]
    with torch.no_grad():
        torch.testing.assert_close(program(frames, mask), model(frames, mask), rtol=1e-5, atol=1e-6)
