"""l2_normalize (TF semantics) and MaskedBatchNorm1d (statistics over real rows only)."""

import math

import numpy as np
import pytest
import torch

from videopool.layers import MaskedBatchNorm1d, l2_normalize
from videopool.layers.norm import intra_global_l2_normalize


def test_l2_normalize_matches_formula_along_any_axis():
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    for dim in range(3):
        expected = x / x.pow(2).sum(dim, keepdim=True).sqrt()
        torch.testing.assert_close(l2_normalize(x, dim), expected)


def test_l2_normalize_zero_and_tiny_vectors_follow_tensorflow():
    assert torch.equal(l2_normalize(torch.zeros(2, 3), 1), torch.zeros(2, 3))
    # eps bounds the squared norm: a vector of norm 1e-7 is divided by sqrt(1e-12) = 1e-6, giving norm 0.1
    # (F.normalize, whose eps bounds the norm itself, would return a unit vector here).
    tiny = torch.tensor([[1e-7, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(l2_normalize(tiny, 1), torch.tensor([[0.1, 0.0]], dtype=torch.float64))


def _bn_pair(channels=5, seed=0):
    torch.manual_seed(seed)
    masked = MaskedBatchNorm1d(channels).double()
    with torch.no_grad():
        masked.weight.uniform_(0.5, 1.5)
        masked.bias.normal_()
        masked.running_mean.normal_()
        masked.running_var.uniform_(0.5, 2.0)
    plain = torch.nn.BatchNorm1d(channels, eps=1e-3, momentum=1e-3).double()
    plain.load_state_dict(masked.state_dict())
    return masked, plain


def test_defaults_are_tf_slim_and_names_map_to_tf():
    bn = MaskedBatchNorm1d(7)
    assert bn.eps == 1e-3 and bn.momentum == 1e-3
    assert {"weight", "bias", "running_mean", "running_var"} <= set(bn.state_dict())
    assert sum(p.numel() for p in bn.parameters()) == 14


@pytest.mark.parametrize("training", [True, False])
def test_unmasked_equals_batchnorm1d(training):
    masked, plain = _bn_pair()
    masked.train(training)
    plain.train(training)
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(masked(x), plain(x.reshape(12, 5)).reshape(3, 4, 5))
    torch.testing.assert_close(masked(x, torch.ones(3, 4, dtype=torch.bool)), plain(x.reshape(12, 5)).reshape(3, 4, 5))
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)


def test_training_statistics_use_real_rows_only():
    masked, plain = _bn_pair()
    masked.train()
    plain.train()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    x[~mask] = 1e6  # garbage in padded rows would dominate any statistic that saw it
    y = masked(x, mask)
    expected_real = plain(x[mask])
    torch.testing.assert_close(y[mask], expected_real)
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)


def test_training_statistics_by_hand():
    bn = MaskedBatchNorm1d(2).double().train()
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [99.0, -99.0]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    y = bn(x, mask)
    # real rows: column means 2, 4; biased variances 1, 4
    expected = torch.tensor([[-1 / math.sqrt(1.001), -2 / math.sqrt(4.001)], [1 / math.sqrt(1.001), 2 / math.sqrt(4.001)]])
    torch.testing.assert_close(y[0, :2], expected.double())
    np.testing.assert_allclose(bn.running_mean.numpy(), [0.002, 0.004])
    np.testing.assert_allclose(bn.running_var.numpy(), [0.999 + 0.001 * 2.0, 0.999 + 0.001 * 8.0])  # unbiased: 2, 8


def test_eval_uses_running_stats_and_zeroes_padding():
    masked, plain = _bn_pair()
    masked.eval()
    plain.eval()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    x[~mask] = float("nan")
    y = masked(x, mask)
    torch.testing.assert_close(y[mask], plain(x[mask]))
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))


def test_no_gradient_flows_into_padded_rows():
    bn = MaskedBatchNorm1d(3).double().train()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    bn(x, mask).pow(3).sum().backward()
    assert torch.equal(x.grad[~mask], torch.zeros_like(x.grad[~mask]))
    assert x.grad[mask].abs().sum() > 0
    assert bn.weight.grad.abs().sum() > 0 and bn.bias.grad.abs().sum() > 0


def test_rejects_single_real_row_in_training_and_bad_shapes():
    bn = MaskedBatchNorm1d(3).train()
    with pytest.raises(ValueError, match="at least 2 real rows"):
        bn(torch.randn(1, 4, 3), torch.tensor([[True, False, False, False]]))
    with pytest.raises(ValueError, match="3 features"):
        bn(torch.randn(4, 5))
    with pytest.raises(ValueError, match="mask shape"):
        bn(torch.randn(2, 4, 3), torch.ones(2, 3, dtype=torch.bool))


def test_bf16_autocast_runs():
    bn = MaskedBatchNorm1d(8).train()
    x = torch.randn(4, 6, 8)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, 3:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = bn(x.bfloat16(), mask)
    torch.testing.assert_close(y.float(), MaskedBatchNorm1d(8).train()(x, mask), atol=0.05, rtol=0.05)


def test_fused_intra_global_normalisation_equals_two_steps():
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    x[0, :, 1] = 0.0  # an empty cluster must stay zero and not count in the global norm
    x[1, :, 2] = 1e-8  # a column below TF's epsilon is scaled by 1/sqrt(eps), not to unit norm
    x[2] = 0.0
    two_steps = l2_normalize(l2_normalize(x, 1).reshape(3, -1), 1)
    torch.testing.assert_close(intra_global_l2_normalize(x), two_steps, rtol=1e-12, atol=1e-15)
    assert torch.equal(intra_global_l2_normalize(x)[2], torch.zeros(20, dtype=torch.float64))


def test_weighted_path_for_torch_compile_equals_gather_path():
    gathered, _ = _bn_pair(seed=3)
    weighted, _ = _bn_pair(seed=3)
    gathered.train()
    weighted.train()
    x = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = gathered(x, mask)
    out = weighted._weighted_batch_norm(x.reshape(18, 5), mask.reshape(18)).reshape(3, 6, 5)
    torch.testing.assert_close(out, expected)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(weighted, name), getattr(gathered, name))
    grad = torch.randn_like(out)
    (expected_grad,) = torch.autograd.grad(expected, x, grad)
    (out_grad,) = torch.autograd.grad(out, x, grad)
    torch.testing.assert_close(out_grad, expected_grad)
