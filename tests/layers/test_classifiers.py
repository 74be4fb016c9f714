"""Mixture-of-Experts and logistic heads against loop references (spec §3.3, §3.4, §14.4)."""

import math

import pytest
import torch

from videopool.layers import LogisticClassifier, MoEClassifier


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _moe_reference(h, layer: MoEClassifier):
    """p_c = Σ_{m<M} softmax_{0..M}(h·W_gate[:, c(M+1)+j])_m · σ(h·W_exp[:, cM+m] + b[cM+m])."""
    m_count, classes = layer.num_mixtures, layer.num_classes
    out = torch.zeros(h.shape[0], classes, dtype=torch.float64)
    for b in range(h.shape[0]):
        for c in range(classes):
            gate_logits = [
                sum(h[b, i].item() * layer.gate_weight[i, c * (m_count + 1) + j].item() for i in range(h.shape[1]))
                for j in range(m_count + 1)
            ]
            top = max(gate_logits)
            exps = [math.exp(g - top) for g in gate_logits]
            total = sum(exps)
            p = 0.0
            for m in range(m_count):
                column = c * m_count + m
                expert = sum(h[b, i].item() * layer.expert_weight[i, column].item() for i in range(h.shape[1]))
                p += exps[m] / total * _sigmoid(expert + layer.expert_bias[column].item())
            out[b, c] = p
    return out


def _random_moe(num_mixtures=3, prob_gating=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    layer = MoEClassifier(5, 4, num_mixtures=num_mixtures, l2_penalty=1e-3, prob_gating=prob_gating).double().eval()
    with torch.no_grad():
        layer.expert_bias.normal_(generator=generator)
    return layer, torch.randn(3, 5, generator=generator, dtype=torch.float64) * 2


@pytest.mark.parametrize("num_mixtures", [1, 2, 3])
def test_moe_matches_loop_reference(num_mixtures):
    layer, h = _random_moe(num_mixtures)
    torch.testing.assert_close(layer(h), _moe_reference(h, layer), rtol=1e-12, atol=1e-12)


def test_moe_shapes_and_parameter_count():
    layer = MoEClassifier(1024, 3862, num_mixtures=2)
    assert tuple(layer.gate_weight.shape) == (1024, 3862 * 3)  # no gate bias
    assert tuple(layer.expert_weight.shape) == (1024, 3862 * 2)
    assert sum(p.numel() for p in layer.parameters()) == 11_864_064 + 7_917_100  # spec §6.1, V=3862
    gated = MoEClassifier(1024, 3862, prob_gating=True)
    assert sum(p.numel() for p in gated.parameters()) == 11_864_064 + 7_917_100 + 14_922_768


def test_moe_probabilities_stay_below_one_because_of_the_dummy_expert():
    layer, h = _random_moe(2)
    with torch.no_grad():
        layer.expert_bias.fill_(50.0)  # every expert says "yes" with probability ~1
    p = layer(h * 0)
    assert torch.all(p < 1) and torch.all(p > 0)
    # Equal gate logits: the dummy takes 1/(M+1) of the mass.
    torch.testing.assert_close(p, torch.full_like(p, 2 / 3))


def test_moe_columns_are_class_major():
    layer, h = _random_moe(2)
    target_class = 2
    with torch.no_grad():
        layer.gate_weight.zero_()
        layer.expert_weight.zero_()
        layer.expert_bias.fill_(-30.0)
        # Open gate m=1 of class 2 only (column c(M+1)+1) and make its expert (column cM+1) certain.
        layer.gate_weight[:, target_class * 3 + 1] = 0.0
        layer.gate_weight[:, target_class * 3 + 0] = -1e3
        layer.gate_weight[:, target_class * 3 + 2] = -1e3
        layer.expert_bias[target_class * 2 + 1] = 30.0
    p = layer(torch.ones(1, 5, dtype=torch.float64))
    expected = torch.zeros(1, 4, dtype=torch.float64)
    expected[0, target_class] = 1.0
    torch.testing.assert_close(p, expected, atol=1e-9, rtol=0)


def test_dummy_gate_at_minus_infinity_gives_a_plain_mixture():
    layer, h = _random_moe(2)
    m = layer.num_mixtures
    with torch.no_grad():
        for c in range(layer.num_classes):
            layer.gate_weight[:, c * (m + 1) + m] = -1e4  # h·w → −∞ for every row of h with Σh > 0
    h = h.abs() + 0.1
    gate_logits = (h @ layer.gate_weight).view(3, layer.num_classes, m + 1)[..., :m]
    experts = torch.sigmoid(h @ layer.expert_weight + layer.expert_bias).view(3, layer.num_classes, m)
    plain_mixture = (torch.softmax(gate_logits, -1) * experts).sum(-1)
    torch.testing.assert_close(layer(h), plain_mixture, rtol=1e-12, atol=1e-12)


def test_moe_probability_gating_matches_reference():
    layer, h = _random_moe(2, prob_gating=True)
    gating = layer.prob_gating
    with torch.no_grad():
        gating.batch_norm.running_mean.uniform_(-0.5, 0.5)
        gating.batch_norm.running_var.uniform_(0.5, 1.5)
    p = _moe_reference(h, layer)
    expected = torch.zeros_like(p)
    for b in range(p.shape[0]):
        for c in range(p.shape[1]):
            pre = sum(p[b, i].item() * gating.weight[i, c].item() for i in range(p.shape[1]))
            bn = gating.batch_norm
            pre = (pre - bn.running_mean[c].item()) / math.sqrt(bn.running_var[c].item() + bn.eps)
            pre = pre * bn.weight[c].item() + bn.bias[c].item()
            expected[b, c] = p[b, c] * _sigmoid(pre)
    torch.testing.assert_close(layer(h), expected, rtol=1e-12, atol=1e-12)


def test_moe_regularization_is_slim_l2_over_weights_only():
    layer, _ = _random_moe(2)
    expected = 1e-3 / 2 * (layer.gate_weight.pow(2).sum() + layer.expert_weight.pow(2).sum())
    torch.testing.assert_close(layer.regularization_loss(), expected)
    with torch.no_grad():
        layer.expert_bias.fill_(100.0)  # biases are not regularised
    torch.testing.assert_close(layer.regularization_loss(), expected)


def test_logistic_matches_reference_and_regularization():
    generator = torch.Generator().manual_seed(3)
    layer = LogisticClassifier(4, 3, l2_penalty=0.1).double()
    with torch.no_grad():
        layer.bias.normal_(generator=generator)
    h = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    expected = torch.zeros(2, 3, dtype=torch.float64)
    for b in range(2):
        for c in range(3):
            logit = sum(h[b, i].item() * layer.weight[i, c].item() for i in range(4)) + layer.bias[c].item()
            expected[b, c] = _sigmoid(logit)
    torch.testing.assert_close(layer(h), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.regularization_loss(), 0.05 * layer.weight.pow(2).sum())
    assert layer.output_size == 3


@pytest.mark.parametrize(
    "make", [lambda: MoEClassifier(6, 5, 2, prob_gating=True), lambda: MoEClassifier(6, 5, 1),
             lambda: LogisticClassifier(6, 5, prob_gating=True)]
)  # fmt: skip
def test_gradients_reach_every_parameter(make):
    layer = make()
    (layer(torch.randn(4, 6)).sum() + layer.regularization_loss()).backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_initialisation_is_glorot_uniform():
    layer = MoEClassifier(300, 100, 2)
    bound = math.sqrt(6 / (300 + 300))
    assert layer.gate_weight.abs().max() <= bound and layer.gate_weight.abs().max() > 0.9 * bound
    assert torch.all(layer.expert_bias == 0)
