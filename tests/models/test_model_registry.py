"""The named-config registry: parameter counts of the standard configurations (spec §6), names, overrides."""

import pytest
import torch

from videopool.models import (
    ConfigError,
    UnknownModelError,
    count_parameters,
    create_model,
    get_named_config,
    get_recipe,
    list_models,
    model_from_config_dict,
)
from videopool.models.registry import SMALL_SUFFIX

# (name, num_classes, trainable parameters) from spec §6.1 / §6.2.
SPEC_COUNTS = [
    ("gated_netvlad_256", 3862, 321_528_380),
    ("gated_netvlad_256", 4716, 333_229_888),
    ("gated_netrvlad_256", 4716, 332_951_360),
    ("gated_netrvlad_256", 3862, 321_249_852),
    ("gated_netfv_128", 4716, 333_090_240),
    ("gated_soft_dbow_4096", 4716, 41_543_128),
    ("soft_dbow_8000", 4716, 41_712_680),
    ("gru_2x1200", 4716, 73_715_832),
    ("lstm_2x1024", 4716, 113_902_808),
]


@pytest.mark.parametrize("name, num_classes, expected", SPEC_COUNTS)
def test_parameter_counts_equal_the_spec(name, num_classes, expected):
    model = create_model(name, num_classes=num_classes, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert count_parameters(model) == expected


def test_mfb_fusion_block_has_the_spec_parameter_count():
    model = create_model("mfb_avgpool_mfb", device="meta")
    assert count_parameters(model.fusion) == 5_770_000


def test_mfb_and_fc_concat_fusions_have_equal_budgets():
    mfb = create_model("mfb_netvlad_mfb", device="meta")
    fc = create_model("mfb_netvlad_fc_concat", device="meta")
    assert count_parameters(mfb.fusion) == count_parameters(fc.fusion)


def test_every_named_config_has_a_small_twin_and_provenance():
    names = list_models()
    full = [name for name in names if not name.endswith(SMALL_SUFFIX)]
    assert len(full) >= 36
    for name in full:
        assert name + SMALL_SUFFIX in names
        entry = get_named_config(name)
        assert entry.description and entry.paper, name
    small = create_model("gated_netvlad_256_small", device="meta")
    assert small.config.pooling.cluster_size == 16 and small.config.hidden.size == 256
    assert count_parameters(small) < count_parameters(create_model("gated_netvlad_256", device="meta")) / 10


def test_list_models_pattern():
    assert list_models("gated_netvlad_*") == ["gated_netvlad_256", "gated_netvlad_256_small"]
    assert set(list_models("mfb_*_mfb")) == {"mfb_avgpool_mfb", "mfb_dbof_mfb", "mfb_netvlad_mfb"}
    # no wildcard: the names that contain it (the README writes `videopool models --pattern netvlad`)
    assert list_models("k112_g8_h2048") == ["nextvlad_k112_g8_h2048", "nextvlad_k112_g8_h2048_small"]
    assert list_models("netvlad") == [name for name in list_models() if "netvlad" in name]


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(UnknownModelError, match="did you mean 'gated_netvlad_256'"):
        create_model("gated_netvlad256")
    with pytest.raises(KeyError):
        get_recipe("no_such_model")


def test_create_model_overrides_and_unknown_override():
    model = create_model("gated_netvlad_256", num_classes=200, cluster_size=16, **{"hidden.size": 64}, device="meta")
    assert model.config.num_classes == 200 and model.output_size == 200
    assert model.poolings["rgb"].pooling.cluster_size == 16 and model.poolings["audio"].pooling.cluster_size == 8
    assert model.hidden.output_size == 64
    nested = create_model("gated_netvlad_256", num_classes=200, pooling={"cluster_size": 16}, hidden={"size": 64},
                          device="meta")
    assert nested.config == model.config
    assert create_model("gated_netvlad_256_small", num_classes=None, device="meta").config.num_classes == 3862
    with pytest.raises(ConfigError, match="did you mean 'num_classes'"):
        create_model("gated_netvlad_256", num_clases=200)
    with pytest.raises(ConfigError, match="unknown model key 'size'; did you mean 'hidden.size'"):
        create_model("gated_netvlad_256", size=64)


def test_recipes_follow_the_papers():
    netvlad = get_recipe("gated_netvlad_256")
    assert netvlad == {
        "batch_size": 80, "learning_rate": 2e-4, "lr_decay": 0.8, "lr_decay_examples": 4_000_000,
        "clip_gradient_norm": 1.0, "clip_mode": "per_tensor", "loss": "bce_sum", "frame_selection": "random",
        "num_frames": 300, "max_steps": 700_000, "regularization_penalty": 1.0,
    }  # fmt: skip
    lstm = get_recipe("lstm_2x1024")
    assert (lstm["batch_size"], lstm["num_frames"], lstm["lr_decay"]) == (128, 150, 0.9)
    mfb = get_recipe("mfb_dbof_mfb")
    assert (mfb["batch_size"], mfb["max_steps"]) == (128, 250_000)


def test_checkpoint_config_dict_rebuilds_an_identical_model():
    torch.manual_seed(0)
    model = create_model("gated_netfv_128_small", num_classes=7).eval()
    rebuilt = model_from_config_dict(model.config.to_dict()).eval()
    rebuilt.load_state_dict(model.state_dict())
    frames = {"rgb": torch.randn(2, 5, 1024), "audio": torch.randn(2, 5, 128)}
    torch.testing.assert_close(rebuilt(frames), model(frames))
    assert rebuilt.config == model.config


def test_a_yaml_file_is_loaded_explicitly_with_load_config(tmp_path):
    from videopool.models import NamedConfig, load_config

    path = tmp_path / "tiny.yaml"
    path.write_text(
        "model:\n  num_classes: 5\n  modalities: {rgb: 8}\n  pooling: {type: average}\n"
        "  classifier: {type: logistic}\nrecipe: {batch_size: 4}\n"
    )
    named = load_config(path)
    assert isinstance(named, NamedConfig) and named.name == "tiny" and named.recipe == {"batch_size": 4}
    model = create_model(named)
    assert model(({"rgb": torch.randn(2, 3, 8)})).shape == (2, 5)
    assert create_model(named, num_classes=7, device="meta").output_size == 7
    assert create_model(load_config(str(path)), device="meta").config == named.model


def test_a_yaml_path_is_not_a_model_name(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("model:\n  modalities: {rgb: 8}\n  pooling: {type: average}\n")
    with pytest.raises(UnknownModelError, match=r"unknown model '.*tiny\.yaml'.*load_config\(.*--config"):
        create_model(str(path))
    with pytest.raises(TypeError, match="load_config"):
        create_model(path)  # a pathlib.Path


def test_register_config_adds_the_name_and_its_small_twin():
    from videopool.models import NamedConfig, register_config
    from videopool.models.registry import _REGISTRY

    base = get_named_config("netvlad_128")
    named = NamedConfig(name="my_netvlad", model=base.model, recipe=base.recipe, small_overrides={"cluster_size": 4})
    try:
        register_config(named)
        assert create_model("my_netvlad_small", device="meta").poolings["audio"].pooling.cluster_size == 2
        with pytest.raises(ValueError, match="already registered"):
            register_config(named)
    finally:
        _REGISTRY.pop("my_netvlad", None)
        _REGISTRY.pop("my_netvlad_small", None)


def test_create_model_accepts_a_named_config_and_rejects_a_file_layout_dict():
    from videopool.models import NamedConfig

    data = get_named_config("avgpool_logistic").to_dict()
    named = NamedConfig.from_dict(data, "avgpool_logistic")
    assert named == get_named_config("avgpool_logistic")
    assert create_model(named, device="meta").config == get_named_config("avgpool_logistic").model
    assert create_model(data["model"], device="meta").config == named.model  # a model-config dict
    with pytest.raises(ConfigError, match=r"config-file layout.*NamedConfig\.from_dict"):
        create_model(data)
