"""Properties every registered pooling layer must have: masks, permutation invariance, gradients, bf16.

The tests run over ``list_poolings()``, the registry itself, with the small constructor arguments of
:data:`POOLINGS` below. A pooling that is registered but missing from that table fails
``test_every_registered_pooling_is_in_the_table`` and every property test of its name: add it to the table
(and say whether it is orderless) instead of letting it go untested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import create_pooling, get_pooling_class, list_poolings

DIMS = 6
LENGTHS = [5, 2, 7]


@dataclass(frozen=True)
class Case:
    """How the common tests build a pooling: small constructor arguments (beside ``feature_size``), whether its
    output ignores the order of the frames (False for recurrent layers, which read frames in order) and whether
    it has learnable parameters (False for average and max pooling)."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    orderless: bool = True
    learnable: bool = True


POOLINGS: dict[str, Case] = {
    "average": Case(learnable=False),
    "max": Case(learnable=False),
    "netvlad": Case({"cluster_size": 4}),
    "netrvlad": Case({"cluster_size": 4}),
    "netfv": Case({"cluster_size": 4}),
    "nonlocal_netvlad": Case({"cluster_size": 4}),
    "nonlocal_netrvlad": Case({"cluster_size": 3, "num_blocks": 2, "intra_norm": "before_block", "reduction": "max"}),
    "soft_dbow": Case({"cluster_size": 4, "max_pool": True}),
    "gated_soft_dbow": Case({"cluster_size": 4}),
    "dbof": Case({"cluster_size": 5, "activation": "relu", "pooling": "max_average"}),
    "lstm": Case({"hidden_size": 3}, orderless=False),
    "gru": Case({"hidden_size": 3}, orderless=False),
    "nextvlad": Case({"cluster_size": 4, "groups": 2, "expansion": 2}),
    "attention_clusters": Case({"cluster_size": 3}),
    "transformer_netvlad": Case({"cluster_size": 3, "num_heads": 2, "frame_encoder": True}),
    "attention_netvlad": Case({"cluster_size": 3, "num_heads": 2, "dropout": 0.0}),
    "second_order_netvlad": Case({"cluster_size": 3, "projection_size": 2, "second_order_clusters": 2}),
}

REGISTERED = list_poolings()
# A registered name missing from the table stays in every list, so that its tests fail (see _case).
ORDERLESS = [name for name in REGISTERED if name not in POOLINGS or POOLINGS[name].orderless]
ORDERED = [name for name in REGISTERED if name not in POOLINGS or not POOLINGS[name].orderless]


def _missing_message(names) -> str:
    return (f"pooling(s) {sorted(names)} are registered (videopool.layers.list_poolings()) but have no entry in "
            f"POOLINGS of {__name__}: add Case(<small constructor kwargs>, orderless=..., learnable=...) for each, so that the "
            "common property tests cover it")


def _case(name: str) -> Case:
    if name not in POOLINGS:
        pytest.fail(_missing_message([name]))
    return POOLINGS[name]


def _layer(name, seed=0, dtype=torch.float64):
    case = _case(name)
    torch.manual_seed(seed)
    layer = create_pooling(name, feature_size=DIMS, **case.kwargs).to(dtype)
    ref.randomize_batch_norms(layer, torch.Generator().manual_seed(seed))
    return layer


def _videos(seed=0):
    return ref.random_videos(LENGTHS, DIMS, torch.Generator().manual_seed(seed))


def test_every_registered_pooling_is_in_the_table():
    registered, table = set(list_poolings()), set(POOLINGS)
    assert registered - table == set(), _missing_message(registered - table)
    assert table - registered == set(), f"POOLINGS names {sorted(table - registered)}, which are not registered"
    assert set(list_poolings()) == set(POOLINGS)


def test_the_registry_knows_the_ten_built_in_layers_and_suggests_close_names():
    assert {"average", "max", "netvlad", "netrvlad", "netfv", "soft_dbow", "gated_soft_dbow", "dbof", "lstm",
            "gru"} <= set(list_poolings())
    with pytest.raises(KeyError, match="netvlad"):
        get_pooling_class("netvald")


def test_recurrent_poolings_are_the_ordered_ones():
    assert {name for name, case in POOLINGS.items() if not case.orderless} == {"lstm", "gru"}


@pytest.mark.parametrize("name", REGISTERED)
def test_output_size_and_unmasked_equals_all_true_mask(name):
    layer = _layer(name).eval()
    frames = torch.randn(3, 4, DIMS, dtype=torch.float64)
    out = layer(frames)
    assert out.shape == (3, layer.output_size)
    torch.testing.assert_close(layer(frames, torch.ones(3, 4, dtype=torch.bool)), out)


@pytest.mark.parametrize("name", REGISTERED)
def test_padded_batch_equals_videos_one_by_one_in_eval(name):
    layer = _layer(name).eval()
    videos = _videos()
    frames, mask = ref.pad_videos(videos, 9, torch.Generator().manual_seed(5))
    batched = layer(frames, mask)
    for b, video in enumerate(videos):
        torch.testing.assert_close(batched[b], layer(torch.from_numpy(video)[None])[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", REGISTERED)
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
    _case(name)
    frames, mask = ref.pad_videos(_videos(2), 9, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(4)
    # Shuffle real and padded positions together: orderless layers may see padding anywhere.
    order = torch.stack([torch.randperm(9, generator=generator) for _ in LENGTHS])
    shuffled = torch.gather(frames, 1, order[..., None].expand_as(frames))
    shuffled_mask = torch.gather(mask, 1, order)
    first, second = _layer(name).train(training), _layer(name).train(training)
    torch.testing.assert_close(first(frames, mask), second(shuffled, shuffled_mask), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ORDERED)
def test_ordered_poolings_depend_on_the_frame_order(name):
    """The table's ``orderless=False`` is true: reversing the real frames of a video changes its output."""
    _case(name)
    videos = _videos(2)
    frames, mask = ref.pad_videos(videos, 9, torch.Generator().manual_seed(3))
    reversed_frames, _ = ref.pad_videos([video[::-1].copy() for video in videos], 9,
                                        torch.Generator().manual_seed(3))
    layer = _layer(name).eval()
    out, out_reversed = layer(frames, mask), layer(reversed_frames, mask)
    for b, length in enumerate(LENGTHS):
        if length > 1:
            assert not torch.allclose(out[b], out_reversed[b]), f"{name}: video {b} ignores the frame order"


@pytest.mark.parametrize("name", REGISTERED)
def test_gradients_reach_every_parameter(name):
    layer = _layer(name).train()
    if not _case(name).learnable:
        assert list(layer.parameters()) == [], f"{name} has parameters: set learnable=True in POOLINGS"
        return
    assert list(layer.parameters()), f"{name} has no parameters: set learnable=False in POOLINGS"
    frames, mask = ref.pad_videos(_videos(3), 8, torch.Generator().manual_seed(6))
    out = layer(frames, mask)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)).sum().backward()
    for param_name, parameter in layer.named_parameters():
        assert parameter.grad is not None, f"{name}.{param_name} got no gradient"
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, f"{name}.{param_name}"


@pytest.mark.parametrize("name", REGISTERED)
def test_gradients_reach_the_real_frames_only(name):
    """Real frames get a finite, non-zero gradient; masked (padding) frames get exactly zero."""
    layer = _layer(name).train()
    frames, mask = ref.pad_videos(_videos(3), 8, torch.Generator().manual_seed(6))
    frames.requires_grad_(True)
    out = layer(frames, mask)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)).sum().backward()
    grad = frames.grad
    assert grad is not None and torch.isfinite(grad).all(), name
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask])), f"{name}: padding frames got a gradient"
    for b, length in enumerate(LENGTHS):
        assert grad[b, :length].abs().sum() > 0, f"{name}: the real frames of video {b} got no gradient"


@pytest.mark.parametrize("name", REGISTERED)
def test_bf16_autocast_runs_and_stays_close(name):
    layer = _layer(name, dtype=torch.float32).eval()
    frames, mask = ref.pad_videos(_videos(4), 8, torch.Generator().manual_seed(8))
    frames = frames.float()
    expected = layer(frames, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(frames, mask)
    assert out.shape == expected.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("name", REGISTERED)
def test_bf16_weights_inference_stays_close(name):
    """Inference with a pure-bf16 copy of the layer (the fast inference path of perf.md)."""
    layer = _layer(name, dtype=torch.float32).eval()
    frames, mask = ref.pad_videos(_videos(5), 8, torch.Generator().manual_seed(9))
    expected = layer(frames.float(), mask)
    out = layer.to(torch.bfloat16)(frames.to(torch.bfloat16), mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
