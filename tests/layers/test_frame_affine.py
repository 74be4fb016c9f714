"""FrameAffine (the lazily applied input normalisation) against loops over frames, and through each pooling."""

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import (
    GatedSoftDBoW,
    MaskedBatchNorm1d,
    NetFV,
    NetRVLAD,
    NetVLAD,
    SoftDBoW,
)
from videopool.layers.affine import FrameAffine

B, N, D, K = 3, 7, 5, 4


def _affine(generator, parts=("frame", "scale", "shift")):
    def draw(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    return FrameAffine(
        draw(B, N, 1).abs() + 0.1 if "frame" in parts else None,
        draw(D) if "scale" in parts else None,
        draw(D) if "shift" in parts else None,
    )


def _mapped_by_loops(frames: torch.Tensor, affine: FrameAffine) -> np.ndarray:
    """z[b, n, d] = x[b, n, d] · r[b, n] · s[d] + t[d], element by element."""
    x = frames.numpy()
    z = np.empty_like(x)
    for b in range(B):
        for n in range(N):
            for d in range(D):
                value = x[b, n, d]
                if affine.frame_scale is not None:
                    value *= float(affine.frame_scale[b, n, 0])
                if affine.feature_scale is not None:
                    value *= float(affine.feature_scale[d])
                if affine.feature_shift is not None:
                    value += float(affine.feature_shift[d])
                z[b, n, d] = value
    return z


PARTS = [("frame", "scale", "shift"), ("frame",), ("scale", "shift"), ()]


@pytest.mark.parametrize("parts", PARTS)
def test_apply_project_and_weighted_sum_match_loops(parts):
    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(B, N, D, generator=generator, dtype=torch.float64)
    weight = torch.randn(D, K, generator=generator, dtype=torch.float64)
    weights = torch.rand(B, N, K, generator=generator, dtype=torch.float64)
    affine = _affine(generator, parts)
    z = _mapped_by_loops(frames, affine)

    np.testing.assert_allclose(affine.apply(frames).numpy(), z, rtol=1e-12)
    projected = affine.project(frames.reshape(B * N, D), weight).numpy()
    for row in range(B * N):
        np.testing.assert_allclose(projected[row], ref.project(z[row // N, row % N], weight.numpy()), rtol=1e-10)
    centroids = torch.randn(1, D, K, generator=generator, dtype=torch.float64)
    summed = affine.weighted_sum(frames, weights).numpy()
    residuals = affine.weighted_sum(frames, weights, centroids).numpy()
    for b in range(B):
        for d in range(D):
            for k in range(K):
                expected = sum(z[b, n, d] * float(weights[b, n, k]) for n in range(N))
                assert summed[b, d, k] == pytest.approx(expected, rel=1e-10, abs=1e-12)
                expected = sum((z[b, n, d] - float(centroids[0, d, k])) * float(weights[b, n, k]) for n in range(N))
                assert residuals[b, d, k] == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("cls", [NetVLAD, NetRVLAD, SoftDBoW, GatedSoftDBoW])
@pytest.mark.parametrize("training", [False, True])
def test_pooling_with_affine_equals_pooling_the_mapped_frames(cls, training):
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    layer = cls(D, K).double().train(training)
    ref.randomize_batch_norms(layer, generator)
    frames = torch.randn(B, N, D, generator=generator, dtype=torch.float64)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 4:] = False
    affine = _affine(generator)
    lazy = layer(frames, mask, affine=affine)
    eager = layer(affine.apply(frames), mask)
    torch.testing.assert_close(lazy, eager, rtol=1e-10, atol=1e-12)
    assert cls.accepts_frame_affine


def test_netfv_declines_the_affine():
    assert not NetFV.accepts_frame_affine


def test_masked_batch_norm_inference_affine_is_its_eval_forward():
    generator = torch.Generator().manual_seed(2)
    bn = MaskedBatchNorm1d(D).double()
    ref.randomize_batch_norms(bn, generator)
    bn.eval()
    x = torch.randn(B, N, D, generator=generator, dtype=torch.float64)
    scale, shift = bn.inference_affine()
    torch.testing.assert_close(x * scale + shift, bn(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="eval mode"):
        bn.train().inference_affine()
    with pytest.raises(RuntimeError, match="training mode"):
        bn.eval().batch_affine(x)


def test_masked_batch_norm_batch_affine_is_its_training_forward_on_real_rows():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(B, N, D, generator=generator, dtype=torch.float64) * 2 + 1
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, 5:] = False
    lazy, eager = MaskedBatchNorm1d(D).double().train(), MaskedBatchNorm1d(D).double().train()
    for bn in (lazy, eager):
        ref.randomize_batch_norms(bn, torch.Generator().manual_seed(4))
    scale, shift = lazy.batch_affine(x, mask)
    expected = eager(x, mask)
    torch.testing.assert_close((x * scale + shift)[mask], expected[mask], rtol=1e-10, atol=1e-12)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(lazy, name), getattr(eager, name), rtol=1e-12, atol=1e-15)
    (scale.sum() + shift.sum()).backward()
    assert lazy.weight.grad is not None and lazy.bias.grad is not None
    with pytest.raises(ValueError, match="without gradients"):
        lazy.batch_affine(x.clone().requires_grad_(True))
    one_real_row = torch.zeros(B, N, dtype=torch.bool)
    one_real_row[0, 0] = True
    with pytest.raises(ValueError, match="at least 2 real rows"):
        lazy.batch_affine(x, one_real_row)
