"""The one activation factory of the package: configs name activations as data."""

from __future__ import annotations

import torch.nn as nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "none": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
}  # fmt: skip
ACTIVATIONS = tuple(_ACTIVATIONS)


def make_activation(name: str) -> nn.Module:
    """``nn.Identity()`` for ``"none"``, else the named element-wise activation module."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}")
    return _ACTIVATIONS[name]()
