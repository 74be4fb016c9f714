"""Edge cases every registered pooling handles the same way: a batch without frames gives zeros."""

import pytest
import torch

from tests.layers.test_pooling_common import DIMS, REGISTERED, _layer


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("name", REGISTERED)
def test_a_batch_without_frames_gives_zeros(name, with_mask, training):
    layer = _layer(name).train(training)
    frames = torch.zeros(3, 0, DIMS, dtype=torch.float64)
    mask = torch.zeros(3, 0, dtype=torch.bool) if with_mask else None
    out = layer(frames, mask)
    assert out.shape == (3, layer.output_size) and out.dtype == torch.float64
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("name", REGISTERED)
def test_a_frame_affine_is_refused_by_layers_that_cannot_fold_it(name):
    from videopool.layers import FrameAffine

    layer = _layer(name).eval()
    frames = torch.randn(2, 3, DIMS, dtype=torch.float64)
    affine = FrameAffine(feature_scale=torch.full((DIMS,), 2.0, dtype=torch.float64))
    if getattr(layer, "accepts_frame_affine", False):
        torch.testing.assert_close(layer(frames, affine=affine), layer(affine.apply(frames)))
    else:
        with pytest.raises(TypeError, match="does not take a FrameAffine"):
            layer(frames, affine=affine)
