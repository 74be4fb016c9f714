"""Properties every pooling layer must have: registry, masks, permutation invariance, gradients, bf16."""

import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import create_pooling, get_pooling_class, list_poolings

DIMS = 6
SMALL = {
    "average": {},
    "max": {},
    "netvlad": {"cluster_size": 4},
    "netrvlad": {"cluster_size": 4},
    "netfv": {"cluster_size": 4},
    "soft_dbow": {"cluster_size": 4, "max_pool": True},
    "gated_soft_dbow": {"cluster_size": 4},
    "dbof": {"cluster_size": 5, "activation": "relu", "pooling": "max_average"},
    "lstm": {"hidden_size": 3},
    "gru": {"hidden_size": 3},
}
ORDERLESS = [name for name in SMALL if name not in ("lstm", "gru")]
LENGTHS = [5, 2, 7]


def _layer(name, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    layer = create_pooling(name, feature_size=DIMS, **SMALL[name]).to(dtype)
    ref.randomize_batch_norms(layer, torch.Generator().manual_seed(seed))
    return layer


def _videos(seed=0):
    return ref.random_videos(LENGTHS, DIMS, torch.Generator().manual_seed(seed))


def test_registry_knows_all_ten_layers():
    assert set(SMALL) <= set(list_poolings())
    with pytest.raises(KeyError, match="netvlad"):
        get_pooling_class("netvald")


@pytest.mark.parametrize("name", SMALL)
def test_output_size_and_unmasked_equals_all_true_mask(name):
    layer = _layer(name).eval()
    frames = torch.randn(3, 4, DIMS, dtype=torch.float64)
    out = layer(frames)
    assert out.shape == (3, layer.output_size)
    torch.testing.assert_close(layer(frames, torch.ones(3, 4, dtype=torch.bool)), out)


@pytest.mark.parametrize("name", SMALL)
def test_padded_batch_equals_videos_one_by_one_in_eval(name):
    layer = _layer(name).eval()
    videos = _videos()
    frames, mask = ref.pad_videos(videos, 9, torch.Generator().manual_seed(5))
    batched = layer(frames, mask)
    for b, video in enumerate(videos):
        torch.testing.assert_close(batched[b], layer(torch.from_numpy(video)[None])[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SMALL)
def test_padding_has_no_effect_in_training(name):
    """Two paddings (different lengths, different garbage) give the same outputs and the same BN statistics."""
    videos = _videos(1)
    short = ref.pad_videos(videos, max(LENGTHS), torch.Generator().manual_seed(1), garbage=3.0)
    long = ref.pad_videos(videos, max(LENGTHS) + 6, torch.Generator().manual_seed(2), garbage=50.0)
    first, second = _layer(name).train(), _layer(name).train()
    torch.testing.assert_close(first(*short), second(*long), rtol=1e-10, atol=1e-12)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"buffer {key} differs")


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ORDERLESS)
def test_permutation_invariance(name, training):
    frames, mask = ref.pad_videos(_videos(2), 9, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(4)
    # Shuffle real and padded positions together: orderless layers may see padding anywhere.
    order = torch.stack([torch.randperm(9, generator=generator) for _ in LENGTHS])
    shuffled = torch.gather(frames, 1, order[..., None].expand_as(frames))
    shuffled_mask = torch.gather(mask, 1, order)
    first, second = _layer(name).train(training), _layer(name).train(training)
    torch.testing.assert_close(first(frames, mask), second(shuffled, shuffled_mask), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in SMALL if n not in ("average", "max")])
def test_gradients_reach_every_parameter(name):
    layer = _layer(name).train()
    frames, mask = ref.pad_videos(_videos(3), 8, torch.Generator().manual_seed(6))
    out = layer(frames, mask)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)).sum().backward()
    for param_name, parameter in layer.named_parameters():
        assert parameter.grad is not None, f"{name}.{param_name} got no gradient"
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, f"{name}.{param_name}"


@pytest.mark.parametrize("name", SMALL)
def test_bf16_autocast_runs_and_stays_close(name):
    layer = _layer(name, dtype=torch.float32).eval()
    frames, mask = ref.pad_videos(_videos(4), 8, torch.Generator().manual_seed(8))
    frames = frames.float()
    expected = layer(frames, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(frames, mask)
    assert out.shape == expected.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("name", SMALL)
def test_bf16_weights_inference_stays_close(name):
    """Inference with a pure-bf16 copy of the layer (the fast inference path of perf.md)."""
    layer = _layer(name, dtype=torch.float32).eval()
    frames, mask = ref.pad_videos(_videos(5), 8, torch.Generator().manual_seed(9))
    expected = layer(frames.float(), mask)
    out = layer.to(torch.bfloat16)(frames.to(torch.bfloat16), mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
