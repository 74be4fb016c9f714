"""The fully-connected layer between the fused video vector and the gating."""

from __future__ import annotations

import torch
import torch.nn as nn

from videopool.layers.activations import make_activation
from videopool.layers.norm import BN_EPS, BN_MOMENTUM


class HiddenLayer(nn.Module):
    """``y = act(BN(dropout(x) W + b))`` with ``W [in, out]`` (TF layout); bias, batch norm and dropout optional.

    ``init_std`` set: ``W`` ~ N(0, init_std²) and ``b`` ~ N(0, 0.01²) (WILLOW's ``hidden1_weights`` /
    ``hidden1_biases``, with ``init_std = 1/sqrt(K)``); otherwise Glorot-uniform ``W`` and zero ``b``.

    Shapes: ``x [B, in] -> y [B, out]``.
    """

    def __init__(self, input_size: int, output_size: int, *, bias: bool = True, batch_norm: bool = False,
                 activation: str = "none", dropout: float = 0.0, init_std: float | None = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        weight = torch.empty(input_size, output_size)
        self.weight = nn.Parameter(weight.normal_(0.0, init_std) if init_std else nn.init.xavier_uniform_(weight))
        if bias:
            initial = torch.empty(output_size)
            self.bias = nn.Parameter(initial.normal_(0.0, 0.01) if init_std else initial.zero_())
        else:
            self.register_parameter("bias", None)
        self.batch_norm = nn.BatchNorm1d(output_size, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_norm else None
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def extra_repr(self) -> str:
        return f"{self.input_size} -> {self.output_size}, bias={self.bias is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        x = x @ self.weight if self.bias is None else torch.addmm(self.bias, x, self.weight)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return self.activation(x)
