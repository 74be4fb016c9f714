"""ModelConfig / Recipe parsing: round trips, strict keys with closest-match hints, overrides."""

import dataclasses

import pytest
import yaml

from videopool.models import ConfigError, ModelConfig, Recipe, apply_overrides, get_model_config, load_config_file
from videopool.models.overrides import resolve_key


def test_dict_round_trip_is_lossless():
    config = get_model_config("gated_soft_dbow_4096")
    data = config.to_dict()
    assert data["pooling"]["per_modality"] == {"audio": {"type": "soft_dbow"}}
    rebuilt = ModelConfig.from_dict(data)
    assert rebuilt == config
    assert rebuilt.to_dict() == data


def test_yaml_round_trip_preserves_modality_order(tmp_path):
    config = ModelConfig(modalities={"audio": 128, "rgb": 1024})
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"model": config.to_dict()}, sort_keys=False))
    loaded = load_config_file(path)
    assert loaded.name == "model"
    assert loaded.model == config
    assert list(loaded.model.modalities) == ["audio", "rgb"]
    assert loaded.recipe == Recipe()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"num_clases": 10}, "num_classes"),
        ({"pooling": {"cluster_sise": 8}}, "pooling.cluster_sise.*cluster_size"),
        ({"classifier": {"num_mixture": 2}}, "num_mixtures"),
        ({"gating": {"type": "contex"}}, "'context'"),
        ({"fusion": {"type": "mfb_fusion"}}, "'mfb'"),
        ({"hidden": {"activation": "relu7"}}, "'relu6'"),
        ({"pooling": {"cluster_size_divisor": {"audoi": 2}}}, "'audio'"),
        ({"pooling": {"per_modality": {"audio": {"cluster_sizes": 2}}}}, "cluster_size"),
    ],
)
def test_unknown_or_misspelled_keys_name_the_closest_valid_one(data, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"num_classes": "many"}, "num_classes must be an integer"),
        ({"input_batch_norm": "yes"}, "input_batch_norm must be true or false"),
        ({"modalities": {"rgb": "1024"}}, "modalities.rgb must be an integer"),
        ({"pooling": 5}, "pooling must be a mapping"),
        ({"fusion": {"stage": "early", "type": "mfb"}}, "must be 'concat'"),
        ({"modalities": {"rgb": 1024}, "fusion": {"type": "mfb"}}, "needs two modalities"),
    ],
)
def test_wrong_types_and_invalid_combinations_are_rejected(data, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(data)


def test_yaml_scientific_notation_without_dot_is_accepted_for_floats():
    # PyYAML reads "1e-6" as a string; a float field must still accept it.
    config = ModelConfig.from_dict(yaml.safe_load("classifier: {l2_penalty: 1e-6}"))
    assert config.classifier.l2_penalty == pytest.approx(1e-6)


def test_config_file_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {pooling: {type: netvlad}}\nrecipie: {batch_size: 4}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*'recipie'.*'recipe'"):
        load_config_file(path)
    path.write_text("model: {}\nrecipe: {learning_rat: 0.1}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*recipe\.learning_rat.*learning_rate"):
        load_config_file(path)
    path.write_text("model: {}\nrecipe: {loss: bce_total}\n")
    with pytest.raises(ConfigError, match="bce_sum"):
        load_config_file(path)


def test_recipe_has_exactly_the_training_keys():
    assert [f.name for f in dataclasses.fields(Recipe)] == [
        "batch_size", "learning_rate", "lr_decay", "lr_decay_examples", "clip_gradient_norm", "clip_mode",
        "loss", "frame_selection", "num_frames", "max_steps", "regularization_penalty",
    ]  # fmt: skip


def test_overrides_dotted_nested_and_shortcut_are_equivalent():
    base = get_model_config("gated_netvlad_256").to_dict()
    dotted = apply_overrides(base, {"pooling.cluster_size": 16, "hidden.size": 32})
    nested = apply_overrides(base, {"pooling": {"cluster_size": 16}, "hidden": {"size": 32}})
    shortcut = apply_overrides(base, {"cluster_size": 16, "size": 32})
    assert dotted == nested == shortcut
    assert dotted["pooling"]["cluster_size_divisor"] == {"audio": 2}  # nested merge keeps siblings
    assert base["pooling"]["cluster_size"] == 256  # the input is not mutated
    assert apply_overrides(base, {"gating_type": "none"})["gating"]["type"] == "none"
    options = apply_overrides(base, {"pooling.options.couple_weights": True})["pooling"]["options"]
    assert options == {"couple_weights": True}


@pytest.mark.parametrize(
    "key, message",
    [
        ("type", "ambiguous.*pooling.type"),
        ("hidden_size", "ambiguous.*hidden.size"),
        ("dropout", "ambiguous.*fusion.dropout"),
        ("clusters_size", "did you mean 'cluster_size'"),
        ("pooling.clustersize", "did you mean 'pooling.cluster_size'"),
    ],
)
def test_ambiguous_and_unknown_override_keys_are_errors(key, message):
    with pytest.raises(ConfigError, match=message):
        resolve_key(key)


def test_nested_override_with_unknown_key_is_an_error():
    base = ModelConfig().to_dict()
    with pytest.raises(ConfigError, match="pooling.clusters.*cluster_size"):
        apply_overrides(base, {"pooling": {"clusters": 4}})
