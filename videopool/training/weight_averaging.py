"""In-training weight averaging (``weight_averaging: ema | swa``) with ``torch.optim.swa_utils.AveragedModel``.

* ``ema``: after every step ``θ̄ ← decay · θ̄ + (1 - decay) · θ`` (``get_ema_multi_avg_fn(ema_decay)``), starting
  from the weights of the first step.
* ``swa``: the equal-weight mean of the weights after every step from ``swa_start`` on (Izmailov et al.,
  "Averaging Weights Leads to Wider Optima and Better Generalization", arXiv 1803.05407; ``get_swa_multi_avg_fn``),
  the in-training form of the checkpoint averaging of Tang et al. (arXiv 1810.00207, §3.3).

The average holds parameters only; its batch-norm buffers follow the trained model's until the loop's precise
BN (``bn_recompute_batches``) recomputes them for the averaged weights before each validation and checkpoint, as
SWA's ``update_bn`` would. With bf16 master weights the average is of the fp32 masters and is kept in fp32.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, get_swa_multi_avg_fn

WEIGHT_AVERAGINGS = ("none", "ema", "swa")


class _MasterView:
    """What ``AveragedModel.update_parameters`` reads from the trained model (``parameters()``, ``buffers()``),
    with the fp32 masters in place of the bf16 weights they are copies of."""

    def __init__(self, model: nn.Module, master) -> None:
        self.model = model
        self.masters = {id(param): fp32 for param, fp32 in master.pairs} if master is not None else {}

    def parameters(self) -> Iterator[torch.Tensor]:
        return (self.masters.get(id(p), p) for p in self.model.parameters())

    def buffers(self) -> Iterator[torch.Tensor]:
        return self.model.buffers()


class WeightAveraging:
    """The running average of a model's weights during training (see the module docstring).

    ``update(step)`` after every optimisation step; :attr:`active` once the average holds a step (before
    ``swa_start`` the trained model itself is what validation and checkpoints see); ``state_dict()`` /
    ``load_state_dict()`` for the resume state."""

    def __init__(self, model: nn.Module, mode: str, *, ema_decay: float = 0.999, swa_start: int = 0,
                 master=None) -> None:
        if mode not in WEIGHT_AVERAGINGS[1:]:
            raise ValueError(f"weight averaging must be one of {list(WEIGHT_AVERAGINGS[1:])}, got {mode!r}")
        self.mode, self.swa_start = mode, int(swa_start)
        self.source = _MasterView(model, master)
        fp32 = copy.deepcopy(model).float()  # AveragedModel copies it again: fine, it happens once
        multi_avg_fn = get_ema_multi_avg_fn(ema_decay) if mode == "ema" else get_swa_multi_avg_fn()
        self.averaged = AveragedModel(fp32, multi_avg_fn=multi_avg_fn, use_buffers=False)
        self.averaged.module.train(model.training)

    @property
    def model(self) -> nn.Module:
        """The averaged network (a module of the trained model's class)."""
        return self.averaged.module

    @property
    def active(self) -> bool:
        return int(self.averaged.n_averaged) > 0

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimisation step ``step`` (1-based), from ``swa_start`` on for SWA."""
        if self.mode == "swa" and step < self.swa_start:
            return
        self.averaged.update_parameters(self.source)

    def state_dict(self) -> dict[str, Any]:
        """What the resume state keeps of the average: its mode and count. The averaged weights themselves are the
        step checkpoint's (validation and checkpoints see the average once it is :attr:`active`)."""
        return {"mode": self.mode, "n_averaged": int(self.averaged.n_averaged)}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        """Restore the average from the resume ``state`` and the step checkpoint's ``weights``."""
        if state.get("mode") != self.mode:
            raise ValueError(f"the resume state averages weights by {state.get('mode')!r}, this run by "
                             f"{self.mode!r}; resume with the run's own weight_averaging")
        self.model.load_state_dict(weights, strict=True)
        self.averaged.n_averaged.fill_(int(state["n_averaged"]))
