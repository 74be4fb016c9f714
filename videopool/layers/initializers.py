"""Weight initialisers of the TF1 references that PyTorch does not ship under the same definition."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def variance_scaling_(tensor: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    """TF-slim ``variance_scaling_initializer()`` (its defaults: ``factor=2.0, mode='FAN_IN', uniform=False``).

    A normal truncated at two standard deviations of the underlying normal, whose standard deviation
    ``sqrt(1.3 · factor / fan_in)`` is the one slim uses (the 1.3 compensates the truncation, so the drawn values
    have a standard deviation of about ``sqrt(factor / fan_in)``, He et al.). ``fan_in`` is TF's: the
    second-to-last dimension times the product of the leading ones (``[in, out]`` → ``in``; ``[1, F, K]`` → ``F``).
    Fills ``tensor`` in place and returns it.
    """
    if tensor.dim() < 2:
        raise ValueError(f"variance_scaling_ needs a tensor of rank >= 2, got shape {tuple(tensor.shape)}")
    fan_in = math.prod(tensor.shape[:-1])
    std = math.sqrt(1.3 * factor / fan_in)
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
