"""NetFV against the per-element loop reference (spec §4.3), its variants, norms and parameter counts."""

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import NetFV

LENGTHS = [4, 6, 1]
DIMS, CLUSTERS = 5, 3


def _build(seed=0, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = NetFV(DIMS, CLUSTERS, **kwargs).double()
    ref.randomize_batch_norms(layer, generator)
    videos = ref.random_videos(LENGTHS, DIMS, generator)
    frames, mask = ref.pad_videos(videos, max(LENGTHS) + 1, generator)
    return layer, videos, frames, mask


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(
    "options",
    [{}, {"couple_weights": True}, {"second_order_intra_norm": True}, {"add_batch_norm": False}],
    ids=["default", "coupled", "intra_norm_f2", "no_bn"],
)
def test_matches_loop_reference(options, training):
    layer, videos, frames, mask = _build(**options)
    expected = ref.netfv(
        videos,
        ref.params_of(layer),
        training=training,
        coupling_factor=0.01 if options.get("couple_weights") else None,
        second_order_intra_norm=options.get("second_order_intra_norm", False),
    )
    layer.train(training)
    np.testing.assert_allclose(layer(frames, mask).detach().numpy(), np.stack(expected), rtol=1e-9, atol=1e-12)


def test_output_norms_and_layout():
    layer, _, frames, mask = _build(1)
    layer.eval()
    out = layer(frames, mask).detach()
    half = DIMS * CLUSTERS
    first, second = out[:, :half], out[:, half:]
    np.testing.assert_allclose(first.norm(dim=1).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(second.norm(dim=1).numpy(), 1.0, rtol=1e-12)
    columns = first.view(len(LENGTHS), DIMS, CLUSTERS).norm(dim=1)
    np.testing.assert_allclose(columns.numpy(), 1.0 / np.sqrt(CLUSTERS), rtol=1e-12)
    # Without intra-normalisation the second-order cluster columns are not all equal in norm.
    assert second.view(len(LENGTHS), DIMS, CLUSTERS).norm(dim=1).std() > 1e-3


def test_coupled_centroids_follow_assignment_weights():
    layer, _, frames, mask = _build(2, couple_weights=True)
    assert layer.cluster_weights2 is None
    torch.testing.assert_close(layer.centroids(), 0.01 * layer.cluster_weights.unsqueeze(0))


def test_parameter_counts_and_init():
    with torch.device("meta"):
        video, audio, coupled = NetFV(1024, 128), NetFV(128, 64), NetFV(1024, 128, couple_weights=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(video) == 393_472 and count(audio) == 24_704  # spec §6.2: 3·D·K + 2K
    assert count(coupled) == 393_472 - 1024 * 128
    assert video.output_size == 2 * 1024 * 128
    torch.manual_seed(0)
    layer = NetFV(256, 64)
    assert abs(layer.covar_weights.mean().item() - 1.0) < 0.005
    assert abs(layer.covar_weights.std().item() - 1 / 16) < 0.005
