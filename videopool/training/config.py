"""The training configuration: a recipe's defaults, then a YAML file, then command-line overrides.

Resolution order (later wins): :class:`TrainConfig` defaults → the model's named recipe
(:func:`videopool.models.get_recipe`) → ``--config FILE.yaml`` → explicit flags and
``--set key=value``. Keys that are not training fields are model-config overrides (dotted paths such
as ``pooling.cluster_size``, nested mappings, or an alias of :data:`videopool.models.ALIASES`); a key
that is neither is a :class:`~videopool.core.schema.ConfigError` naming the closest valid key. Every
layer is parsed by the strict parser of :mod:`videopool.core.schema`, the one the model config uses.
The resolved config is written to ``RUN/config.yaml`` and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import yaml

from videopool.core.precision import PRECISIONS
from videopool.core.schema import ConfigError, check_choice, parse_dataclass
from videopool.data.errors import BAD_RECORD_POLICIES, DEFAULT_MAX_BAD_RECORDS, check_max_bad_records
from videopool.data.sampling import FRAME_SELECTIONS
from videopool.inference.predict import EVAL_SAMPLINGS
from videopool.models.losses import LOSSES
from videopool.models.overrides import key_hint, resolve_key
from videopool.training.optim import CLIP_MODES
from videopool.training.step import BF16_SCHEMES
from videopool.training.weight_averaging import WEIGHT_AVERAGINGS


@dataclass
class TrainConfig:
    model: str = ""
    train_data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)
    out: str = ""
    num_classes: int | None = None
    vocabulary: str | None = None
    layout: str | None = None  # record layout of the data (videopool.data.layouts); None = read off the files
    model_overrides: dict[str, Any] = field(default_factory=dict)  # dotted model-config path -> value
    init_from: str | None = None  # a run or checkpoint of the same model config: the initial weights (not resume)
    # recipe: the values of WILLOW's gated NetVLAD command (its README) by default
    batch_size: int = 80
    learning_rate: float = 2e-4
    lr_decay: float = 0.8
    lr_decay_examples: int = 4_000_000  # scale down with the data set (e.g. demo data)
    clip_gradient_norm: float = 1.0
    clip_mode: str = "per_tensor"  # CLIP_MODES: per_tensor (TF1 code bases) | global (TF2 starter code) | none
    loss: str = "bce_sum"  # LOSSES: bce_sum (TF1 code bases) | bce_mean (TF2 starter code)
    regularization_penalty: float = 1.0
    frame_selection: str = "random"  # FRAME_SELECTIONS: random | uniform | sequence | all
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
    eval_sampling: str = "all"  # EVAL_SAMPLINGS: frames used in validation: all (masked) | uniform | random
    eval_batch_size: int | None = None
    # in-training weight averaging (videopool.training.weight_averaging): validation, best/last and the step
    # checkpoints hold the averaged weights once averaging has begun; the trained weights live in the resume state
    weight_averaging: str = "none"  # WEIGHT_AVERAGINGS: none | ema | swa
    ema_decay: float = 0.999  # ema: θ̄ ← decay · θ̄ + (1 - decay) · θ after every step
    swa_start: int = 0  # swa: equal-weight mean of the weights after every step >= swa_start
    # execution
    precision: str = "auto"  # PRECISIONS: auto | bf16 | fp32 (see videopool.core.precision)
    bf16_scheme: str = "master_weights"  # BF16_SCHEMES: master_weights | autocast
    bf16_master_min_numel: int = 1 << 20  # weight matrices this large are held in bf16 (master_weights)
    device: str = "auto"
    seed: int = 0
    workers: int | None = None  # loader processes; None = resolve_workers() for the device
    progress: bool = True
    # bad data (docs/reliability.md, section 2)
    on_bad_record: str = "error"  # BAD_RECORD_POLICIES: error (stop at the first) | skip (count, list, go on)
    max_bad_records: float = DEFAULT_MAX_BAD_RECORDS  # with skip: stop beyond this share (< 1) or count (>= 1)

    def __post_init__(self) -> None:
        check_choice("clip_mode", self.clip_mode, CLIP_MODES)
        check_choice("loss", self.loss, LOSSES)
        check_choice("frame_selection", self.frame_selection, FRAME_SELECTIONS)
        check_choice("eval_sampling", self.eval_sampling, EVAL_SAMPLINGS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("bf16_scheme", self.bf16_scheme, BF16_SCHEMES)
        check_choice("weight_averaging", self.weight_averaging, WEIGHT_AVERAGINGS)
        for name in ("batch_size", "num_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("epochs", "max_steps"):  # a run of 0 steps would save an untrained model as a success
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}: training would run 0 steps")
        check_choice("on_bad_record", self.on_bad_record, BAD_RECORD_POLICIES)
        try:
            check_max_bad_records(self.max_bad_records)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self._check_numbers()

    def _check_numbers(self) -> None:
        """The numeric fields' ranges, checked here so that a bad value is an error naming its key before any
        data is read, instead of torch's message at the first step (``Invalid learning rate``) or a silent
        misbehaviour (a negative ``eval_every``)."""
        if not 0 < self.learning_rate < math.inf:
            raise ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1] (1 = no decay), got {self.lr_decay!r}")
        if not 0 < self.clip_gradient_norm < math.inf:
            raise ConfigError(f"clip_gradient_norm must be a positive number (clip_mode none turns clipping off), "
                              f"got {self.clip_gradient_norm!r}")
        if not 0 <= self.regularization_penalty < math.inf:
            raise ConfigError(f"regularization_penalty must be >= 0, got {self.regularization_penalty!r}")
        for index, beta in enumerate(self.adam_betas):
            if not 0 <= beta < 1:
                raise ConfigError(f"adam_betas[{index}] must be in [0, 1), got {beta!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0.999 averages over ~1000 steps), "
                              f"got {self.ema_decay!r}")
        if not 0 < self.adam_epsilon < math.inf:
            raise ConfigError(f"adam_epsilon must be a positive number, got {self.adam_epsilon!r}")
        minimum = {"lr_decay_examples": 1, "log_every": 1, "eval_batch_size": 1, "num_classes": 1, "eval_every": 0,
                   "checkpoint_every": 0, "keep_checkpoints": 0, "bn_recompute_batches": 0,
                   "bf16_master_min_numel": 0, "workers": 0, "seed": 0, "swa_start": 0}
        for name, least in minimum.items():
            value = getattr(self, name)
            if value is not None and value < least:
                meaning = {"eval_every": " (0 = at the end of each epoch)", "checkpoint_every": " (0 = never)",
                           "keep_checkpoints": " (0 = keep all)"}.get(name, "")
                raise ConfigError(f"{name} must be >= {least}{meaning}, got {value}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "training config") -> "TrainConfig":
        """Strictly parse ``d`` (unknown keys, wrong types and bad choices are :class:`ConfigError`)."""
        return parse_dataclass(cls, d, source)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


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
    """``["key=value", ...]`` → ``{key: YAML value}``; a :class:`ConfigError` naming the item when it has no
    ``=``, no key, or a value that is not YAML (the values' types are checked by the strict parser next)."""
    out = {}
    for item in items:
        key, equals, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not key:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set learning_rate=0.001)")
        try:
            out[key] = parse_value(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not a YAML value ({_yaml_problem(err)}); quote a "
                              "string, write a list as [a, b] and a mapping as {key: value}") from None
    return out


def saved_run_config(out: str) -> tuple[str, dict[str, Any]]:
    """The path and contents of the ``config.yaml`` a run in ``out`` saved (without its ``resolved`` record), which
    ``--resume`` continues from."""
    saved_path = os.path.join(out, "config.yaml")
    if not os.path.isfile(saved_path):
        raise FileNotFoundError(f"cannot resume: {saved_path!r} does not exist (wrong --out?)")
    saved = load_yaml_config(saved_path)
    saved.pop("resolved", None)
    return saved_path, saved


def load_yaml_config(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path!r} is a directory; give a YAML file") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path!r}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path!r} is not UTF-8 text; give a YAML file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path!r} is not valid YAML: {_yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of keys to values")
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where (line and column are 1-based)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def resolve_train_config(model: str, layers: Sequence[tuple[str, Mapping[str, Any]]]) -> TrainConfig:
    """Merge the ``(source, values)`` layers in order (later wins); split model keys from training keys.

    A key that is a :class:`TrainConfig` field is a training setting; one that
    :func:`videopool.models.overrides.resolve_key` accepts is a model-config override, stored under its
    dotted path; anything else raises :class:`ConfigError` naming the source and the closest valid key.
    """
    train_keys = field_names()
    merged: dict[str, Any] = {}
    model_overrides: dict[str, Any] = {}

    def add_model_key(source: str, key: str, value: Any) -> None:
        try:
            path = resolve_key(key)
        except ConfigError:
            raise ConfigError(
                f"{source}: unknown key {key!r}{key_hint(key, train_keys)} (a key is a training field, see "
                "docs/training.md, or a dotted model-config path such as pooling.cluster_size, see docs/models.md)"
            ) from None
        model_overrides.pop(path, None)  # re-inserted last, so it applies after any earlier nested mapping
        model_overrides[path] = value

    for source, layer in layers:
        if not isinstance(layer, Mapping):
            raise ConfigError(f"{source} must be a mapping of keys to values, got {type(layer).__name__}")
        training: dict[str, Any] = {}
        for key, value in layer.items():
            key = str(key)
            if key == "model_overrides":
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{source}: model_overrides must be a mapping, got {value!r}")
                for sub_key, sub_value in value.items():
                    add_model_key(f"{source}: model_overrides", str(sub_key), sub_value)
            elif key in train_keys:
                training[key] = [value] if key in ("train_data", "val_data") and isinstance(value, str) else value
            else:
                add_model_key(source, key, value)
        TrainConfig.from_dict(training, source)  # errors name the layer the bad value came from
        merged.update(training)
    merged["model"] = model
    merged["model_overrides"] = model_overrides
    return TrainConfig.from_dict(merged, "training config")


def save_yaml(config: TrainConfig, path: str, extra: dict[str, Any] | None = None) -> None:
    with open(path, "w") as f:
        yaml.safe_dump({**config.to_dict(), **(extra or {})}, f, sort_keys=False)
