"""Fusion of pooled modality vectors: concatenation, FC-concatenation and MFB (spec §4.15, seed 003)."""

import math

import pytest
import torch

from videopool.layers import ConcatFusion, FCConcatFusion, MFBFusion


def _pooled(sizes, batch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, size, generator=generator, dtype=torch.float64) for name, size in sizes.items()}


def test_concat_follows_the_configured_order_not_the_dict_order():
    fusion = ConcatFusion({"rgb": 4, "audio": 2})
    pooled = _pooled({"audio": 2, "rgb": 4})
    torch.testing.assert_close(fusion(pooled), torch.cat([pooled["rgb"], pooled["audio"]], 1))
    assert fusion.output_size == 6
    with pytest.raises(KeyError, match="audio"):
        fusion({"rgb": pooled["rgb"]})


def test_fc_concat_matches_reference_and_has_mfb_parameter_budget():
    fusion = FCConcatFusion({"rgb": 4, "audio": 3}, projection_size=5, activation="relu").double()
    pooled = _pooled({"rgb": 4, "audio": 3})
    parts = []
    for name in ("rgb", "audio"):
        linear = fusion.projections[name]
        part = torch.zeros(3, 5, dtype=torch.float64)
        for b in range(3):
            for j in range(5):
                value = sum(pooled[name][b, i].item() * linear.weight[j, i].item() for i in range(linear.in_features))
                part[b, j] = max(0.0, value + linear.bias[j].item())
        parts.append(part)
    torch.testing.assert_close(fusion(pooled), torch.cat(parts, 1), rtol=1e-12, atol=1e-12)
    assert fusion.output_size == 10
    default = FCConcatFusion({"rgb": 1024, "audio": 128})
    assert sum(p.numel() for p in default.parameters()) == 5_770_000  # same budget as MFB k=5, o=1000


def _mfb_reference(pooled, fusion: MFBFusion):
    """f_j = Σ_{i<k} Π_m (x_m U_m + b_m)_{jk+i}; ReLU or signed sqrt; then L2 over j (float64 loops)."""
    k, o = fusion.factor, fusion.output_size
    batch = next(iter(pooled.values())).shape[0]
    out = torch.zeros(batch, o, dtype=torch.float64)
    for b in range(batch):
        fused = []
        for j in range(o):
            total = 0.0
            for i in range(k):
                column = j * k + i
                product = 1.0
                for name, linear in fusion.projections.items():
                    x = pooled[name][b]
                    projected = sum(x[d].item() * linear.weight[column, d].item() for d in range(x.shape[0]))
                    product *= projected + linear.bias[column].item()
                total += product
            if fusion.normalization == "relu":
                fused.append(max(total, 0.0))
            else:
                fused.append(math.copysign(math.sqrt(abs(total)), total))
        norm = math.sqrt(max(sum(v * v for v in fused), 1e-12))
        out[b] = torch.tensor([v / norm for v in fused], dtype=torch.float64)
    return out


@pytest.mark.parametrize("normalization", ["relu", "signed_sqrt"])
@pytest.mark.parametrize("sizes", [{"rgb": 5, "audio": 3}, {"rgb": 4, "audio": 3, "text": 2}])
def test_mfb_matches_loop_reference(normalization, sizes):
    torch.manual_seed(0)
    fusion = MFBFusion(sizes, factor=3, output_size=4, dropout=0.1, normalization=normalization).double().eval()
    pooled = _pooled(sizes)
    result = fusion(pooled)
    torch.testing.assert_close(result, _mfb_reference(pooled, fusion), rtol=1e-10, atol=1e-12)
    assert result.shape == (3, 4) and fusion.output_size == 4
    norms = result.norm(dim=1)
    assert torch.all(((norms - 1).abs() < 1e-12) | (norms == 0))  # ReLU may zero a whole row


def test_mfb_parameter_count_matches_spec():
    fusion = MFBFusion({"rgb": 1024, "audio": 128})
    assert sum(p.numel() for p in fusion.parameters()) == 5_770_000
    assert fusion.output_size == 1000 and fusion.factor == 5


def test_mfb_sum_pools_consecutive_factors():
    fusion = MFBFusion({"rgb": 1, "audio": 1}, factor=2, output_size=2, dropout=0.0, normalization="signed_sqrt")
    with torch.no_grad():
        for linear in fusion.projections.values():
            linear.weight.fill_(1.0)
            linear.bias.zero_()
        fusion.projections["audio"].weight.copy_(torch.tensor([[1.0], [3.0], [0.0], [0.0]]))
    # z = [1, 3, 0, 0] -> unit 0 sums entries 0,1 (=4), unit 1 sums entries 2,3 (=0)
    out = fusion({"rgb": torch.ones(1, 1), "audio": torch.ones(1, 1)})
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0]]))


def test_mfb_dropout_acts_only_in_training():
    torch.manual_seed(0)
    fusion = MFBFusion({"rgb": 8, "audio": 4}, factor=2, output_size=16, dropout=0.5)
    pooled = {name: value.float() for name, value in _pooled({"rgb": 8, "audio": 4}).items()}
    fusion.eval()
    torch.testing.assert_close(fusion(pooled), fusion(pooled))
    fusion.train()
    assert not torch.allclose(fusion(pooled), fusion(pooled))


def test_mfb_rejects_a_single_modality_and_bad_normalization():
    with pytest.raises(ValueError, match="two or more"):
        MFBFusion({"rgb": 4})
    with pytest.raises(ValueError, match="signed_sqrt"):
        MFBFusion({"rgb": 4, "audio": 2}, normalization="power")


@pytest.mark.parametrize("normalization", ["relu", "signed_sqrt"])
def test_mfb_gradients_reach_every_parameter_and_are_finite(normalization):
    fusion = MFBFusion({"rgb": 6, "audio": 3}, factor=2, output_size=5, normalization=normalization)
    pooled = {"rgb": torch.randn(4, 6), "audio": torch.randn(4, 3)}
    pooled["rgb"].requires_grad_(True)
    fusion(pooled).sum().backward()
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert torch.isfinite(pooled["rgb"].grad).all()
