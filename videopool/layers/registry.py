"""Name -> pooling layer registry, so configurations name their pooling as data (``create_pooling("netvlad", ...)``)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch.nn as nn

from videopool.core.schema import closest_hint

_POOLING: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {}

# Modules whose import registers the built-in pooling layers.
_BUILTIN_MODULES = (
    "simple", "netvlad", "netrvlad", "netfv", "soft_dbow", "dbof", "recurrent", "nextvlad", "nonlocal_vlad",
    "attention_clusters", "attention_vlad", "second_order_vlad",
)


def _load_builtins() -> None:
    for name in _BUILTIN_MODULES:
        importlib.import_module(f"videopool.layers.{name}")


def register_pooling(name: str, **defaults: Any) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a pooling layer constructible by ``name``, with ``defaults`` for its keyword arguments
    (one class may be registered under several names, e.g. ``average`` and ``max``)."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _POOLING and _POOLING[name] != (cls, defaults):
            raise ValueError(f"pooling name {name!r} is already registered to {_POOLING[name][0].__name__}")
        _POOLING[name] = (cls, dict(defaults))
        return cls

    return wrap


def list_poolings() -> list[str]:
    _load_builtins()
    return sorted(_POOLING)


def get_pooling_class(name: str) -> type[nn.Module]:
    return _entry(name)[0]


def create_pooling(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered pooling layer: ``create_pooling("netvlad", feature_size=1024, cluster_size=64)``."""
    cls, defaults = _entry(name)
    return cls(**{**defaults, **kwargs})


def _entry(name: str) -> tuple[type[nn.Module], dict[str, Any]]:
    _load_builtins()
    if name not in _POOLING:
        raise KeyError(f"unknown pooling {name!r}{closest_hint(name, _POOLING)} (known: {', '.join(sorted(_POOLING))})")
    return _POOLING[name]
