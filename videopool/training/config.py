"""The training configuration: a recipe's defaults, then a YAML file, then command-line overrides.

Resolution order (later wins): :class:`TrainConfig` defaults → the model's named recipe
(:func:`videopool.models.get_recipe`) → ``--config FILE.yaml`` → explicit flags and
``--set key=value``. Keys that are not training fields are model-config overrides
(``cluster_size``, ``hidden_size``...); a key that is neither is rejected with the
closest valid spelling. The resolved config is written to ``RUN/config.yaml`` and into
every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import yaml


@dataclass
class TrainConfig:
    model: str = ""
    train_data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)
    out: str = ""
    num_classes: int | None = None
    vocabulary: str | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # recipe (spec §7): WILLOW's gated NetVLAD command-line values by default
    batch_size: int = 80
    learning_rate: float = 2e-4
    lr_decay: float = 0.8
    lr_decay_examples: int = 4_000_000  # scale down with the data set (e.g. demo data)
    clip_gradient_norm: float = 1.0
    clip_mode: str = "per_tensor"  # per_tensor (TF1) | global (G-TF2) | none
    loss: str = "bce_sum"  # bce_sum (TF1) | bce_mean (G-TF2)
    regularization_penalty: float = 1.0
    frame_selection: str = "random"  # random | uniform | sequence | all
    num_frames: int = 300
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_epsilon: float = 1e-8
    # run control
    max_steps: int | None = None
    epochs: int | None = None
    eval_every: int = 0  # steps; 0 = at the end of each epoch only
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # step-*.safetensors kept besides last/best; 0 = keep all
    log_every: int = 10
    bn_recompute_batches: int = 20  # re-estimate BN statistics on this many training batches before
    # each validation/checkpoint (videopool.training.batch_norm); 0 keeps the TF moving averages
    eval_sampling: str = "all"  # frames used in validation: all (masked) | uniform | random
    eval_batch_size: int | None = None
    # execution
    precision: str = "auto"  # auto | bf16 | fp32 (see videopool.core.precision)
    bf16_scheme: str = "master_weights"  # master_weights | autocast
    bf16_master_min_numel: int = 1 << 20  # weight matrices this large are held in bf16 (master_weights)
    device: str = "auto"
    seed: int = 0
    workers: int | None = None  # loader processes; None = resolve_workers() for the device
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        check_keys(d, field_names(), what="training config")
        if "adam_betas" in d:
            d["adam_betas"] = tuple(d["adam_betas"])
        return cls(**d)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def closest_key_message(key: str, valid: Iterable[str], what: str) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} key {key!r}.{hint} Valid keys: {', '.join(valid)}"


def check_keys(d: dict[str, Any], valid: Iterable[str], what: str) -> None:
    valid = set(valid)
    for key in d:
        if key not in valid:
            raise KeyError(closest_key_message(key, valid, what))


def parse_value(text: str) -> Any:
    """``--set`` values are YAML scalars: ``64`` → int, ``2e-4`` → float, ``true`` → bool."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:  # YAML 1.1 reads "2e-4" as a string
            return float(value)
        except ValueError:
            return value
    return value


def parse_set_arguments(items: Iterable[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        out[key.strip().replace("-", "_")] = parse_value(text)
    return out


def load_yaml_config(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path!r} does not exist") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of keys to values")
    return data


def resolve_train_config(
    model: str,
    recipe: dict[str, Any],
    file_values: dict[str, Any],
    overrides: dict[str, Any],
    model_keys: Iterable[str] = (),
    is_model_key: Callable[[str], bool] | None = None,
) -> TrainConfig:
    """Merge the layers of configuration; split model keys from training keys.

    A key that is a :class:`TrainConfig` field is a training setting; one accepted by
    ``is_model_key`` (default: membership in ``model_keys``) is a model-config override;
    anything else raises ``KeyError`` naming the closest valid key.
    """
    train_keys = set(field_names())
    model_keys = set(model_keys)
    is_model_key = is_model_key or model_keys.__contains__
    merged: dict[str, Any] = {}
    model_overrides: dict[str, Any] = {}
    for layer in (recipe, file_values, overrides):
        for key, value in layer.items():
            if key == "model_overrides":
                model_overrides.update(value or {})
            elif key in train_keys:
                merged[key] = value
            elif is_model_key(key):
                model_overrides[key] = value
            else:
                raise KeyError(closest_key_message(key, train_keys | model_keys, "config"))
    merged["model"] = model
    merged["model_overrides"] = model_overrides
    for key in ("train_data", "val_data"):
        if isinstance(merged.get(key), str):
            merged[key] = [merged[key]]
    return TrainConfig.from_dict(merged)


def save_yaml(config: TrainConfig, path: str, extra: dict[str, Any] | None = None) -> None:
    with open(path, "w") as f:
        yaml.safe_dump({**config.to_dict(), **(extra or {})}, f, sort_keys=False)
