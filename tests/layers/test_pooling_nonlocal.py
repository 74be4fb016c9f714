"""Non-local NetVLAD / NetRVLAD against a float64 loop reference written from the formula (Tang et al. §2.1,
spec §4.10), its options, parameter counts, and export. TF1 parity: tests/models/test_tf1_parity.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import FrameAffine, NonLocalNetVLAD, create_pooling

DIMS, CLUSTERS = 5, 3


def _bn(value: float, params: dict, prefix: str, k: int) -> float:
    return ((value - params[f"{prefix}.running_mean"][k]) / math.sqrt(params[f"{prefix}.running_var"][k] + ref.BN_EPS)
            * params[f"{prefix}.weight"][k] + params[f"{prefix}.bias"][k])


def _matvec(vector, matrix) -> list[float]:
    """``vector [R] @ matrix [R, C]`` by loops."""
    return [sum(vector[r] * matrix[r][c] for r in range(len(vector))) for c in range(len(matrix[0]))]


def _block(tokens: list[list[float]], params: dict, prefix: str, value_weights: str) -> list[list[float]]:
    """One non-local block over K tokens of size D, by loops: y_i + Σ_j A_ij (v_j W_out)."""
    theta = [_matvec(y, params[f"{prefix}.nonlocal_theta"]) for y in tokens]
    phi = [_matvec(y, params[f"{prefix}.nonlocal_phi"]) for y in tokens]
    values = phi if value_weights == "phi" else [_matvec(y, params[f"{prefix}.nonlocal_g"]) for y in tokens]
    scale = 1.0 / math.sqrt(len(tokens[0]))
    out = []
    for i, y in enumerate(tokens):
        attention = ref.softmax([sum(a * b for a, b in zip(theta[i], phi[j])) * scale for j in range(len(tokens))])
        mixed = [sum(attention[j] * values[j][e] for j in range(len(tokens))) for e in range(len(values[0]))]
        update = _matvec(mixed, params[f"{prefix}.nonlocal_out"])
        out.append([y[d] + update[d] for d in range(len(y))])
    return out


def reference_nonlocal(video: np.ndarray, params: dict, *, centroids: bool, num_blocks: int, shared_weights: bool,
                       value_weights: str, intra_norm: str, reduction: str) -> np.ndarray:
    """The pooled vector of one video (its real frames only) in float64, from the formula."""
    weights = params["cluster_weights"]
    num_clusters = weights.shape[1]
    assignments = []
    for frame in video:
        logits = ref.project(frame, weights)
        assignments.append(ref.softmax([_bn(logits[k], params, "cluster_bn", k) for k in range(num_clusters)]))
    tokens = []  # token k = residual descriptor of cluster k, [D]
    for k in range(num_clusters):
        token = []
        for d in range(video.shape[1]):
            centre = params["cluster_weights2"][0, d, k] if centroids else 0.0
            token.append(sum(a[k] * (frame[d] - centre) for a, frame in zip(assignments, video)))
        tokens.append(token)
    if intra_norm == "before_block":
        tokens = [list(ref.l2(t)) for t in tokens]
    for i in range(num_blocks):
        tokens = _block(tokens, params, f"nonlocal_blocks.{0 if shared_weights else i}", value_weights)
    if intra_norm == "after_block":
        tokens = [list(ref.l2(t)) for t in tokens]
    if reduction == "flatten":
        pooled = [tokens[k][d] for d in range(len(tokens[0])) for k in range(num_clusters)]  # index d·K + k
    elif reduction == "avg":
        pooled = [sum(t[d] for t in tokens) / num_clusters for d in range(len(tokens[0]))]
    else:
        pooled = [max(t[d] for t in tokens) for d in range(len(tokens[0]))]
    return ref.l2(pooled)


BLOCKS = [(1, False), (2, True), (3, False)]
CASES = [
    dict(centroids=c, num_blocks=n, shared_weights=s, value_weights=v, intra_norm=norm, reduction=red)
    for (norm, red, (n, s)), (c, v) in zip(
        itertools.product(("after_block", "before_block", "none"), ("flatten", "avg", "max"), BLOCKS),
        itertools.cycle([(True, "g"), (False, "phi"), (True, "phi"), (False, "g")]),
    )
]


def _layer(seed=0, **options) -> NonLocalNetVLAD:
    torch.manual_seed(seed)
    layer = NonLocalNetVLAD(DIMS, CLUSTERS, **options).double()
    ref.randomize_batch_norms(layer, torch.Generator().manual_seed(seed))
    return layer.eval()


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_matches_the_float64_loop_reference(options):
    layer = _layer(**options)
    videos = ref.random_videos([4, 1, 6], DIMS, torch.Generator().manual_seed(1))
    frames, mask = ref.pad_videos(videos, 7, torch.Generator().manual_seed(2))
    out = layer(frames, mask)
    params = ref.params_of(layer)
    for b, video in enumerate(videos):
        expected = reference_nonlocal(video, params, **options)
        np.testing.assert_allclose(out[b].detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_registered_names_and_defaults():
    vlad = create_pooling("nonlocal_netvlad", feature_size=DIMS, cluster_size=CLUSTERS)
    rvlad = create_pooling("nonlocal_netrvlad", feature_size=DIMS, cluster_size=CLUSTERS)
    assert vlad.cluster_weights2 is not None and rvlad.cluster_weights2 is None
    for layer in (vlad, rvlad):  # the paper's block, intra-normalised after it, flattened, one block
        assert (layer.num_blocks, layer.intra_norm, layer.reduction) == (1, "after_block", "flatten")
        assert layer.nonlocal_blocks[0].value_weights == "g" and layer.output_size == DIMS * CLUSTERS
    assert create_pooling("nonlocal_netvlad", feature_size=DIMS, cluster_size=CLUSTERS, reduction="avg").output_size == DIMS


def test_parameter_names_shapes_and_counts_follow_the_reference():
    d, k = 1024, 128
    layer = NonLocalNetVLAD(d, k)
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    assert shapes == {
        "cluster_weights": (d, k), "cluster_bn.weight": (k,), "cluster_bn.bias": (k,), "cluster_weights2": (1, d, k),
        "nonlocal_blocks.0.nonlocal_theta": (d, k), "nonlocal_blocks.0.nonlocal_phi": (d, k),
        "nonlocal_blocks.0.nonlocal_g": (d, k), "nonlocal_blocks.0.nonlocal_out": (k, d),
    }
    count = sum(p.numel() for p in layer.parameters())
    assert count == 2 * d * k + 2 * k + 4 * d * k  # NetVLAD 262,400 + NL 524,288 (spec §6.2: 4·1024·128)
    assert sum(p.numel() for p in NonLocalNetVLAD(d, k, num_blocks=3, shared_weights=True).parameters()) == count
    assert sum(p.numel() for p in NonLocalNetVLAD(d, k, num_blocks=3).parameters()) == count + 2 * 4 * d * k
    # The released code's phi values: nonlocal_g is kept (TF checkpoints hold it) but is a buffer, not trained.
    phi = NonLocalNetVLAD(d, k, value_weights="phi")
    assert "nonlocal_blocks.0.nonlocal_g" in phi.state_dict()
    assert sum(p.numel() for p in phi.parameters()) == count - d * k


def test_phi_values_ignore_g_and_g_values_use_it():
    frames = torch.randn(2, 5, DIMS, dtype=torch.float64)
    for value_weights, changes in (("phi", False), ("g", True)):
        layer = _layer(value_weights=value_weights)
        before = layer(frames)
        with torch.no_grad():
            layer.nonlocal_blocks[0].nonlocal_g.normal_(0.0, 10.0)
        assert torch.equal(layer(frames), before) is not changes


def test_a_zero_output_block_reduces_to_netvlad():
    """With W_out = 0 the block is the identity, so the layer is NetVLAD (same weights, same frames)."""
    netvlad = create_pooling("netvlad", feature_size=DIMS, cluster_size=CLUSTERS).double().eval()
    layer = _layer()
    layer.load_state_dict({**netvlad.state_dict(), **{k: v for k, v in layer.state_dict().items() if "nonlocal" in k}})
    with torch.no_grad():
        layer.nonlocal_blocks[0].nonlocal_out.zero_()
    frames = torch.randn(3, 4, DIMS, dtype=torch.float64)
    torch.testing.assert_close(layer(frames), netvlad(frames), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("centroids", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_pooling_with_affine_equals_pooling_the_mapped_frames(centroids, training):
    """The lazy FrameAffine path (the folded input BN of ModalityPooling) is the eager one."""
    generator = torch.Generator().manual_seed(3)
    layer = _layer(centroids=centroids, num_blocks=2).train(training)
    frames = torch.randn(3, 6, DIMS, generator=generator, dtype=torch.float64)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 2:] = False
    affine = FrameAffine(torch.rand(3, 6, 1, generator=generator, dtype=torch.float64) + 0.5,
                         torch.rand(DIMS, generator=generator, dtype=torch.float64) + 0.5,
                         torch.randn(DIMS, generator=generator, dtype=torch.float64))
    torch.testing.assert_close(layer(frames, mask, affine=affine), layer(affine.apply(frames), mask),
                               rtol=1e-10, atol=1e-12)


def test_rejects_unknown_options():
    for bad in (dict(intra_norm="before"), dict(reduction="mean"), dict(value_weights="theta"), dict(num_blocks=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            NonLocalNetVLAD(DIMS, CLUSTERS, **bad)


def test_export_model_runs_the_nonlocal_model(tmp_path):
    from tests.export_check import assert_exports_like_the_model
    from videopool.models import create_model

    model = create_model("nl_netvlad_128_small", num_classes=7, cluster_size=4, **{"hidden.size": 8})
    assert_exports_like_the_model(model, tmp_path)
