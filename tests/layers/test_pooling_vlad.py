"""NetVLAD and NetRVLAD against the loop references, plus their normalisation, size and memory properties."""

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import NetRVLAD, NetVLAD

LENGTHS = [5, 2, 7]
DIMS, CLUSTERS = 6, 4


def _build(cls, seed, **kwargs):
    return ref.build_layer(cls, DIMS, CLUSTERS, LENGTHS, seed, **kwargs)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("add_batch_norm", [True, False])
@pytest.mark.parametrize("cls, reference", [(NetVLAD, ref.netvlad), (NetRVLAD, ref.netrvlad)])
def test_matches_loop_reference(cls, reference, add_batch_norm, training):
    layer, videos, frames, mask = _build(cls, 0, add_batch_norm=add_batch_norm)
    expected = reference(videos, ref.params_of(layer), training=training)
    layer.train(training)
    out = layer(frames, mask)
    np.testing.assert_allclose(out.detach().numpy(), np.stack(expected), rtol=1e-10, atol=1e-12)


def test_training_updates_running_stats_from_real_frames_only():
    layer, videos, frames, mask = _build(NetVLAD, 1)
    before = ref.params_of(layer)
    layer.train()
    layer(frames, mask)
    logits = [ref.project(frame, before["cluster_weights"]) for video in videos for frame in video]
    mean, var = ref.batch_statistics(logits)
    momentum = layer.cluster_bn.momentum
    np.testing.assert_allclose(
        layer.cluster_bn.running_mean.numpy(), (1 - momentum) * before["cluster_bn.running_mean"] + momentum * mean
    )
    np.testing.assert_allclose(
        layer.cluster_bn.running_var.numpy(), (1 - momentum) * before["cluster_bn.running_var"] + momentum * var
    )


@pytest.mark.parametrize("cls", [NetVLAD, NetRVLAD])
def test_output_norms(cls):
    """Global L2 = 1 and, after the final L2, every non-zero cluster column has norm 1/sqrt(K_nz) (spec §14.3)."""
    layer, _, frames, mask = _build(cls, 2)
    layer.eval()
    out = layer(frames, mask)
    np.testing.assert_allclose(out.norm(dim=1).detach().numpy(), 1.0, rtol=1e-12)
    columns = out.view(len(LENGTHS), DIMS, CLUSTERS).norm(dim=1)
    np.testing.assert_allclose(columns.detach().numpy(), 1.0 / np.sqrt(CLUSTERS), rtol=1e-12)


def test_netvlad_output_is_feature_major():
    """Index d·K + k holds dimension d of cluster k: only cluster 0 gets mass when the assignment is one-hot."""
    layer = NetVLAD(3, 2, add_batch_norm=False).double()
    with torch.no_grad():
        layer.cluster_weights.zero_()
        layer.cluster_biases.copy_(torch.tensor([50.0, -50.0]))  # softmax puts all mass on cluster 0
        layer.cluster_weights2.zero_()
    frames = torch.tensor([[[1.0, 2.0, 2.0]]], dtype=torch.float64)
    out = layer(frames)
    # cluster 1 residual is ~0 (tiny mass); cluster 0 = x/|x|, so the normalised vector holds [1,2,2]/3 at d·2
    np.testing.assert_allclose(out[0, 0::2].detach().numpy(), [1 / 3, 2 / 3, 2 / 3], atol=1e-6)


def test_parameter_counts_match_spec():
    with torch.device("meta"):
        video = NetVLAD(1024, 256)
        audio = NetVLAD(128, 128)
        light = NetRVLAD(1024, 256)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(video) == 524_800  # spec §6.1: W_a 262,144 + BN 512 + C 262,144
    assert count(audio) == 33_024
    assert count(light) == 524_800 - 262_144
    assert video.output_size == 262_144 and audio.output_size == 16_384
    assert sorted(video.state_dict()) == [
        "cluster_bn.bias",
        "cluster_bn.num_batches_tracked",
        "cluster_bn.running_mean",
        "cluster_bn.running_var",
        "cluster_bn.weight",
        "cluster_weights",
        "cluster_weights2",
    ]
    assert video.cluster_weights.shape == (1024, 256) and video.cluster_weights2.shape == (1, 1024, 256)


def test_initialisation_scale():
    torch.manual_seed(0)
    layer = NetVLAD(256, 64)
    for tensor in (layer.cluster_weights, layer.cluster_weights2):
        assert abs(tensor.std().item() - 1 / 16) < 0.005
        assert abs(tensor.mean().item()) < 0.005
    assert layer.cluster_bn.eps == 1e-3 and layer.cluster_bn.momentum == 1e-3


def test_netvlad_never_materialises_frames_by_clusters_by_dims():
    """B=4, N=300, K=64, D=1024: a B·N·K·D float tensor would be 315 MB; no allocation may come close."""
    torch.manual_seed(0)
    layer = NetVLAD(1024, 64)
    frames = torch.randn(4, 300, 1024)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        layer(frames)
    largest = max(event.cpu_memory_usage for event in prof.events())
    full_bytes = 4 * 300 * 64 * 1024 * 4
    assert 0 < largest < full_bytes / 50, f"largest single allocation {largest} bytes"
