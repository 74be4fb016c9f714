"""Adam, the staircase learning-rate decay, gradient clipping, and bf16 master weights.

* Adam with TF's defaults (β₁ 0.9, β₂ 0.999, ε 1e-8), ``fused=True`` where torch has it
  (Adam is memory bound: measured at ~20% of a bf16 training step on CPU).
* ``lr = base · decay ^ floor(examples_seen / decay_examples)`` (TF1 ``exponential_decay``
  with ``staircase=True``, the step counter counted in examples as in the TF1 starter code and WILLOW).
* Clipping ``per_tensor`` (TF1: each gradient ``g *= min(1, c/‖g‖)``) or ``global``
  (``clip_grad_norm_`` over all parameters, as in the TF2 starter code).
"""

from __future__ import annotations

import inspect
from typing import Iterable

import torch
from torch import nn

CLIP_MODES = ("per_tensor", "global", "none")


def staircase_learning_rate(base: float, decay: float, decay_examples: int, examples_seen: int) -> float:
    """Learning rate after ``examples_seen`` training examples (all ranks together)."""
    if decay_examples <= 0:
        return base
    return base * decay ** (examples_seen // decay_examples)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        # A tensor lr would recompile nothing here; keep it a float like the default. A group may scale the
        # run's rate (a model's parameter_groups(), e.g. the segment encoder's half rate).
        group["lr"] = lr * group.get("lr_scale", 1.0)


def create_adam(params: Iterable[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with TF-style defaults, fused when this torch build supports it for the params' device."""
    params = list(params)  # tensors, or parameter groups (dicts with "params" and an optional "lr_scale")
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    kwargs = dict(lr=lr, betas=betas, eps=eps)
    if "fused" in inspect.signature(torch.optim.Adam).parameters and tensors:
        device = tensors[0].device.type
        if device in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in tensors):
            try:
                return torch.optim.Adam(params, fused=True, **kwargs)
            except RuntimeError:
                pass  # e.g. a dtype/device the fused kernel does not cover
    return torch.optim.Adam(params, **kwargs)


def cpu_gradient_norms(grads: list[torch.Tensor]) -> list[float]:
    """L2 norms of CPU tensors as Python floats.

    Large contiguous fp32/fp64 tensors go through BLAS ``dot``, which streams memory at twice the rate of
    ``vector_norm`` on this kind of machine (11 ms against 23 ms for the 71M-element K=64 hidden FC).
    """
    squared = []
    for g in grads:
        if g.dtype in (torch.float32, torch.float64) and g.is_contiguous() and g.numel() >= 1 << 16:
            flat = g.view(-1)
            squared.append(torch.dot(flat, flat).double())
        else:
            squared.append(torch.linalg.vector_norm(g, dtype=torch.float64).square())
    return torch.stack(squared).sqrt().tolist()


@torch.no_grad()
def clip_gradients(params: Iterable[torch.Tensor], max_norm: float, mode: str = "per_tensor") -> None:
    """Clip gradients in place.

    ``per_tensor``: every gradient independently, ``g *= min(1, max_norm / ‖g‖)``
    (TF ``clip_by_norm`` per variable, as in the TF1 starter code and WILLOW); ``global``: one factor for
    all gradients from their joint norm; ``none`` or ``max_norm <= 0``: nothing.
    """
    if mode not in CLIP_MODES:
        raise ValueError(f"unknown clip mode {mode!r}; choose one of {', '.join(CLIP_MODES)}")
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    if mode == "none" or max_norm <= 0 or not grads:
        return
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    if grads[0].device.type == "cpu":
        # One host read of all norms, then rescale only the tensors over the limit: an unconditional
        # multiply re-writes every gradient (~16 ms per step for the K=64 hidden FC alone).
        over = [(g, max_norm / n) for g, n in zip(grads, cpu_gradient_norms(grads)) if n > max_norm]
        if over:
            torch._foreach_mul_([g for g, _ in over], [factor for _, factor in over])
        return
    norms = torch._foreach_norm(grads)
    for g, n in zip(grads, norms):
        # TF's clip_by_norm: g · c / max(‖g‖, c), without a host sync per tensor on accelerators.
        g.mul_((max_norm / torch.clamp(n.float(), min=max_norm)).to(g.dtype))


class BF16MasterWeights:
    """Hold the model's large matrices in bf16 for compute, with fp32 masters for Adam.

    Under plain autocast every forward re-casts the fp32 weights (285M for the K=256
    hidden FC, ~90 ms per step) and the backward does so again. Here the weight
    matrices (2-D parameters) with at least ``min_numel`` elements — the hidden FC,
    the MoE and gating matrices — live in bf16 inside the
    model; the optimizer updates fp32 copies that are written back after each step.
    Everything else (BN, small matrices, biases) stays fp32 and runs under autocast,
    so normalisations and softmaxes see the same dtypes as with plain autocast.

    Use::

        mp = BF16MasterWeights(model)
        optimizer = create_adam(mp.optimizer_params(), lr)
        loss.backward(); mp.gradients_to_masters(); clip(mp.optimizer_params()); optimizer.step()
        mp.masters_to_model()
    """

    def __init__(self, model: nn.Module, min_numel: int = 1 << 20) -> None:
        self.model = model
        self.pairs: list[tuple[nn.Parameter, nn.Parameter]] = []  # (bf16 in model, fp32 master)
        self.names: dict[str, nn.Parameter] = {}
        for name, param in model.named_parameters():  # shared parameters are listed once
            if param.dim() == 2 and param.numel() >= min_numel and param.dtype == torch.float32:
                master = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
                param.data = param.data.to(torch.bfloat16)
                self.pairs.append((param, master))
                self.names[name] = master

    def optimizer_params(self) -> list[nn.Parameter]:
        """Parameters the optimizer should own: fp32 masters in place of the bf16 matrices."""
        masters = {id(p): m for p, m in self.pairs}
        return [masters.get(id(p), p) for p in self.model.parameters() if p.requires_grad]

    @torch.no_grad()
    def gradients_to_masters(self) -> None:
        for param, master in self.pairs:
            if param.grad is None:
                master.grad = None
                continue
            if master.grad is None:
                master.grad = param.grad.float()
            else:
                master.grad.copy_(param.grad)
            param.grad = None

    @torch.no_grad()
    def masters_to_model(self) -> None:
        for param, master in self.pairs:
            param.copy_(master)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict with the fp32 masters in place of their bf16 copies."""
        state = self.model.state_dict()
        for name, master in self.names.items():
            state[name] = master.detach()
        return state
