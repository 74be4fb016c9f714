"""ModelConfig parsing: round trips, strict keys with closest-match hints, choice lists read from the
implementing modules, overrides (dotted, nested, the explicit alias table) and explicit YAML loading."""


import pytest
import yaml

from videopool.layers.activations import ACTIVATIONS
from videopool.layers.fusion import FUSION_STAGES, FUSIONS, MFB_NORMALIZATIONS
from videopool.layers.gating import GATINGS
from videopool.layers.heads import HEADS
from videopool.models import ALIASES, ConfigError, ModelConfig, apply_overrides, get_model_config, load_config
from videopool.models.config import HIDDEN_INITS
from videopool.models.overrides import override_keys, resolve_key


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
    loaded = load_config(path)
    assert loaded.name == "model"
    assert loaded.model == config
    assert list(loaded.model.modalities) == ["audio", "rgb"]
    assert loaded.recipe == {}


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
        load_config(path)
    path.write_text("model: {pooling: {type: netvlad, cluster_sise: 4}}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*pooling\.cluster_sise.*cluster_size"):
        load_config(path)
    path.write_text("recipe: {batch_size: 4}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: missing the 'model' section"):
        load_config(path)
    path.write_text("model: {}\nrecipe: [batch_size, 4]\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: 'recipe' must be a mapping"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="nothing.yaml"):
        load_config(tmp_path / "nothing.yaml")


def test_load_config_keeps_the_recipe_as_data_for_training_to_validate(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {modalities: {rgb: 8}, pooling: {type: average}}\n"
                    "recipe: {batch_size: 4, clip_mode: none}\nsmall: {num_classes: 3}\n")
    named = load_config(path)
    assert named.name == "mine" and named.recipe == {"batch_size": 4, "clip_mode": "none"}
    assert named.small_overrides == {"num_classes": 3}
    assert named.to_dict()["recipe"] == named.recipe


@pytest.mark.parametrize(
    "data, field, choices",
    [
        ({"fusion": {"stage": "middle"}}, "fusion.stage", FUSION_STAGES),
        ({"fusion": {"type": "sum"}}, "fusion.type", FUSIONS),
        ({"fusion": {"normalization": "l2"}}, "fusion.normalization", MFB_NORMALIZATIONS),
        ({"fusion": {"activation": "gelu"}}, "fusion.activation", ACTIVATIONS),
        ({"hidden": {"activation": "gelu"}}, "hidden.activation", ACTIVATIONS),
        ({"hidden": {"init": "he"}}, "hidden.init", HIDDEN_INITS),
        ({"gating": {"type": "film"}}, "gating.type", GATINGS),
        ({"classifier": {"type": "svm"}}, "classifier.type", HEADS),
    ],
)
def test_choice_errors_list_the_implementing_modules_choices(data, field, choices):
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(data)
    value = next(iter(next(iter(data.values())).values()))
    assert f"{field} = {value!r} is not one of {list(choices)}" in str(info.value)


def test_overrides_dotted_nested_and_alias_are_equivalent():
    base = get_model_config("gated_netvlad_256").to_dict()
    dotted = apply_overrides(base, {"pooling.cluster_size": 16, "hidden.size": 32})
    nested = apply_overrides(base, {"pooling": {"cluster_size": 16}, "hidden": {"size": 32}})
    aliased = apply_overrides(base, {"cluster_size": 16, "hidden.size": 32})
    assert dotted == nested == aliased
    assert dotted["pooling"]["cluster_size"] == 16 and dotted["hidden"]["size"] == 32
    assert dotted["pooling"]["cluster_size_divisor"] == {"audio": 2}  # nested merge keeps siblings
    assert base["pooling"]["cluster_size"] == 256  # the input is not mutated
    options = apply_overrides(base, {"pooling.options.couple_weights": True})["pooling"]["options"]
    assert options == {"couple_weights": True}


def test_the_alias_table_is_small_explicit_and_points_at_real_fields():
    assert ALIASES == {
        "cluster_size": "pooling.cluster_size",
        "cluster_size_divisor": "pooling.cluster_size_divisor",
        "num_mixtures": "classifier.num_mixtures",
    }
    for alias, path in ALIASES.items():
        assert resolve_key(alias) == path
        assert path in override_keys() and "." not in alias
    base = ModelConfig().to_dict()
    assert apply_overrides(base, {"num_mixtures": 4})["classifier"]["num_mixtures"] == 4
    assert apply_overrides(base, {"cluster_size_divisor": {"audio": 8}})["pooling"]["cluster_size_divisor"] == {
        "audio": 8}


@pytest.mark.parametrize(
    "key, message",
    [
        # former schema-computed leaf shortcuts are gone; the error shows the dotted path to use
        ("size", r"unknown model key 'size'; did you mean 'hidden.size'\?"),
        ("gating_type", r"unknown model key 'gating_type'; did you mean 'gating.type'\?"),
        ("l2_penalty", r"did you mean 'classifier.l2_penalty'\?"),
        ("type", r"one of 'pooling.type', 'fusion.type', 'gating.type', 'classifier.type'\?"),
        ("hidden_size", r"one of 'pooling.hidden_size', 'hidden.size'\?"),
        ("dropout", r"one of 'fusion.dropout', 'hidden.dropout'\?"),
        ("clusters_size", r"did you mean 'pooling.cluster_size'\?"),
        ("pooling.clustersize", r"did you mean 'pooling.cluster_size'\?"),
    ],
)
def test_unknown_override_keys_show_the_dotted_path_to_use(key, message):
    with pytest.raises(ConfigError, match=message):
        resolve_key(key)
    with pytest.raises(ConfigError, match=message):
        apply_overrides(ModelConfig().to_dict(), {key: 1})


def test_nested_override_with_unknown_key_is_an_error():
    base = ModelConfig().to_dict()
    with pytest.raises(ConfigError, match="pooling.clusters.*did you mean 'pooling.cluster_size'"):
        apply_overrides(base, {"pooling": {"clusters": 4}})
