"""Context Gating and the Gated Linear Unit against loop references written from the formulas."""

import math

import pytest
import torch

from videopool.layers import ContextGating, GatedLinearUnit


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _set_bn_stats(bn: torch.nn.BatchNorm1d, generator: torch.Generator) -> None:
    """Non-trivial eval statistics so a wrong axis or a skipped BN shows up."""
    size = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(size, generator=generator, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(size, generator=generator, dtype=torch.float64) + 0.5)
        bn.weight.copy_(torch.rand(size, generator=generator, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(size, generator=generator, dtype=torch.float64))


def _bn_eval(value: float, bn: torch.nn.BatchNorm1d, j: int) -> float:
    mean, var = bn.running_mean[j].item(), bn.running_var[j].item()
    return (value - mean) / math.sqrt(var + bn.eps) * bn.weight[j].item() + bn.bias[j].item()


def _context_gating_reference(x, layer: ContextGating):
    weight = layer.weight
    size = weight.shape[0]
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for j in range(size):
            pre = sum(x[b, i].item() * weight[i, j].item() for i in range(size))
            if layer.remove_diagonal:
                pre -= x[b, j].item() * weight[j, j].item()
            pre = _bn_eval(pre, layer.batch_norm, j) if layer.batch_norm is not None else pre + layer.bias[j].item()
            out[b, j] = x[b, j].item() * _sigmoid(pre)
    return out


@pytest.mark.parametrize("add_batch_norm", [True, False])
@pytest.mark.parametrize("remove_diagonal", [False, True])
def test_context_gating_matches_reference(add_batch_norm, remove_diagonal):
    generator = torch.Generator().manual_seed(0)
    layer = ContextGating(6, add_batch_norm=add_batch_norm, remove_diagonal=remove_diagonal).double().eval()
    if add_batch_norm:
        _set_bn_stats(layer.batch_norm, generator)
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _context_gating_reference(x, layer), rtol=1e-12, atol=1e-12)
    assert layer.output_size == 6


def test_context_gating_parameters_and_init():
    layer = ContextGating(1024)
    assert tuple(layer.weight.shape) == (1024, 1024)
    assert sum(p.numel() for p in layer.parameters()) == 1024 * 1024 + 2 * 1024  # W + BN γ, β
    assert abs(layer.weight.std().item() - 1 / 32) < 1e-3  # N(0, 1/H)
    no_bn = ContextGating(64, add_batch_norm=False)
    assert tuple(no_bn.bias.shape) == (64,)  # sized by H (WILLOW's no-BN branch used the cluster count)


def test_context_gating_train_mode_uses_batch_statistics():
    torch.manual_seed(0)
    layer = ContextGating(5).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    pre = x @ layer.weight
    normalized = (pre - pre.mean(0)) / torch.sqrt(pre.var(0, unbiased=False) + 1e-3)
    torch.testing.assert_close(layer(x), x * torch.sigmoid(normalized))
    assert layer.batch_norm.momentum == pytest.approx(1e-3) and layer.batch_norm.eps == pytest.approx(1e-3)


@pytest.mark.parametrize("add_batch_norm", [False, True])
def test_glu_matches_reference(add_batch_norm):
    generator = torch.Generator().manual_seed(1)
    layer = GatedLinearUnit(5, 3, add_batch_norm=add_batch_norm).double().eval()
    with torch.no_grad():
        layer.linear_bias.normal_(generator=generator)
        if layer.gate_bias is not None:
            layer.gate_bias.normal_(generator=generator)
    if add_batch_norm:
        _set_bn_stats(layer.gate_batch_norm, generator)
    x = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    expected = torch.zeros(4, 3, dtype=torch.float64)
    for b in range(4):
        for j in range(3):
            linear = sum(x[b, i].item() * layer.linear_weight[i, j].item() for i in range(5))
            linear += layer.linear_bias[j].item()
            gate = sum(x[b, i].item() * layer.gate_weight[i, j].item() for i in range(5))
            gate = _bn_eval(gate, layer.gate_batch_norm, j) if add_batch_norm else gate + layer.gate_bias[j].item()
            expected[b, j] = linear * _sigmoid(gate)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert layer.output_size == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: ContextGating(6),
        lambda: ContextGating(6, add_batch_norm=False),
        lambda: GatedLinearUnit(6),
        lambda: GatedLinearUnit(6, 4, add_batch_norm=True),
    ],
)
def test_gradients_reach_every_parameter(make):
    layer = make()
    x = torch.randn(5, 6)
    layer(x).pow(2).sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
