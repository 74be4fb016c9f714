"""TrainConfig: the strict parser of the model config, choice lists read from the implementing modules,
layered resolution, model keys split off under their dotted paths, every named recipe valid."""

import pytest
import yaml

from videopool.core.precision import PRECISIONS
from videopool.core.schema import ConfigError
from videopool.data.sampling import FRAME_SELECTIONS
from videopool.inference.predict import EVAL_SAMPLINGS
from videopool.models import NamedConfig, get_named_config, get_recipe, list_models, load_config, register_config
from videopool.models.losses import LOSSES
from videopool.training.api import build_config
from videopool.training.config import TrainConfig, parse_set_arguments, resolve_train_config
from videopool.training.optim import CLIP_MODES
from videopool.training.step import BF16_SCHEMES


def _layers(*dicts):
    return [(f"layer {i}", d) for i, d in enumerate(dicts)]


def test_from_dict_rejects_the_wrong_types_of_the_issue():
    with pytest.raises(ConfigError, match=r"training config: batch_size must be an integer, got 'abc'"):
        TrainConfig.from_dict({"batch_size": "abc", "clip_mode": "bogus", "precision": "fp64"})


@pytest.mark.parametrize(
    "field, value, choices",
    [
        ("clip_mode", "bogus", CLIP_MODES),
        ("precision", "fp64", PRECISIONS),
        ("loss", "bce_total", LOSSES),
        ("frame_selection", "every", FRAME_SELECTIONS),
        ("eval_sampling", "sequence", EVAL_SAMPLINGS),
        ("bf16_scheme", "master", BF16_SCHEMES),
    ],
)
def test_from_dict_rejects_bad_choices_naming_field_value_and_choices(field, value, choices):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({field: value})
    assert f"training config: {field} = {value!r} is not one of {list(choices)}" in str(info.value)
    assert TrainConfig.from_dict({field: choices[-1]}).to_dict()[field] == choices[-1]  # every choice is accepted


def test_choice_lists_are_the_implementing_modules():
    assert "none" in CLIP_MODES  # the recipe schema once disagreed with optim.clip_gradients
    assert TrainConfig.from_dict({"clip_mode": "none"}).clip_mode == "none"
    assert EVAL_SAMPLINGS == ("all", "uniform", "random")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"learning_rate": "fast"}, "learning_rate must be a number, got 'fast'"),
        ({"progress": "yes"}, "progress must be true or false, got 'yes'"),
        ({"max_steps": 1.5}, "max_steps must be an integer, got 1.5"),
        ({"adam_betas": [0.9]}, r"adam_betas must be a list of 2 values, got \[0.9\]"),
        ({"adam_betas": [0.9, "x"]}, r"adam_betas\[1\] must be a number, got 'x'"),
        ({"train_data": "a/*.tfrecord"}, "train_data must be a list, got 'a/\\*.tfrecord'"),
        ({"train_data": [3]}, r"train_data\[0\] must be a string, got 3"),
        ({"model_overrides": [1]}, "model_overrides must be a mapping"),
        ({"batch_size": 0}, "batch_size must be positive, got 0"),
        ({"learnin_rate": 1e-3}, r"unknown key 'learnin_rate'; did you mean 'learning_rate'\?"),
    ],
)
def test_from_dict_is_strict_about_types_and_keys(data, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(data)


def test_from_dict_converts_the_lossless_yaml_cases_and_round_trips():
    config = TrainConfig.from_dict(yaml.safe_load(
        "learning_rate: 2e-4\nlr_decay_examples: 1.0e+5\nadam_betas: [0.8, 0.99]\nmax_steps: null\n"))
    assert config.learning_rate == pytest.approx(2e-4) and config.lr_decay_examples == 100_000
    assert config.adam_betas == (0.8, 0.99) and config.max_steps is None
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="clip_mode = 'bogus'"):
        TrainConfig(clip_mode="bogus")  # the dataclass itself checks, not only from_dict


def test_unknown_key_names_the_source_and_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"layer 1: unknown key 'learning_rat'; did you mean 'learning_rate'\?"):
        resolve_train_config("m", _layers({}, {"learning_rat": 1e-3}))
    with pytest.raises(ConfigError, match=r"layer 0: unknown key 'hiden.size'; did you mean 'hidden.size'\?"):
        resolve_train_config("m", _layers({"hiden.size": 8}))
    with pytest.raises(ConfigError, match=r"layer 0: batch_size must be an integer, got 'abc'"):
        resolve_train_config("m", _layers({"batch_size": "abc"}, {"batch_size": 8}))


def test_a_former_leaf_shortcut_fails_naming_the_dotted_path():
    with pytest.raises(ConfigError, match=r"unknown key 'size'; did you mean 'hidden.size'\?"):
        resolve_train_config("m", _layers({"size": 8}))
    with pytest.raises(ConfigError, match=r"unknown key 'gating_type'; did you mean 'gating.type'\?"):
        resolve_train_config("m", _layers({"gating_type": "none"}))


def test_layers_override_in_order_and_model_keys_are_split_off_under_their_dotted_paths():
    recipe = {"batch_size": 80, "learning_rate": 2e-4}
    file_values = {"batch_size": 32, "hidden.size": 16, "cluster_size": 8}
    config = resolve_train_config("m", _layers(recipe, file_values, {"batch_size": 8, "train_data": "a/*.tfrecord",
                                                                     "pooling.cluster_size": 4}))
    assert config.batch_size == 8 and config.learning_rate == 2e-4
    assert config.model_overrides == {"hidden.size": 16, "pooling.cluster_size": 4}  # the alias resolved
    assert config.train_data == ["a/*.tfrecord"]
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_a_later_dotted_key_wins_over_an_earlier_nested_mapping():
    config = resolve_train_config("m", _layers({"pooling.cluster_size": 32, "pooling": {"cluster_size": 16}},
                                               {"cluster_size": 64}))
    assert list(config.model_overrides) == ["pooling", "pooling.cluster_size"]
    assert config.model_overrides["pooling.cluster_size"] == 64


def test_set_arguments_parse_yaml_scalars():
    assert parse_set_arguments(["lr_decay_examples=100000", "learning-rate=2e-4", "clip_mode=global",
                                "progress=false"]) == {
        "lr_decay_examples": 100000, "learning_rate": 2e-4, "clip_mode": "global", "progress": False}
    with pytest.raises(ValueError, match="key=value"):
        parse_set_arguments(["batch_size"])


@pytest.mark.parametrize("name", [name for name in list_models()])
def test_every_named_recipe_validates_with_train_config(name):
    recipe = get_recipe(name)
    assert recipe, f"{name} has no recipe"
    config = TrainConfig.from_dict(recipe, f"recipe of {name!r}")
    assert {key: config.to_dict()[key] for key in recipe} == recipe


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"batch_size": 4, "learning_rat": 0.1}, r"recipe of 'bad_recipe': unknown key 'learning_rat'.*learning_rate"),
        ({"loss": "bce_total"}, r"recipe of 'bad_recipe': loss = 'bce_total' is not one of \['bce_sum', 'bce_mean'\]"),
        ({"batch_size": "80"}, r"recipe of 'bad_recipe': batch_size must be an integer"),
    ],
)
def test_build_config_rejects_a_registered_recipe_that_train_config_does_not_accept(tmp_path, recipe, message):
    from videopool.models.registry import _REGISTRY

    named = NamedConfig(name="bad_recipe", model=get_named_config("avgpool_logistic").model, recipe=recipe)
    try:
        register_config(named)
        with pytest.raises(ConfigError, match=message):
            build_config("bad_recipe", None, {}, str(tmp_path / "run"))
    finally:
        _REGISTRY.pop("bad_recipe", None)


def test_a_user_yaml_recipe_is_validated_by_train_config(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {}\nrecipe: {learning_rat: 0.1}\n")
    named = load_config(path)  # the models layer keeps the recipe as data
    with pytest.raises(ConfigError, match=r"mine\.yaml: recipe: unknown key 'learning_rat'.*'learning_rate'"):
        TrainConfig.from_dict(named.recipe, f"{path}: recipe")


def test_build_config_validates_model_overrides_and_the_config_file(tmp_path):
    out = str(tmp_path / "run")
    config = build_config("gated_netvlad_256_small", None, {"cluster_size": 2, "hidden.size": 8}, out)
    assert config.model_overrides == {"pooling.cluster_size": 2, "hidden.size": 8}
    assert config.batch_size == get_recipe("gated_netvlad_256")["batch_size"]
    with pytest.raises(ConfigError, match="pooling.cluster_size must be an integer, got 'many'"):
        build_config("gated_netvlad_256_small", None, {"pooling.cluster_size": "many"}, out)
    with pytest.raises(ConfigError, match=r"command line: unknown key 'clip_mod'; did you mean 'clip_mode'\?"):
        build_config("gated_netvlad_256_small", None, {"clip_mod": "global"}, out)
    path = tmp_path / "train.yaml"
    path.write_text("model: gated_netvlad_256_small\nclip_mode: bogus\n")
    with pytest.raises(ConfigError, match=r"--config .*train\.yaml: clip_mode = 'bogus' is not one of"):
        build_config(None, str(path), {}, out)
    path.write_text("model: gated_netvlad_256_small\nclip_mode: none\nnum_mixtures: 3\n")
    config = build_config(None, str(path), {}, out)
    assert config.clip_mode == "none" and config.model_overrides == {"classifier.num_mixtures": 3}
