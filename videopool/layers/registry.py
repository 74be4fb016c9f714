"""Name -> class registry for pooling layers, so configs can name them as data."""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

import torch.nn as nn

_POOLING: dict[str, type[nn.Module]] = {}

# Modules whose import registers the built-in pooling layers.
_BUILTIN_MODULES = ("simple", "netvlad", "netrvlad", "netfv", "soft_dbow", "dbof", "recurrent")


def _load_builtins() -> None:
    for name in _BUILTIN_MODULES:
        importlib.import_module(f"videopool.layers.{name}")


def register_pooling(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a pooling layer constructible by ``name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _POOLING and _POOLING[name] is not cls:
            raise ValueError(f"pooling name {name!r} is already registered to {_POOLING[name].__name__}")
        _POOLING[name] = cls
        return cls

    return wrap


def list_poolings() -> list[str]:
    _load_builtins()
    return sorted(_POOLING)


def get_pooling_class(name: str) -> type[nn.Module]:
    _load_builtins()
    if name not in _POOLING:
        close = difflib.get_close_matches(name, _POOLING, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown pooling {name!r}{hint} (known: {', '.join(list_poolings())})")
    return _POOLING[name]


def create_pooling(name: str, **kwargs) -> nn.Module:
    """Build a registered pooling layer: ``create_pooling("netvlad", feature_size=1024, cluster_size=64)``."""
    return get_pooling_class(name)(**kwargs)
