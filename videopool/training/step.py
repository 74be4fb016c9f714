"""One optimisation step, shared by the training loop and ``benchmarks/bench_train.py``."""

from __future__ import annotations

import torch
from torch import nn

from videopool.training.losses import binary_cross_entropy_on_probabilities
from videopool.training.optim import BF16MasterWeights, clip_gradients, create_adam, set_learning_rate
from videopool.training.precision import autocast


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without applying the step."""


class TrainStep:
    """forward → loss (+ regularization) → backward → clip → Adam, in fp32 or bf16.

    bf16 schemes: ``"master_weights"`` (default; large weight matrices held in bf16, fp32
    masters in Adam, see :class:`BF16MasterWeights`) or ``"autocast"`` (fp32 weights,
    bf16 matmuls). ``forward_model`` is what gets called (the DDP wrapper under torchrun);
    ``model`` is the bare module (for ``regularization_loss`` and checkpoints).
    """

    def __init__(self, model: nn.Module, *, precision: str, device: torch.device, learning_rate: float,
                 clip_gradient_norm: float = 1.0, clip_mode: str = "per_tensor", loss: str = "bce_sum",
                 regularization_penalty: float = 1.0, bf16_scheme: str = "master_weights",
                 bf16_master_min_numel: int = 1 << 20,
                 adam_betas: tuple[float, float] = (0.9, 0.999), adam_epsilon: float = 1e-8) -> None:
        if bf16_scheme not in ("master_weights", "autocast"):
            raise ValueError(f"bf16_scheme must be 'master_weights' or 'autocast', got {bf16_scheme!r}")
        self.model = model
        self.forward_model: nn.Module = model
        self.precision, self.device = precision, device
        self.clip_gradient_norm, self.clip_mode = clip_gradient_norm, clip_mode
        self.loss_name, self.regularization_penalty = loss, regularization_penalty
        self.master = (BF16MasterWeights(model, bf16_master_min_numel)
                       if precision == "bf16" and bf16_scheme == "master_weights" else None)
        self.params = self.master.optimizer_params() if self.master else [p for p in model.parameters() if p.requires_grad]
        self.optimizer = create_adam(self.params, learning_rate, adam_betas, adam_epsilon)
        self.distributed = False

    def state_dict_fp32(self) -> dict[str, torch.Tensor]:
        """Model weights with fp32 masters in place of bf16 copies (what checkpoints store)."""
        return self.master.state_dict() if self.master else self.model.state_dict()

    def __call__(self, frames: dict[str, torch.Tensor], mask: torch.Tensor, labels: torch.Tensor,
                 lr: float | None = None) -> torch.Tensor:
        """Apply one step; returns the detached loss. Raises :class:`NonFiniteLossError` before
        touching the weights when the loss is NaN/inf (on any rank)."""
        if lr is not None:
            set_learning_rate(self.optimizer, lr)
        with autocast(self.device, self.precision):
            probabilities = self.forward_model(frames, mask)
        loss = binary_cross_entropy_on_probabilities(probabilities, labels, self.loss_name)
        if self.regularization_penalty:
            loss = loss + self.regularization_penalty * self.model.regularization_loss()
        finite = torch.isfinite(loss.detach()).to(torch.int32)
        if self.distributed:  # every rank must stop together, or the others hang in all-reduce
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not bool(finite):
            raise NonFiniteLossError(f"loss is {float(loss.detach())}")
        loss.backward()
        if self.master is not None:
            self.master.gradients_to_masters()
        clip_gradients(self.params, self.clip_gradient_norm, self.clip_mode)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.master is not None:
            self.master.masters_to_model()
        return loss.detach()
