"""SE Context Gating (NeXtVLAD, arXiv 1811.05014 §3.3) against a loop reference written from the formula."""

import math

import pytest
import torch

from videopool.layers import GATINGS, SEContextGating, make_gating


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _reference(x, layer: SEContextGating, training: bool):
    """``y = x ⊙ σ(ReLU(BN(x W₁)) W₂)`` by loops; BN with batch statistics (biased) or running statistics."""
    w1, w2, bn = layer.reduce_weight, layer.weight, layer.batch_norm
    batch, size = x.shape
    bottleneck = w1.shape[1]
    pre = [[sum(x[b, i].item() * w1[i, j].item() for i in range(size)) for j in range(bottleneck)]
           for b in range(batch)]
    if training:
        mean = [sum(pre[b][j] for b in range(batch)) / batch for j in range(bottleneck)]
        var = [sum((pre[b][j] - mean[j]) ** 2 for b in range(batch)) / batch for j in range(bottleneck)]
    else:
        mean, var = bn.running_mean.tolist(), bn.running_var.tolist()
    out = torch.zeros_like(x)
    for b in range(batch):
        squeezed = [max(0.0, (pre[b][j] - mean[j]) / math.sqrt(var[j] + bn.eps) * bn.weight[j].item()
                        + bn.bias[j].item()) for j in range(bottleneck)]
        for i in range(size):
            gate = sum(squeezed[j] * w2[j, i].item() for j in range(bottleneck))
            out[b, i] = x[b, i].item() * _sigmoid(gate)
    return out


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_se_gating_matches_reference(training):
    generator = torch.Generator().manual_seed(0)
    layer = SEContextGating(8, reduction=4).double()
    with torch.no_grad():
        bn = layer.batch_norm
        bn.running_mean.copy_(torch.randn(2, generator=generator, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(2, generator=generator, dtype=torch.float64) + 0.5)
        bn.weight.copy_(torch.rand(2, generator=generator, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(2, generator=generator, dtype=torch.float64))
    x = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    expected = _reference(x, layer, training)
    torch.testing.assert_close(layer.train(training)(x), expected, rtol=1e-12, atol=1e-12)


def test_se_gating_sizes_names_and_factory():
    layer = make_gating("se", 2048, reduction=8)
    assert isinstance(layer, SEContextGating) and "se" in GATINGS and layer.output_size == 2048
    assert {name: tuple(p.shape) for name, p in layer.named_parameters()} == {
        "reduce_weight": (2048, 256), "batch_norm.weight": (256,), "batch_norm.bias": (256,), "weight": (256, 2048),
    }
    assert sum(p.numel() for p in layer.parameters()) == 1_049_088  # NeXtVLAD H = 2048, r = 8
    assert sum(p.numel() for p in make_gating("se", 2048, reduction=16).parameters()) == 524_544
    assert layer.batch_norm.eps == pytest.approx(1e-3) and layer.batch_norm.momentum == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="reduction"):
        SEContextGating(4, reduction=8)


def test_se_gating_gradients_reach_every_parameter():
    torch.manual_seed(0)
    layer = SEContextGating(16, reduction=4)
    x = torch.randn(6, 16, requires_grad=True)
    layer(x).square().sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0
