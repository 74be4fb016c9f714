"""Custom features (docs/custom-features.md): a new modalities mapping makes any named configuration fit, the
per-modality settings follow it, and each trap a new user met is an error naming the fix — or works."""

import pytest
import torch

from videopool.cli.models import SMALL_MAX_PARAMETERS
from videopool.core.schema import ConfigError
from videopool.models import create_model, list_models
from videopool.models.registry import count_parameters

# the WILLOW configs with an audio divisor, gated Soft-DBoW with an audio per_modality, early fusion, NeXtVLAD
KEYED = ["gated_netvlad_256_small", "gated_soft_dbow_4096_small", "netvlad_256_early_small",
         "nextvlad_k128_g8_small", "mix_nextvlad_3x_k112_g8_small"]


@pytest.mark.parametrize("name", KEYED)
def test_a_new_modalities_mapping_fits_any_named_config(name):
    model = create_model(name, num_classes=4, modalities={"x": 12})
    assert list(model.config.modalities) == ["x"]
    assert model.config.pooling.cluster_size_divisor == {} and model.config.pooling.per_modality == {}
    model.eval()
    assert model({"x": torch.randn(2, 5, 12)}).shape == (2, 4)


def test_per_modality_settings_stay_for_the_modalities_that_remain():
    model = create_model("gated_soft_dbow_4096_small", num_classes=4, modalities={"x": 12, "audio": 128})
    pooling = model.config.pooling
    reference = create_model("gated_soft_dbow_4096_small", num_classes=4).config.pooling
    assert pooling.cluster_size_divisor == {"audio": reference.cluster_size_divisor["audio"]}
    assert pooling.per_modality == {"audio": reference.per_modality["audio"]}
    assert pooling.for_modality("x")["type"] == reference.type  # the new one gets the defaults


def test_a_dotted_new_modality_is_an_error_naming_features():
    with pytest.raises(ConfigError, match=r"would add feature 'x' beside 'rgb', 'audio'.*--features x:12"):
        create_model("gated_netvlad_256_small", **{"modalities.x": 12})
    resized = create_model("gated_netvlad_256_small", num_classes=3, **{"modalities.audio": 64})
    assert resized.config.modalities == {"rgb": 1024, "audio": 64}


def test_a_feature_name_with_a_dot_builds_and_saves_under_an_escaped_key(tmp_path):
    from videopool.models.checkpoint import load_model, save_weights

    model = create_model("gated_netvlad_256_small", num_classes=3, modalities={"mfcc.v1": 13, "audio": 128})
    keys = list(model.state_dict())
    assert any(k.startswith("poolings.mfcc%2Ev1.") for k in keys) and any(k.startswith("poolings.audio.") for k in keys)
    model.eval()
    frames = {"mfcc.v1": torch.randn(2, 4, 13), "audio": torch.randn(2, 4, 128)}
    expected = model(frames)
    path = tmp_path / "m.safetensors"
    save_weights(str(path), model.state_dict(), {"num_classes": 3, "model_config": model.config.to_dict()})
    loaded, _ = load_model(str(path))
    assert torch.equal(loaded.eval()(frames), expected)


def test_existing_state_dict_keys_do_not_change():
    keys = set(create_model("gated_netvlad_256_small", num_classes=3).state_dict())
    assert {k.split(".")[1] for k in keys if k.startswith("poolings.")} == {"rgb", "audio"}


@pytest.mark.parametrize("overrides, message", [
    ({"modalities.audio": -3}, "modalities.audio must be a positive integer, got -3"),
    ({"hidden.size": 0}, "hidden.size must be a positive integer or null, got 0"),
    ({"cluster_size": 0}, "pooling.cluster_size must be a positive integer or null, got 0"),
    ({"modalities": {"a.b": 3, "a%2Eb": 3}}, "map to the same module key"),
])
def test_bad_sizes_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        create_model("gated_netvlad_256_small", num_classes=3, **overrides)


def test_every_small_twin_is_small():
    # at the demo's 256 classes, and not far beyond the head's own size at YouTube-8M's 3,862
    for name in list_models("*_small"):
        at_demo = count_parameters(create_model(name, num_classes=256, device="meta"))
        at_yt8m = count_parameters(create_model(name, num_classes=3862, device="meta"))
        assert at_demo <= SMALL_MAX_PARAMETERS, (name, at_demo)
        assert at_yt8m <= 50_000_000, (name, at_yt8m)
