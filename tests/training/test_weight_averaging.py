"""In-training weight averaging (``weight_averaging: ema | swa``): what the checkpoints hold, checked against the
average computed from the trained weights of every step, and exact resume."""

import pytest
import torch

from videopool.core.schema import ConfigError
from videopool.models import create_model, load_model
from videopool.models.checkpoint import read_weights
from videopool.training import TrainConfig
from videopool.training.resume import load_resume, step_resume_path, step_weights_path
from tests.tiny_run import MODEL, MODEL_SETTINGS, NUM_CLASSES, resume_tiny, train_tiny


def _parameter_names() -> list[str]:
    model = create_model(MODEL, num_classes=NUM_CLASSES, **MODEL_SETTINGS)
    return [name for name, _ in model.named_parameters()]


def _trained(run, step):
    return load_resume(step_resume_path(str(run), step))["trained_weights"]


@pytest.mark.parametrize("mode", ["ema", "swa"])
def test_checkpoints_hold_the_average_of_the_trained_weights(tiny_data, tmp_path, mode):
    run = tmp_path / mode
    train_tiny(tiny_data, run, num_classes=NUM_CLASSES, max_steps=6, checkpoint_every=1, keep_checkpoints=0,
               weight_averaging=mode, ema_decay=0.6, swa_start=3)
    saved = read_weights(step_weights_path(str(run), 6))
    for name in _parameter_names():
        if mode == "swa":  # equal weights over the steps 3..6
            expected = sum(_trained(run, step)[name].double() for step in range(3, 7)) / 4
        else:  # starts at the weights of step 1, then θ̄ ← 0.6 θ̄ + 0.4 θ
            expected = _trained(run, 1)[name].double()
            for step in range(2, 7):
                expected = 0.6 * expected + 0.4 * _trained(run, step)[name].double()
        torch.testing.assert_close(saved[name].double(), expected, rtol=1e-5, atol=1e-6, msg=name)
    # the average is not the trained model, and best/last (what evaluate loads) are the average
    assert any(not torch.equal(saved[n], _trained(run, 6)[n]) for n in _parameter_names())
    model, info = load_model(str(run))
    assert info["step"] == 6 and all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_swa_before_its_start_saves_the_trained_weights(tiny_data, tmp_path):
    train_tiny(tiny_data, tmp_path / "r", num_classes=NUM_CLASSES, max_steps=2, weight_averaging="swa",
               swa_start=5, bn_recompute_batches=0)
    saved = read_weights(step_weights_path(str(tmp_path / "r"), 2))
    assert all(torch.equal(saved[k], v) for k, v in _trained(tmp_path / "r", 2).items())


@pytest.mark.parametrize("mode", ["ema", "swa"])
def test_resume_continues_the_average_exactly(tiny_data, tmp_path, mode):
    settings = {"num_classes": NUM_CLASSES, "weight_averaging": mode, "ema_decay": 0.5, "swa_start": 2}
    train_tiny(tiny_data, tmp_path / "full", max_steps=6, **settings)
    train_tiny(tiny_data, tmp_path / "part", max_steps=2, **settings)  # "killed" after step 2
    resume_tiny(tmp_path / "part", max_steps=6)
    for name in ("last.safetensors",):
        full, resumed = read_weights(str(tmp_path / "full" / name)), read_weights(str(tmp_path / "part" / name))
        assert full.keys() == resumed.keys()
        assert all(torch.equal(full[k], resumed[k]) for k in full), name
    assert all(torch.equal(_trained(tmp_path / "full", 6)[k], v) for k, v in _trained(tmp_path / "part", 6).items())


def test_bf16_master_weights_are_averaged_in_fp32_and_resume_exactly(tiny_data, tmp_path):
    # the hidden FC (2176 x 8) is held in bf16 with an fp32 master; the average must be of the masters
    settings = {"num_classes": NUM_CLASSES, "precision": "bf16", "clip_mode": "global", "bf16_master_min_numel": 1000,
                "weight_averaging": "swa", "checkpoint_every": 1, "keep_checkpoints": 0}
    train_tiny(tiny_data, tmp_path / "full", max_steps=3, **settings)
    train_tiny(tiny_data, tmp_path / "part", max_steps=1, **settings)
    resume_tiny(tmp_path / "part", max_steps=3)
    full, resumed = (read_weights(str(tmp_path / run / "last.safetensors")) for run in ("full", "part"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    expected = sum(_trained(tmp_path / "full", step)["hidden.weight"].double() for step in (1, 2, 3)) / 3
    assert full["hidden.weight"].dtype == torch.float32
    # the mean of the fp32 masters (a mean of their bf16 copies would be ~1e-3 away)
    torch.testing.assert_close(full["hidden.weight"].double(), expected, rtol=1e-6, atol=1e-7)


def test_config_checks_the_averaging_keys():
    with pytest.raises(ConfigError, match="weight_averaging"):
        TrainConfig(weight_averaging="mean")
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="swa_start"):
        TrainConfig(swa_start=-1)
