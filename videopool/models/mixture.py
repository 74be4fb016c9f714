"""A gated mixture of video classifiers trained with mutual distillation: Lin, Xiao & Fan 2018, "NeXtVLAD"
(arXiv 1811.05014) §3.3, as its reference code computes it (linrongc/youtube-8m ``MixNeXtVladModel``).

::

    frames {m: [B, N, D_m]}, mask [B, N]
      │  x̄ = mean of the real frames, modalities concatenated       [B, ΣD]   (padded_frames_in_gate: sum / N)
      │  w = softmax(BN(x̄) W_g + b_g)                               [B, n]    the gate
      │  z_b = logits of branch b, a full VideoClassifier            [B, n, V]
      ▼  z = Σ_b w_b z_b,  p = σ(z)                                  [B, V]    probabilities

    training loss = BCE(σ(z)) + Σ_b BCE(σ(z_b)) + λ · mean_batch Σ_b KL(q ‖ q_b),   q = softmax_c(z / T)

``BCE`` is the configured label loss on probabilities (``bce_sum``/``bce_mean``, ε 1e-5); the KL runs over the
class axis with ε 1e-8 inside the logs, and its gradient flows into both the mixture and the branches (no stop
gradient), as in the reference.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import torch
import torch.nn as nn
from torch import Tensor

from videopool.layers.initializers import variance_scaling_
from videopool.layers.norm import MaskedBatchNorm1d
from videopool.models.classifier import VideoClassifier, joint_inverse_norm
from videopool.models.config import MixtureConfig, ModelConfig
from videopool.models.losses import binary_cross_entropy_on_probabilities
from videopool.models.output import ModelOutput

__all__ = ["MixtureClassifier", "distillation_loss"]

KL_EPSILON = 1e-8  # the reference's, inside both logs


class MixtureClassifier(nn.Module):
    """``config.mixture.branches`` :class:`VideoClassifier` branches (each built from ``config`` without its
    ``mixture`` section; logistic heads) whose logits a gate on the mean frame mixes.

    ``forward(frames, mask)`` returns the probabilities ``σ(Σ_b w_b z_b)`` ``[B, V]`` in eval mode and, in
    training mode, a :class:`~videopool.models.output.ModelOutput` whose ``aux`` holds ``logits [B, V]`` (mixed),
    ``branch_logits [B, n, V]`` and ``gate [B, n]``, for :meth:`loss`. ``regularization_loss()`` is the branches'
    heads' slim L2 (the gate is not regularised, as in the reference).

    The gate sees the frames as the branches receive them: padding zeroed and, with ``l2_normalize_frames``,
    each frame divided by its joint norm (the NeXtVLAD configs normalise nothing). Its batch norm (slim
    defaults, over the ``B`` mean vectors) needs two videos per training batch.

    Parameters: ``n`` branches + ``2·ΣD`` (gate BN) + ``ΣD·n + n`` (gate FC); names ``branches.<b>.*``,
    ``gate_norm.*``, ``gate_weight [ΣD, n]`` (TF layout, slim variance scaling) and ``gate_bias``; reference
    scopes ``branch_<b>/``, ``mix_weights_bn``, ``mix_weights/{weights,biases}``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        mixture = config.mixture
        if mixture.branches < 2:
            raise ValueError(f"a MixtureClassifier needs mixture.branches >= 2, got {mixture.branches}")
        self.config = config
        self.modalities = dict(config.modalities)
        self.l2_normalize_frames = config.l2_normalize_frames
        self.temperature = mixture.temperature
        self.distillation_weight = mixture.distillation_weight
        self.padded_frames_in_gate = mixture.padded_frames_in_gate
        branch_config = dataclasses.replace(config, mixture=MixtureConfig())
        self.branches = nn.ModuleList(VideoClassifier(branch_config) for _ in range(mixture.branches))
        input_size = sum(self.modalities.values())
        self.gate_norm = MaskedBatchNorm1d(input_size)
        self.gate_weight = nn.Parameter(variance_scaling_(torch.empty(input_size, mixture.branches)))
        self.gate_bias = nn.Parameter(torch.zeros(mixture.branches))
        self.output_size = config.num_classes

    def forward(self, frames: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor | ModelOutput:
        gate, branch_logits, logits = self._mix(frames, mask)
        probabilities = torch.sigmoid(logits)
        if not self.training:
            return probabilities
        return ModelOutput(probabilities, {"logits": logits, "branch_logits": branch_logits, "gate": gate})

    def logits(self, frames: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        """The mixed logits ``z [B, V]`` (``forward`` in eval mode is ``σ(z)``)."""
        return self._mix(frames, mask)[2]

    def gate(self, frames: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        """The mixture weights ``w [B, n]`` (rows sum to 1)."""
        frames, mask = self.branches[0]._checked_inputs(frames, mask)
        scale = joint_inverse_norm(frames) if self.l2_normalize_frames else None
        joined = torch.cat([frames[name] for name in self.modalities], dim=-1)  # [B, N, ΣD]
        if scale is not None:
            joined = joined * scale
        total = joined.sum(dim=1)  # padded frames are zero
        if mask is None or self.padded_frames_in_gate:
            mean = total / max(joined.shape[1], 1)
        else:
            mean = total / mask.sum(dim=1, keepdim=True).clamp_min(1).to(total.dtype)
        return torch.softmax(torch.addmm(self.gate_bias, self.gate_norm(mean), self.gate_weight), dim=-1)

    def _mix(self, frames: Mapping[str, Tensor], mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        gate = self.gate(frames, mask)
        branch_logits = torch.stack([branch.logits(frames, mask) for branch in self.branches], dim=1)
        logits = (gate.unsqueeze(-1) * branch_logits).sum(dim=1)
        return gate, branch_logits, logits

    def loss(self, output: ModelOutput, labels: Tensor, reduction: str = "bce_sum") -> Tensor:
        """``BCE(σ(z)) + Σ_b BCE(σ(z_b)) + λ · distillation_loss(z, z_b, T)`` from the training-mode output, in
        float32 or wider; ``reduction`` is the label loss's (``bce_sum``/``bce_mean``), averaged over the batch."""
        if not isinstance(output, ModelOutput):
            raise TypeError("MixtureClassifier.loss takes the training-mode output (a ModelOutput with the branch "
                            f"logits), got {type(output).__name__}")
        dtype = torch.promote_types(output.aux["logits"].dtype, torch.float32)  # bf16 under autocast -> float32
        logits = output.aux["logits"].to(dtype)
        branch_logits = output.aux["branch_logits"].to(dtype)
        loss = binary_cross_entropy_on_probabilities(torch.sigmoid(logits), labels, reduction)
        for index in range(branch_logits.shape[1]):
            loss = loss + binary_cross_entropy_on_probabilities(torch.sigmoid(branch_logits[:, index]), labels,
                                                                reduction)
        if self.distillation_weight:
            loss = loss + self.distillation_weight * distillation_loss(logits, branch_logits, self.temperature)
        return loss

    def regularization_loss(self) -> Tensor:
        """The branches' slim L2 terms, to be scaled by the recipe's ``regularization_penalty``."""
        return sum(branch.regularization_loss() for branch in self.branches)

    def extra_repr(self) -> str:
        return (f"branches={len(self.branches)}, temperature={self.temperature:g}, "
                f"distillation_weight={self.distillation_weight:g}, padded_frames_in_gate={self.padded_frames_in_gate}")


def distillation_loss(logits: Tensor, branch_logits: Tensor, temperature: float) -> Tensor:
    """``mean_batch Σ_b KL(q ‖ q_b)`` with ``q = softmax_c(z / T)``, ``q_b = softmax_c(z_b / T)`` over the classes,
    ``KL(q ‖ q_b) = Σ_c q_c (log(q_c + ε) − log(q_b,c + ε))``, ε = 1e-8; ``logits [B, V]``, ``branch_logits
    [B, n, V]``. No stop gradient: both sides learn (reference ``MixNeXtVladModel``)."""
    mixed = torch.softmax(logits / temperature, dim=-1).unsqueeze(1)
    branches = torch.softmax(branch_logits / temperature, dim=-1)
    divergence = (mixed * (torch.log(mixed + KL_EPSILON) - torch.log(branches + KL_EPSILON))).sum(dim=-1)
    return divergence.sum(dim=-1).mean()
