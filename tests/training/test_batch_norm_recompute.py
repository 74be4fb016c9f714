import torch
from torch import nn

from videopool.layers import MaskedBatchNorm1d
from videopool.training.batch_norm import recompute_batch_norm


def test_recompute_gives_the_plain_average_of_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, momentum=1e-3))
    batches = [torch.randn(16, 5) * (i + 1) + i for i in range(4)]
    used = recompute_batch_norm(model, batches, model)
    assert used == 4
    with torch.no_grad():
        hidden = [model[0](b) for b in batches]
    expected_mean = torch.stack([h.mean(0) for h in hidden]).mean(0)
    expected_var = torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0)
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 1e-3  # restored
    assert not any(p.grad is not None for p in model.parameters())


def test_masked_layers_and_modes_are_restored():
    torch.manual_seed(1)
    bn = MaskedBatchNorm1d(3)
    frames = torch.randn(2, 6, 3) + 2.0
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    frames[~mask] = 100.0  # padding must not enter the statistics
    bn.eval()
    recompute_batch_norm(bn, [(frames, mask)], lambda b: bn(*b))
    real = frames[mask]
    torch.testing.assert_close(bn.running_mean, real.mean(0))
    torch.testing.assert_close(bn.running_var, real.var(0, unbiased=True))
    assert not bn.training


def test_no_batches_leaves_statistics_untouched():
    bn = nn.BatchNorm1d(3)
    bn.running_mean.fill_(0.5)
    assert recompute_batch_norm(bn, [], bn) == 0
    assert torch.all(bn.running_mean == 0.5)
