"""Classifier heads that turn one vector per video into class probabilities (built by name: :func:`make_head`).

Both heads return probabilities (the TF1 references train with binary cross-entropy on
probabilities) and expose ``regularization_loss()``: the slim L2 term ``λ/2 · ΣW²`` over their
weight matrices, to be added to the loss by the trainer. Weights use TF layout ``[in, out]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from videopool.layers.gating import ContextGating

HEADS = ("moe", "logistic")


def _glorot_uniform(fan_in: int, fan_out: int) -> torch.Tensor:
    return nn.init.xavier_uniform_(torch.empty(fan_in, fan_out))


def _l2(weight: torch.Tensor) -> torch.Tensor:
    # vector_norm reads the weight once; pow(2).sum() would also write a weight-sized temporary
    return torch.linalg.vector_norm(weight).square()


class MoEClassifier(nn.Module):
    """Mixture of logistic experts with a dummy expert (YouTube-8M starter code / WILLOW).

    For every class ``c`` a softmax over ``M + 1`` gate logits weights ``M`` sigmoid experts; the
    extra gate belongs to a *dummy expert* that always predicts 0, so probabilities stay below 1::

        g = softmax(h W_gate)[c, :]            W_gate [H, V(M+1)], no bias
        e = σ(h W_exp + b_exp)[c, :]           W_exp  [H, V·M],    bias [V·M]
        p_c = Σ_{m<M} g_m · e_m

    Columns are class-major: class ``c`` owns gate columns ``c(M+1) … c(M+1)+M`` and expert
    columns ``cM … cM+M−1``. With ``prob_gating`` the probabilities are re-weighted by Context
    Gating over classes, ``p ⊙ σ(BN(p W_p))`` with ``W_p [V, V]`` ~ N(0, 1/V) (WILLOW
    ``--moe_prob_gating``). Both matrices are Glorot-uniform, the expert bias starts at 0.

    Shapes: ``h [B, H] -> p [B, V]``.
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        num_mixtures: int = 2,
        l2_penalty: float = 1e-8,
        prob_gating: bool = False,
    ) -> None:
        super().__init__()
        if num_mixtures < 1:
            raise ValueError(f"MoEClassifier needs num_mixtures >= 1, got {num_mixtures}")
        self.input_size = input_size
        self.num_classes = num_classes
        self.num_mixtures = num_mixtures
        self.l2_penalty = l2_penalty
        self.output_size = num_classes
        self.gate_weight = nn.Parameter(_glorot_uniform(input_size, num_classes * (num_mixtures + 1)))
        self.expert_weight = nn.Parameter(_glorot_uniform(input_size, num_classes * num_mixtures))
        self.expert_bias = nn.Parameter(torch.zeros(num_classes * num_mixtures))
        self.prob_gating = ContextGating(num_classes) if prob_gating else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch = h.shape[0]
        m = self.num_mixtures
        # Softmax and sum run over a [B, M+1, V] view: along an innermost dim of size 3 torch's CPU
        # kernels do not vectorise, and that costs ~10x (10 ms against 1 ms at B=64, V=3862).
        gate_logits = (h @ self.gate_weight).view(batch, self.num_classes, m + 1).transpose(1, 2)
        gates = torch.softmax(gate_logits, dim=1)
        experts = torch.sigmoid(torch.addmm(self.expert_bias, h, self.expert_weight))
        experts = experts.view(batch, self.num_classes, m).transpose(1, 2)
        probabilities = (gates[:, :m] * experts).sum(dim=1)
        if self.prob_gating is not None:
            probabilities = self.prob_gating(probabilities)
        return probabilities

    def regularization_loss(self) -> torch.Tensor:
        """``λ/2 · (ΣW_gate² + ΣW_exp²)`` — slim ``l2_regularizer`` semantics, weights only."""
        return 0.5 * self.l2_penalty * (_l2(self.gate_weight) + _l2(self.expert_weight))

    def extra_repr(self) -> str:
        return (
            f"{self.input_size} -> {self.num_classes}, num_mixtures={self.num_mixtures}, "
            f"l2_penalty={self.l2_penalty:g}"
        )


class LogisticClassifier(nn.Module):
    """Logistic regression head: ``p = σ(h W + b)``, ``W [H, V]`` Glorot-uniform, ``b`` zeros.

    ``prob_gating`` adds the same output Context Gating as :class:`MoEClassifier`. ``logits(h)`` is ``h W + b``
    (``forward`` is ``σ(logits(h))`` without output gating).

    Shapes: ``h [B, H] -> p [B, V]``.
    """

    def __init__(self, input_size: int, num_classes: int, l2_penalty: float = 1e-8, prob_gating: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        self.num_classes = num_classes
        self.l2_penalty = l2_penalty
        self.output_size = num_classes
        self.weight = nn.Parameter(_glorot_uniform(input_size, num_classes))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.prob_gating = ContextGating(num_classes) if prob_gating else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        probabilities = torch.sigmoid(self.logits(h))
        if self.prob_gating is not None:
            probabilities = self.prob_gating(probabilities)
        return probabilities

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """``h W + b`` ``[B, V]``: the scores before the sigmoid (and before any output gating, which acts on
        probabilities). A mixture of classifiers mixes these (:class:`videopool.models.mixture.MixtureClassifier`)."""
        return torch.addmm(self.bias, h, self.weight)

    def regularization_loss(self) -> torch.Tensor:
        """``λ/2 · ΣW²`` over the weight matrix (the bias is not regularised, as in the TF1 starter code)."""
        return 0.5 * self.l2_penalty * _l2(self.weight)

    def extra_repr(self) -> str:
        return f"{self.input_size} -> {self.num_classes}, l2_penalty={self.l2_penalty:g}"


def make_head(kind: str, input_size: int, num_classes: int, *, num_mixtures: int = 2, l2_penalty: float = 1e-8,
              prob_gating: bool = False) -> nn.Module:
    """The classifier head named by ``kind`` (one of :data:`HEADS`)."""
    if kind == "moe":
        return MoEClassifier(input_size, num_classes, num_mixtures, l2_penalty, prob_gating)
    if kind == "logistic":
        return LogisticClassifier(input_size, num_classes, l2_penalty, prob_gating)
    raise ValueError(f"unknown classifier head {kind!r}; choose one of {list(HEADS)}")
