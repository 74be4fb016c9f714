"""The NeXtVLAD named configurations: parameter counts (spec §6.2), per-modality sizes, the SE gating's config,
padding through the whole model, and export through ``videopool.inference.export_model``."""

from __future__ import annotations

import pytest
import torch

from videopool.layers import NeXtVLAD, SEContextGating
from videopool.models import ConfigError, count_parameters, create_model, get_recipe

COUNTS = [("nextvlad_k128_g8", 88_889_378), ("nextvlad_k112_g8_h2048", 78_643_170)]


@pytest.mark.parametrize("name, expected", COUNTS)
def test_parameter_counts_equal_the_spec(name, expected):
    model = create_model(name, device="meta", num_classes=3862)
    assert count_parameters(model) == expected
    small = create_model(name + "_small", device="meta", num_classes=3862)
    assert 1_000_000 < count_parameters(small) < 10_000_000


def test_k128_parts_and_per_modality_sizes():
    model = create_model("nextvlad_k128_g8", device="meta")
    video, audio = model.poolings["rgb"].pooling, model.poolings["audio"].pooling
    assert isinstance(video, NeXtVLAD) and isinstance(audio, NeXtVLAD)
    assert (video.cluster_size, video.groups, video.expansion) == (128, 8, 2)
    assert (audio.cluster_size, audio.groups, audio.expansion) == (64, 4, 2)  # K/2 and G/2
    assert model.poolings["rgb"].input_norm is None and not model.l2_normalize_frames
    assert count_parameters(video) == 4_313_096 and count_parameters(audio) == 112_388
    assert count_parameters(model.hidden) == 36_864 * 2048 + 2 * 2048  # no bias, BN
    assert model.hidden.bias is None and model.hidden.dropout.p == 0.5
    assert isinstance(model.gating, SEContextGating) and count_parameters(model.gating) == 1_049_088
    assert count_parameters(model.classifier) == 7_913_238
    assert create_model("nextvlad_k112_g8_h2048", device="meta").gating.reduction == 16


def test_changing_the_groups_of_one_modality_and_the_reduction():
    model = create_model("nextvlad_k128_g8_small", **{"pooling.per_modality.audio.options.groups": 2,
                                                     "gating.reduction": 4})
    assert model.poolings["audio"].pooling.groups == 2 and model.poolings["rgb"].pooling.groups == 8
    assert model.gating.reduce_weight.shape == (256, 64)
    with pytest.raises(ConfigError, match="gating.reduction"):
        create_model("nextvlad_k128_g8_small", **{"gating.reduction": 0})
    with pytest.raises(ConfigError, match="reduction"):
        create_model("nextvlad_k128_g8_small", **{"gating.reductoin": 4})
    with pytest.raises(ConfigError, match="'se'"):
        create_model("nextvlad_k128_g8_small", **{"gating.type": "sse"})


def test_recipes_follow_the_reference_scripts():
    local, final = get_recipe("nextvlad_k128_g8"), get_recipe("nextvlad_k112_g8_h2048")
    for recipe in (local, final):
        assert recipe["frame_selection"] == "all" and recipe["num_frames"] == 300
        assert recipe["batch_size"] == 160 and recipe["learning_rate"] == 2e-4 and recipe["lr_decay"] == 0.8
        assert recipe["clip_mode"] == "per_tensor" and recipe["loss"] == "bce_sum"
    # the learning rate steps every 12,500 (local) / 15,625 (final) steps of 2 towers x 80
    assert local["lr_decay_examples"] // local["batch_size"] == 12_500
    assert final["lr_decay_examples"] // final["batch_size"] == 15_625


def _batch(generator, batch=3, frames=9):
    inputs = {"rgb": torch.randn(batch, frames, 1024, generator=generator),
              "audio": torch.randn(batch, frames, 128, generator=generator)}
    lengths = torch.tensor([frames, 4, 1, frames][:batch])  # padded videos, one of a single frame
    mask = torch.arange(frames)[None] < lengths[:, None]
    return inputs, mask


def test_reference_padding_statistics_option_changes_training_only():
    """``padded_frames_in_batch_norm`` (the reference's cluster_bn statistics) is reachable from the config;
    a model with it trains on different statistics, and evaluates identically."""
    torch.manual_seed(0)
    default = create_model("nextvlad_k128_g8_small", num_classes=7)
    reference = create_model("nextvlad_k128_g8_small", num_classes=7,
                             **{"pooling.options.padded_frames_in_batch_norm": True})
    reference.load_state_dict(default.state_dict())
    assert reference.poolings["audio"].pooling.padded_frames_in_batch_norm
    inputs, mask = _batch(torch.Generator().manual_seed(1))
    for model in (default, reference):
        model.hidden.dropout.p = 0.0
    assert not torch.allclose(default.train()(inputs, mask), reference.train()(inputs, mask))
    reference.load_state_dict(default.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(default.eval()(inputs, mask), reference.eval()(inputs, mask))


def test_export_scores_like_the_model(tmp_path):
    from tests.export_check import assert_exports_like_the_model

    torch.manual_seed(0)
    model = create_model("nextvlad_k112_g8_h2048_small", num_classes=7)
    assert_exports_like_the_model(model, tmp_path, shapes=((3, 9), (4, 300)), seed=2)
