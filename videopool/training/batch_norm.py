"""Re-estimating batch-norm running statistics before evaluation ("precise BN").

The TF-slim recipe updates BN moving averages with decay 0.999, which takes thousands of steps
to forget the initial mean 0 / variance 1. After a short run (the demo, a smoke test, the first
validations of a long run) the running statistics are then far from the real ones and evaluation
numbers are meaningless. Averaging the batch statistics of a few training batches with equal
weights fixes that without touching any trained parameter.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, batches: Iterable, forward: Callable[[object], object]) -> int:
    """Replace every BN layer's running mean/variance by the plain average of its batch statistics
    over ``batches`` (each passed to ``forward`` with the model in training mode). Returns the number
    of batches used; with none, the statistics are left as they were."""
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]
    was_training = model.training
    model.train()
    count = 0
    try:
        for batch in batches:
            for m in layers:
                # momentum 1/(i+1) turns the exponential update into a cumulative average
                m.momentum = 1.0 / (count + 1)
            forward(batch)
            count += 1
    finally:
        for m, (momentum, mean, var, tracked) in zip(layers, saved):
            m.momentum = momentum
            if count == 0:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
            m.num_batches_tracked.copy_(tracked)
        model.train(was_training)
    return count
