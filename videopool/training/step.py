"""One optimisation step, shared by the training loop and ``benchmarks/bench_train.py``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function

from videopool.core.precision import autocast
from videopool.models.losses import binary_cross_entropy_on_probabilities
from videopool.training.optim import BF16MasterWeights, clip_gradients, create_adam, set_learning_rate

BF16_SCHEMES = ("master_weights", "autocast")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without applying the step."""


def prepare_bf16(model: nn.Module, precision: str, scheme: str, min_numel: int = 1 << 20) -> BF16MasterWeights | None:
    """Hold the large weight matrices of ``model`` in bf16 with fp32 masters (scheme ``master_weights``) when
    training in bf16; None otherwise. Call it before wrapping the model in DDP, which fixes parameter dtypes."""
    if scheme not in BF16_SCHEMES:
        raise ValueError(f"bf16_scheme must be one of {list(BF16_SCHEMES)}, got {scheme!r}")
    if precision == "bf16" and scheme == "master_weights":
        return BF16MasterWeights(model, min_numel)
    return None


class TrainStep:
    """forward → loss (+ regularization) → backward → clip → Adam, in fp32 or bf16.

    The loss is ``model.loss(output, labels, loss)`` when the model defines one (``output`` is what its
    training-mode forward returned, e.g. a :class:`~videopool.models.ModelOutput`), else the BCE of the returned
    probabilities; ``regularization_penalty · model.regularization_loss()`` is added either way.

    ``module`` is what runs the forward pass: the model, or its ``DistributedDataParallel`` wrapper under torchrun
    (then a non-finite loss on any rank stops every rank). ``master`` holds the fp32 masters of bf16 weights
    (:func:`prepare_bf16`); without it bf16 runs as plain autocast over fp32 weights.
    """

    def __init__(self, module: nn.Module, *, precision: str, device: torch.device, learning_rate: float,
                 master: BF16MasterWeights | None = None, clip_gradient_norm: float = 1.0,
                 clip_mode: str = "per_tensor", loss: str = "bce_sum", regularization_penalty: float = 1.0,
                 adam_betas: tuple[float, float] = (0.9, 0.999), adam_epsilon: float = 1e-8) -> None:
        self.module = module
        self.distributed = isinstance(module, DistributedDataParallel)
        self.model: nn.Module = module.module if self.distributed else module
        self.precision, self.device = precision, device
        self.master = master
        self.clip_gradient_norm, self.clip_mode = clip_gradient_norm, clip_mode
        self.loss_name, self.regularization_penalty = loss, regularization_penalty
        self.model_loss = getattr(self.model, "loss", None)  # a model may define its label loss (ModelOutput)
        self.params = master.optimizer_params() if master else [p for p in self.model.parameters() if p.requires_grad]
        groups = getattr(self.model, "parameter_groups", None)  # per-group learning-rate scales of the model
        if groups is not None and master is None:
            groups = [{**group, "lr": learning_rate * group["lr_scale"]} for group in groups() if group["params"]]
            self.params = [p for group in groups for p in group["params"]]
        elif groups is not None:
            raise ValueError(f"{type(self.model).__name__} trains parameter groups at different learning rates, "
                             "which bf16 master weights do not support; use --precision fp32 or "
                             "--set bf16_scheme=autocast")
        self.optimizer = create_adam(groups if groups is not None else self.params, learning_rate, adam_betas,
                                     adam_epsilon)

    def state_dict_fp32(self) -> dict[str, torch.Tensor]:
        """Model weights with fp32 masters in place of bf16 copies (what checkpoints store)."""
        return self.master.state_dict() if self.master else self.model.state_dict()

    def __call__(self, frames: dict[str, torch.Tensor], mask: torch.Tensor, labels: torch.Tensor,
                 lr: float | None = None, inputs: dict | None = None) -> torch.Tensor:
        """Apply one step; returns the detached loss. ``inputs``: further keyword arguments of the forward (a
        segment model's whole-video context). Raises :class:`NonFiniteLossError` before
        touching the weights when the loss is NaN/inf (on any rank)."""
        if lr is not None:
            set_learning_rate(self.optimizer, lr)
        with autocast(self.device, self.precision):
            output = self.module(frames, mask, **(inputs or {}))
        with record_function("part:loss"):  # scopes cost nothing unprofiled; benchmarks/profile_step.py groups by them
            if self.model_loss is not None:  # the model's own loss on its training output (docs/architecture.md)
                loss = self.model_loss(output, labels, self.loss_name)
            else:
                loss = binary_cross_entropy_on_probabilities(output, labels, self.loss_name)
            if self.regularization_penalty:
                loss = loss + self.regularization_penalty * self.model.regularization_loss()
        finite = torch.isfinite(loss.detach()).to(torch.int32)
        if self.distributed:  # every rank must stop together, or the others hang in all-reduce
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not bool(finite):
            raise NonFiniteLossError(f"loss is {float(loss.detach())}")
        loss.backward()
        with record_function("part:clipping"):
            if self.master is not None:
                self.master.gradients_to_masters()
            clip_gradients(self.params, self.clip_gradient_norm, self.clip_mode)
        with record_function("part:optimizer"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.master is not None:
                self.master.masters_to_model()
        return loss.detach()
