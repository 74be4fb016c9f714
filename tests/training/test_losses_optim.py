import math

import pytest
import torch
from torch import nn

from videopool.models.losses import binary_cross_entropy_on_probabilities
from videopool.training.optim import (
    BF16MasterWeights,
    clip_gradients,
    cpu_gradient_norms,
    create_adam,
    staircase_learning_rate,
)


def _hand_bce(p, y, eps=1e-5, over_classes="sum"):
    per_video = []
    for row_p, row_y in zip(p.tolist(), y.tolist()):
        terms = [-(yy * math.log(pp + eps) + (1 - yy) * math.log(1 - pp + eps)) for pp, yy in zip(row_p, row_y)]
        per_video.append(sum(terms) if over_classes == "sum" else sum(terms) / len(terms))
    return sum(per_video) / len(per_video)


def test_tf1_loss_matches_hand_formula():
    torch.manual_seed(0)
    p = torch.rand(4, 7, dtype=torch.float64) * 0.98 + 0.01
    y = (torch.rand(4, 7) > 0.6).double()
    got = binary_cross_entropy_on_probabilities(p, y, "bce_sum")
    assert got.item() == pytest.approx(_hand_bce(p, y), rel=1e-6)
    got_mean = binary_cross_entropy_on_probabilities(p, y, "bce_mean")
    assert got_mean.item() == pytest.approx(_hand_bce(p, y, over_classes="mean"), rel=1e-6)
    # exactly 0/1 probabilities stay finite thanks to ε
    edge = binary_cross_entropy_on_probabilities(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    assert edge.item() == pytest.approx(-2 * math.log(1e-5), rel=1e-5)


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="bce_sum"):
        binary_cross_entropy_on_probabilities(torch.rand(1, 2), torch.zeros(1, 2), "hinge")


def test_staircase_schedule_values():
    assert staircase_learning_rate(2e-4, 0.8, 1000, 0) == 2e-4
    assert staircase_learning_rate(2e-4, 0.8, 1000, 999) == 2e-4
    assert staircase_learning_rate(2e-4, 0.8, 1000, 1000) == pytest.approx(2e-4 * 0.8)
    assert staircase_learning_rate(2e-4, 0.8, 1000, 2999) == pytest.approx(2e-4 * 0.64)
    # WILLOW: batch 80, 4M examples -> the lr steps every 50,000 steps
    assert staircase_learning_rate(1.0, 0.5, 4_000_000, 49_999 * 80) == 1.0
    assert staircase_learning_rate(1.0, 0.5, 4_000_000, 50_000 * 80) == 0.5


def _params_with_grads():
    a = nn.Parameter(torch.zeros(3))
    b = nn.Parameter(torch.zeros(2, 2))
    c = nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    b.grad = torch.tensor([[0.1, 0.2], [0.2, 0.4]])  # norm 0.5
    c.grad = torch.tensor([0.0, 2.0])  # norm 2
    return [a, b, c]


def test_per_tensor_clipping_matches_tf_clip_by_norm():
    params = _params_with_grads()
    clip_gradients(params, 1.0, "per_tensor")
    # each tensor on its own: g * 1 / max(|g|, 1)
    assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.8, 0.0]))
    assert torch.equal(params[1].grad, torch.tensor([[0.1, 0.2], [0.2, 0.4]]))  # untouched, norm < 1
    assert torch.allclose(params[2].grad, torch.tensor([0.0, 1.0]))


def test_global_clipping_uses_the_joint_norm():
    params = _params_with_grads()
    total = math.sqrt(25 + 0.25 + 4)
    clip_gradients(params, 1.0, "global")
    factor = 1.0 / (total + 1e-6)
    assert torch.allclose(params[0].grad, torch.tensor([3.0, 4.0, 0.0]) * factor)
    assert torch.allclose(params[1].grad, torch.tensor([[0.1, 0.2], [0.2, 0.4]]) * factor)
    assert torch.allclose(params[2].grad, torch.tensor([0.0, 2.0]) * factor)
    joint = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    assert joint.item() == pytest.approx(1.0, rel=1e-5)


def test_clip_none_and_unknown_mode():
    params = _params_with_grads()
    clip_gradients(params, 1.0, "none")
    assert torch.equal(params[0].grad, torch.tensor([3.0, 4.0, 0.0]))
    with pytest.raises(ValueError, match="per_tensor"):
        clip_gradients(params, 1.0, "per_layer")


def test_adam_uses_tf_defaults():
    opt = create_adam([nn.Parameter(torch.zeros(3))], lr=2e-4)
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8 and group["lr"] == 2e-4


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.big = nn.Parameter(torch.randn(64, 32) * 0.1)
        self.small = nn.Parameter(torch.randn(32, 4) * 0.1)
        self.norm = nn.BatchNorm1d(32)

    def forward(self, x):
        return torch.sigmoid(self.norm(x @ self.big) @ self.small)


def test_master_weights_compute_the_same_step_as_autocast():
    torch.manual_seed(0)
    reference = _Tiny()
    model = _Tiny()
    model.load_state_dict(reference.state_dict())
    master = BF16MasterWeights(model, min_numel=1000)
    assert model.big.dtype == torch.bfloat16 and model.small.dtype == torch.float32
    assert master.state_dict()["big"].dtype == torch.float32
    assert torch.equal(master.state_dict()["big"], reference.big.detach())

    opt_ref = torch.optim.Adam(reference.parameters(), lr=1e-2)
    opt = create_adam(master.optimizer_params(), lr=1e-2)
    x = torch.randn(16, 64)
    for _ in range(3):
        opt_ref.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_out = reference(x)
        ref_out.float().sum().backward()
        opt_ref.step()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().sum().backward()
        master.gradients_to_masters()
        assert model.big.grad is None and master.names["big"].grad.dtype == torch.float32
        opt.step()
        opt.zero_grad()
        master.masters_to_model()
    # autocast rounds the fp32 weight to bf16 on every forward; holding the rounded copy is the same maths
    assert torch.allclose(master.names["big"], reference.big, atol=1e-6)
    assert torch.allclose(model.small, reference.small, atol=1e-6)
    assert torch.equal(model.big, master.names["big"].detach().to(torch.bfloat16))


def test_cpu_gradient_norms_match_vector_norm_on_every_path():
    generator = torch.Generator().manual_seed(0)
    big = torch.randn(300, 400, generator=generator)  # >= 65,536 elements: the BLAS dot path
    grads = [big, big.t(), big.double(), big.bfloat16(), torch.randn(7, generator=generator), torch.zeros(70000)]
    expected = [torch.linalg.vector_norm(g.double()).item() for g in grads]
    assert cpu_gradient_norms(grads) == pytest.approx(expected, rel=1e-6)


def test_per_tensor_clipping_of_large_tensors_takes_the_same_factors():
    generator = torch.Generator().manual_seed(1)
    large = nn.Parameter(torch.zeros(256, 300))
    large.grad = torch.randn(256, 300, generator=generator) * 0.01  # norm ~2.8 > 1
    small = nn.Parameter(torch.zeros(256, 300))
    small.grad = torch.randn(256, 300, generator=generator) * 1e-4  # norm ~0.03 < 1: left alone
    before = small.grad.clone()
    expected = large.grad / torch.linalg.vector_norm(large.grad)
    clip_gradients([large, small], 1.0, "per_tensor")
    torch.testing.assert_close(large.grad, expected, rtol=1e-5, atol=1e-8)
    assert torch.equal(small.grad, before)
