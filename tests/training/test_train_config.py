import pytest

from videopool.training.config import TrainConfig, parse_set_arguments, resolve_train_config


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(KeyError, match="learning_rate"):
        resolve_train_config("m", {}, {}, {"learning_rat": 1e-3}, model_keys={"hidden.size"})
    with pytest.raises(KeyError, match="hidden.size"):
        resolve_train_config("m", {}, {}, {"hiden.size": 8}, model_keys={"hidden.size"})


def test_layers_override_in_order_and_model_keys_are_split_off():
    recipe = {"batch_size": 80, "learning_rate": 2e-4}
    file_values = {"batch_size": 32, "hidden.size": 16}
    config = resolve_train_config("m", recipe, file_values, {"batch_size": 8, "train_data": "a/*.tfrecord"},
                                  model_keys={"hidden.size"})
    assert config.batch_size == 8 and config.learning_rate == 2e-4
    assert config.model_overrides == {"hidden.size": 16}
    assert config.train_data == ["a/*.tfrecord"]
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_set_arguments_parse_yaml_scalars():
    assert parse_set_arguments(["lr_decay_examples=100000", "learning-rate=2e-4", "clip_mode=global",
                                "progress=false"]) == {
        "lr_decay_examples": 100000, "learning_rate": 2e-4, "clip_mode": "global", "progress": False}
    with pytest.raises(ValueError, match="key=value"):
        parse_set_arguments(["batch_size"])
