"""Named model configurations and the ``create_model`` factory.

Every ``videopool/configs/NAME.yaml`` registers ``NAME`` and its small twin ``NAME_small`` (the file's
``small:`` block of overrides: fewer clusters, smaller hidden layer, for CPU runs and tests). A YAML
file has the sections ``model`` (a :class:`ModelConfig`), ``recipe`` (training keys, kept as a plain dict
here and validated by :class:`videopool.training.TrainConfig` where training reads it), ``description``,
``paper``, optional ``reported`` (the paper's figures) and optional ``small``.

    model = create_model("gated_netvlad_256", num_classes=200, **{"pooling.cluster_size": 16})
    model = create_model("gated_netvlad_256", device="meta")   # shapes only, no memory
    model = create_model(load_config("mine.yaml"))             # a user file in the same layout
"""

from __future__ import annotations

import copy
import fnmatch
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

import torch
import yaml

from videopool.core.errors import UserError
from videopool.core.schema import ConfigError, closest_hint
from videopool.models.classifier import VideoClassifier
from videopool.models.config import ModelConfig
from videopool.models.ensemble import EnsembleClassifier, EnsembleConfig, is_ensemble_config
from videopool.models.mixture import MixtureClassifier
from videopool.models.overrides import apply_overrides

SMALL_SUFFIX = "_small"
_FILE_KEYS = ("model", "recipe", "description", "paper", "reported", "small")


class UnknownModelError(UserError, KeyError):
    """No configuration is registered under the requested name (a user's mistake; a KeyError too, as before)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@dataclass
class NamedConfig:
    """A model configuration together with its training recipe and provenance.

    ``recipe`` holds training keys (``batch_size``, ``clip_mode``, ...) as plain data: the models layer
    cannot see :class:`~videopool.training.TrainConfig`, which validates it when training reads it."""

    name: str
    model: ModelConfig
    recipe: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    paper: str = ""
    reported: dict[str, Any] = field(default_factory=dict)
    small_overrides: dict[str, Any] | None = None  # None: no ``<name>_small`` twin

    def to_dict(self) -> dict[str, Any]:
        """The YAML file layout (``small`` included when present)."""
        data = {
            "description": self.description,
            "paper": self.paper,
            "model": self.model.to_dict(),
            "recipe": copy.deepcopy(self.recipe),
        }
        if self.reported:
            data["reported"] = copy.deepcopy(self.reported)
        if self.small_overrides is not None:
            data["small"] = copy.deepcopy(self.small_overrides)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "config", source: str = "config dict") -> "NamedConfig":
        """Validate the YAML layout (see module docstring) and build a :class:`NamedConfig`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping with keys {list(_FILE_KEYS)}, got {type(data).__name__}")
        for key in data:
            if key not in _FILE_KEYS:
                hint = closest_hint(key, _FILE_KEYS)
                raise ConfigError(f"{source}: unknown top-level key {key!r}{hint} (valid: {', '.join(_FILE_KEYS)})")
        if "model" not in data:
            raise ConfigError(f"{source}: missing the 'model' section")
        for section in ("recipe", "small", "reported"):
            value = data.get(section)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{section}' must be a mapping, got {value!r}")
        small = data.get("small")
        return cls(
            name=name,
            model=ModelConfig.from_dict(data["model"], source),
            recipe=copy.deepcopy(dict(data.get("recipe") or {})),
            description=str(data.get("description", "")).strip(),
            paper=str(data.get("paper", "")).strip(),
            reported=copy.deepcopy(dict(data.get("reported") or {})),
            small_overrides=None if small is None else copy.deepcopy(dict(small)),
        )


_REGISTRY: dict[str, NamedConfig] = {}
_BUILTINS_LOADED = False


def load_config(path: str | os.PathLike) -> NamedConfig:
    """Read a YAML file in the layout of the packaged configs (strictly checked); the name is the file stem.

    The explicit way to use a file: ``create_model(load_config("mine.yaml"))``."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path!r} does not exist") from None
    return NamedConfig.from_dict(data, os.path.splitext(os.path.basename(path))[0], path)


def register_config(named: NamedConfig, overwrite: bool = False) -> None:
    """Register ``named`` and, if it has a ``small`` block (even empty), ``<name>_small``."""
    _load_builtins()
    _insert(_with_small_twin(named), overwrite)


def _with_small_twin(named: NamedConfig) -> list[NamedConfig]:
    if named.small_overrides is None:
        return [named]
    source = f"{named.name}: small"
    small_model = ModelConfig.from_dict(apply_overrides(named.model.to_dict(), named.small_overrides), source)
    small = NamedConfig(
        name=named.name + SMALL_SUFFIX,
        model=small_model,
        recipe=copy.deepcopy(named.recipe),
        description=f"{named.description} (small CPU/test variant)".strip(),
        paper=named.paper,
    )
    return [named, small]


def _insert(entries: list[NamedConfig], overwrite: bool) -> None:
    taken = [entry.name for entry in entries if entry.name in _REGISTRY]
    if taken and not overwrite:
        raise ValueError(f"model name {taken[0]!r} is already registered")
    _REGISTRY.update((entry.name, entry) for entry in entries)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    folder = resources.files("videopool") / "configs"
    entries = []  # parse every file before registering any, so a broken file leaves the registry untouched
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".yaml"):
            data = yaml.safe_load(item.read_text(encoding="utf-8"))
            named = NamedConfig.from_dict(data, item.name[: -len(".yaml")], f"videopool/configs/{item.name}")
            entries += _with_small_twin(named)
    _insert(entries, overwrite=False)
    _BUILTINS_LOADED = True


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell-style wildcard (``"*netvlad*"``), and a pattern without
    wildcards matches names that contain it (``"netvlad"``, as the README's example writes it)."""
    _load_builtins()
    names = sorted(_REGISTRY)
    if pattern is not None and not set("*?[") & set(pattern):
        pattern = f"*{pattern}*"
    return [name for name in names if pattern is None or fnmatch.fnmatch(name, pattern)]


def get_named_config(name: str) -> NamedConfig:
    """A copy of the registered entry ``name`` (model config, recipe, provenance)."""
    _load_builtins()
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a string, got {type(name).__name__} (YAML files: load_config(path))")
    if name not in _REGISTRY:
        hint = closest_hint(name, _REGISTRY)
        if name.endswith((".yaml", ".yml")):
            hint += (f"; a YAML file is not a model name: load it with videopool.models.load_config({name!r}) "
                     "and pass the result (`videopool train` reads training and model keys from --config FILE)")
        raise UnknownModelError(f"unknown model {name!r}{hint} (`videopool models` lists the names)")
    return copy.deepcopy(_REGISTRY[name])


def get_model_config(name: str) -> ModelConfig:
    return get_named_config(name).model


def get_recipe(name: str) -> dict[str, Any]:
    """The recipe of ``name`` as stored (plain training keys; ``TrainConfig`` validates them)."""
    return get_named_config(name).recipe


def resolve_config(name_or_config: str | NamedConfig | ModelConfig | Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` for a registered name, a :class:`NamedConfig`, a ModelConfig or a model-config
    dict, with ``overrides`` applied (see :mod:`videopool.models.overrides`). None-valued keyword overrides are
    dropped, so unset command-line options never clobber a configuration."""
    if isinstance(name_or_config, NamedConfig):
        source, base = name_or_config.name, name_or_config.model.to_dict()
    elif isinstance(name_or_config, ModelConfig):
        source, base = "model config", name_or_config.to_dict()
    elif isinstance(name_or_config, Mapping):
        if "model" in name_or_config and isinstance(name_or_config["model"], Mapping):
            raise ConfigError("a dict with a 'model' section is a config-file layout, not a model config: "
                              "pass NamedConfig.from_dict(data) (or load_config(path) for a file)")
        source, base = "model config", ModelConfig.from_dict(name_or_config).to_dict()
    elif isinstance(name_or_config, str):
        source, base = name_or_config, get_model_config(name_or_config).to_dict()
    else:
        raise TypeError(f"create_model takes a model name, a NamedConfig, a ModelConfig or a model-config dict, "
                        f"got {type(name_or_config).__name__} (YAML files: load_config(path))")
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if not overrides:
        return ModelConfig.from_dict(base, source)
    return ModelConfig.from_dict(apply_overrides(base, overrides), f"{source} with overrides {sorted(overrides)}")


def create_model(
    name_or_config: str | NamedConfig | ModelConfig | Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
    **overrides: Any,
) -> VideoClassifier | MixtureClassifier:
    """Build a :class:`VideoClassifier` from a registered name, a NamedConfig, a ModelConfig or a model-config dict
    (a :class:`~videopool.models.mixture.MixtureClassifier` of such models when ``mixture.branches > 1``).

    ``overrides``: dotted paths ``**{"hidden.size": 256}``, top-level fields ``num_classes=200``, nested
    mappings ``pooling={"cluster_size": 16}`` or an alias of :data:`videopool.models.overrides.ALIASES`
    (``cluster_size=16``). ``device="meta"`` builds the model without allocating parameter memory
    (parameter counts of the 300M-parameter configs). A YAML file: ``create_model(load_config(path))``.
    """
    config = resolve_config(name_or_config, **overrides)
    kind = MixtureClassifier if config.mixture.branches > 1 else VideoClassifier
    if device is None:
        return kind(config)
    with torch.device(device):
        return kind(config)


def model_from_config_dict(data: Mapping[str, Any], device: torch.device | str | None = None
                           ) -> VideoClassifier | MixtureClassifier | EnsembleClassifier:
    """Rebuild the model a checkpoint describes from its stored ``config.to_dict()`` (an ensemble's config,
    ``kind: ensemble``, rebuilds an :class:`~videopool.models.ensemble.EnsembleClassifier`)."""
    from videopool.models.segment import is_segment_config, segment_model_from_config  # it imports this module

    if is_segment_config(data):  # a segment model (``segment_model`` key), see videopool.models.segment
        return segment_model_from_config(data).to(device or "cpu")
    if is_ensemble_config(data):
        config = EnsembleConfig.from_dict(data, "checkpoint ensemble config")
        if device is None:
            return EnsembleClassifier(config)
        with torch.device(device):
            return EnsembleClassifier(config)
    return create_model(ModelConfig.from_dict(data, "checkpoint model config"), device=device)


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; works on meta-device models. BN running stats are buffers."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
