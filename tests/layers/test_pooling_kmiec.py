"""The poolings of Kmiec, Bae & An 2018 (seed 001; spec §4.11-§4.14) against slow float64 loop references written
from the formulas, in eval and in training (batch statistics over real rows only), plus their options, the
encoder's mask and order properties, the bug fixes, memory and parameter counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import (
    AttentionClusters, AttentionNetVLAD, SecondOrderNetVLAD, TransformerEncoder, TransformerNetVLAD, create_pooling,
)
from videopool.models import count_parameters

DIMS, LENGTHS = 4, [3, 1, 4]


def relu(row):
    return np.array([max(value, 0.0) for value in row])


def linear(rows, params, name, bias=True):
    """``row Wᵀ + b`` of an ``nn.Linear`` (``weight [out, in]``) by loops."""
    weight = params[f"{name}.weight"]
    outs, ins = weight.shape
    return [np.array([sum(row[i] * weight[o, i] for i in range(ins)) + (params[f"{name}.bias"][o] if bias else 0.0)
                      for o in range(outs)]) for row in rows]


def layer_norm(rows, params, name, eps=1e-6):
    out = []
    for row in rows:
        mean = sum(row) / len(row)
        var = sum((value - mean) ** 2 for value in row) / len(row)
        out.append(np.array([(value - mean) / math.sqrt(var + eps) * params[f"{name}.weight"][i]
                             + params[f"{name}.bias"][i] for i, value in enumerate(row)]))
    return out


def attention_ref(tokens, params, name, heads, batch_norm, training):
    """Multi-head self-attention over each video's real tokens (a list of rows per video)."""
    q = [linear(t, params, f"{name}.query", False) for t in tokens]
    k = [linear(t, params, f"{name}.key", False) for t in tokens]
    v = [linear(t, params, f"{name}.value", False) for t in tokens]
    depth = len(tokens[0][0]) // heads
    logits = [[np.array([sum(q[b][i][h * depth + e] * k[b][j][h * depth + e] for e in range(depth))
                         for h in range(heads)])
               for i in range(len(t)) for j in range(len(t))] for b, t in enumerate(tokens)]
    if batch_norm:  # one channel per head, rows = the real (query, key) pairs of every video
        logits = ref.batch_norm(logits, params, f"{name}.logits_bn", training)
    else:
        logits = [[row / math.sqrt(depth) for row in rows] for rows in logits]
    attended = []
    for b, t in enumerate(tokens):
        length, rows = len(t), []
        for i in range(length):
            row = np.zeros(len(t[0]))
            for h in range(heads):
                weights = ref.softmax([logits[b][i * length + j][h] for j in range(length)])
                for e in range(depth):
                    row[h * depth + e] = sum(weights[j] * v[b][j][h * depth + e] for j in range(length))
            rows.append(row)
        attended.append(rows)
    if batch_norm:
        attended = ref.batch_norm(attended, params, f"{name}.attention_bn", training)
    return [linear(rows, params, f"{name}.output") for rows in attended]


def encoder_ref(tokens, params, name, heads, layout="paper", similarity=False, batch_norm=True, training=False):
    attended = attention_ref(tokens, params, f"{name}.attention", heads, batch_norm, training)
    first = [layer_norm([x + a for x, a in zip(t, at)], params, f"{name}.attention_norm")
             for t, at in zip(tokens, attended)]
    inner = [[relu(row) for row in linear(rows, params, f"{name}.ffn_in")] for rows in first]
    if similarity:
        inner = ref.batch_norm(inner, params, f"{name}.ffn_in_bn", training)
        out = [[relu(row) for row in linear(rows, params, f"{name}.ffn_out")] for rows in inner]
        return ref.batch_norm(out, params, f"{name}.ffn_out_bn", training)
    out = [linear(rows, params, f"{name}.ffn_out") for rows in inner]
    if layout == "paper":
        return [layer_norm([f + o for f, o in zip(fs, os)], params, f"{name}.ffn_norm") for fs, os in zip(first, out)]
    second = [layer_norm([f + relu(o) for f, o in zip(fs, os)], params, f"{name}.ffn_norm")
              for fs, os in zip(first, out)]
    return [layer_norm([s + f for s, f in zip(ss, fs)], params, f"{name}.output_norm") for ss, fs in zip(second, first)]


def attention_clusters_ref(videos, params, clusters, hidden=False):
    out = []
    for video in videos:
        dims = video.shape[1]
        rows = video
        if hidden:
            rows = [relu(ref.project(x, params["hidden_weights"]) + params["hidden_biases"]) for x in video]
        logits = [ref.project(row, params["attention_weights"]) / math.sqrt(dims) for row in rows]
        pieces = []
        for k in range(clusters):
            weights = ref.softmax([logits[n][k] for n in range(len(video))])
            pooled = [sum(weights[n] * video[n][f] for n in range(len(video))) for f in range(dims)]
            alpha, beta = (params["alpha"][k], params["beta"][k]) if len(params["alpha"]) > 1 else (
                params["alpha"][0], params["beta"][0])
            pieces.extend(ref.l2([alpha * value + beta for value in pooled]) / math.sqrt(clusters))
        out.append(np.array(pieces))
    return out


def transformer_netvlad_ref(videos, params, heads, frame_encoder, cluster_encoder, training, **encoder):
    if frame_encoder:
        videos = [np.array(rows) for rows in encoder_ref([list(v) for v in videos], params, "frame_encoder", heads,
                                                         training=training, **encoder)]
    vlads = ref.netvlad(videos, params, training)
    if not cluster_encoder:
        return vlads
    dims = videos[0].shape[1]
    clusters = len(vlads[0]) // dims
    tokens = [[np.array([v[d * clusters + k] for d in range(dims)]) for k in range(clusters)] for v in vlads]
    return [np.concatenate(rows) for rows in encoder_ref(tokens, params, "cluster_encoder", heads, training=training,
                                                         **encoder)]


def attention_netvlad_ref(videos, params, heads, frame_encoder, training):
    hidden = [list(v) for v in videos]
    if frame_encoder:
        hidden = encoder_ref(hidden, params, "frame_encoder", heads, training=training)
    similarity = encoder_ref(hidden, params, "similarity_encoder", heads, similarity=True, training=training)
    return [ref.intra_then_global(ref.vlad_matrix(video, a, params["cluster_weights2"][0]))
            for video, a in zip(videos, similarity)]


def _finish_ref(matrix, params, prefix, kind):
    size, clusters = matrix.shape
    columns = [ref.l2([matrix[e, k] for e in range(size)]) for k in range(clusters)]
    if kind != "none":
        mean, weights = params[f"{prefix}.whitening_mean"][0], params[f"{prefix}.whitening_weights"]
        for k in range(clusters):
            matrix_k = weights if kind == "shared" else weights[k]
            centred = [columns[k][f] - mean[f, k] for f in range(size)]
            columns[k] = np.array([sum(matrix_k[e, f] * centred[f] for f in range(size)) for e in range(size)])
    return ref.l2([columns[k][e] for e in range(size) for k in range(clusters)])


def second_order_ref(videos, params, residual_norm=True, whitening="shared", training=False):
    assignments = ref.soft_assign(videos, params, training)
    projected = [np.array([ref.project(x, params["projection_weights"]) for x in video]) for video in videos]
    logits = ref.cluster_logits(projected, params, training, weights="second_order.cluster_weights",
                                bn="second_order.cluster_bn", bias="second_order.cluster_biases")
    second_assignments = [[ref.softmax(row) for row in rows] for rows in logits]
    centres, centres2 = params["cluster_weights2"][0], params["second_order_centroids"][0]
    (dims, clusters), (width, clusters2) = centres.shape, centres2.shape
    out = []
    for video, z, a, b in zip(videos, projected, assignments, second_assignments):
        first = np.zeros((dims, clusters))
        for n in range(len(video)):
            for k in range(clusters):
                residual = [video[n][d] - centres[d, k] for d in range(dims)]
                residual = ref.l2(residual) if residual_norm else residual
                for d in range(dims):
                    first[d, k] += a[n][k] * residual[d]
        second = np.zeros((width * width, clusters2))
        for n in range(len(video)):
            for j in range(clusters2):
                u = [z[n][i] - centres2[i, j] for i in range(width)]
                u = ref.l2(u) if residual_norm else u
                for i in range(width):
                    for i2 in range(width):
                        second[i * width + i2, j] += b[n][j] * u[i] * u[i2]
        out.append(np.concatenate([_finish_ref(first, params, "first_whitening", whitening),
                                   _finish_ref(second, params, "second_whitening", whitening)]))
    return out


def _build(cls, clusters, seed=0, **kwargs):
    layer, videos, frames, mask = ref.build_layer(cls, DIMS, clusters, LENGTHS, seed=seed, **kwargs)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # move the LayerNorms and whitenings off their identity start
        for name, parameter in layer.named_parameters():
            if "norm" in name or "whitening" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.2)
    return layer, videos, frames, mask


def _check(layer, frames, mask, expected, training):
    out = layer.train(training)(frames, mask)
    torch.testing.assert_close(out, torch.from_numpy(np.stack(expected)), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"hidden_size": 3}, {"shared_shift": True}])
def test_attention_clusters_match_the_formula(kwargs, training):
    layer, videos, frames, mask = _build(AttentionClusters, 3, **kwargs)
    expected = attention_clusters_ref(videos, ref.params_of(layer), 3, hidden="hidden_size" in kwargs)
    _check(layer, frames, mask, expected, training)
    norms = layer(frames, mask).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("options", [
    {"frame_encoder": True, "cluster_encoder": True},
    {"frame_encoder": False, "cluster_encoder": True, "encoder": "released", "attention_batch_norm": False},
    {"frame_encoder": True, "cluster_encoder": False, "encoder": "released"},
])
def test_transformer_netvlad_matches_the_formula(options, training):
    layer, videos, frames, mask = _build(TransformerNetVLAD, 3, num_heads=2, **options)
    encoder = {"layout": options.get("encoder", "paper"), "batch_norm": options.get("attention_batch_norm", True)}
    expected = transformer_netvlad_ref(videos, ref.params_of(layer), 2, options["frame_encoder"],
                                       options["cluster_encoder"], training, **encoder)
    _check(layer, frames, mask, expected, training)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("frame_encoder", [True, False])
def test_attention_netvlad_matches_the_formula_with_features_unlike_clusters(frame_encoder, training):
    """D = 4, K = 3: the released code's ``a [B, N, K, 1] · residuals [B, N, D, K]`` would not even broadcast."""
    layer, videos, frames, mask = _build(AttentionNetVLAD, 3, num_heads=2, dropout=0.0, frame_encoder=frame_encoder)
    expected = attention_netvlad_ref(videos, ref.params_of(layer), 2, frame_encoder, training)
    _check(layer, frames, mask, expected, training)


def test_attention_netvlad_dropout_is_a_drop_rate():
    layer = AttentionNetVLAD(8, 3, num_heads=2)
    assert layer.similarity_encoder.dropout.p == 0.1 and layer.frame_encoder.dropout.p == 0.1
    with pytest.raises(ValueError, match="drop rate"):
        AttentionNetVLAD(8, 3, num_heads=2, dropout=1.0)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kwargs", [
    {}, {"residual_norm": False, "whitening": "none"}, {"whitening": "cluster", "add_batch_norm": False},
])
def test_second_order_netvlad_matches_the_formula(kwargs, training):
    layer, videos, frames, mask = _build(SecondOrderNetVLAD, 3, projection_size=2, second_order_clusters=2, **kwargs)
    expected = second_order_ref(videos, ref.params_of(layer), kwargs.get("residual_norm", True),
                                kwargs.get("whitening", "shared"), training)
    _check(layer, frames, mask, expected, training)


@pytest.mark.parametrize("layout", ["paper", "released"])
def test_encoder_is_order_equivariant_and_padding_neither_attends_nor_is_attended(layout):
    torch.manual_seed(0)
    encoder = TransformerEncoder(6, 2, layout=layout).double().train()
    frames, mask = ref.pad_videos(ref.random_videos(LENGTHS, 6, torch.Generator().manual_seed(1)), 6,
                                  torch.Generator().manual_seed(2), garbage=40.0)
    out = encoder(frames, mask)
    order = torch.stack([torch.randperm(6, generator=torch.Generator().manual_seed(b)) for b in range(3)])
    permuted = encoder(torch.gather(frames, 1, order[..., None].expand_as(frames)), torch.gather(mask, 1, order))
    torch.testing.assert_close(permuted, torch.gather(out, 1, order[..., None].expand_as(out)), rtol=1e-10, atol=1e-12)
    other = frames.clone()
    other[~mask] = -7.0  # different padding: the real rows' outputs do not move
    torch.testing.assert_close(encoder(other, mask)[mask], out[mask], rtol=1e-10, atol=1e-12)
    for b, length in enumerate(LENGTHS):  # a video alone gives the same rows (eval: running statistics)
        alone = encoder.eval()(frames[b : b + 1, :length])[0]
        torch.testing.assert_close(alone, encoder(frames, mask)[b, :length], rtol=1e-10, atol=1e-12)
        encoder.train()


def test_second_order_never_builds_the_frames_by_clusters_by_outer_products_tensor():
    """B=4, N=300, D=1024, K=K'=64, p=32. The formula's B·N·K·D·D tensor would be 322 GB and even its low-rank
    B·N·K'·p·p form 315 MB; the largest allocation is the frames' outer products [B, N, p²] (4.9 MB)."""
    torch.manual_seed(0)
    layer = SecondOrderNetVLAD(1024, 64, projection_size=32, second_order_clusters=64)
    frames = torch.randn(4, 300, 1024)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        layer(frames)
    largest = max(event.cpu_memory_usage for event in prof.events())
    low_rank_full = 4 * 300 * 64 * 32 * 32 * 4
    assert 0 < largest <= 4 * 300 * 32 * 32 * 4 < low_rank_full / 50, f"largest single allocation {largest} bytes"


def test_parameter_counts():
    d, k, h = 1024, 256, 64
    encoder = 12 * d * d + 6 * d + 2 * 2 * d  # q, k, v, out (+bias), FFN 4d (+biases), two LayerNorms
    plain = TransformerNetVLAD(d, k, num_heads=h, encoder="released", attention_batch_norm=False)
    assert count_parameters(plain) == 2 * d * k + 2 * k + 12_595_200 == 2 * d * k + 2 * k + encoder + 2 * d
    assert count_parameters(TransformerNetVLAD(d, k, num_heads=h)) == 2 * d * k + 2 * k + encoder + 2 * h + 2 * d
    assert count_parameters(TransformerNetVLAD(128, 64, num_heads=16, encoder="released",
                                               attention_batch_norm=False)) == 2 * 128 * 64 + 128 + 198_144
    assert count_parameters(AttentionClusters(d, 128)) == d * 128 + 2 * 128
    assert count_parameters(AttentionClusters(d, 128, shared_shift=True)) == d * 128 + 2
    p, k2 = 16, 32
    second = SecondOrderNetVLAD(d, k, projection_size=p, second_order_clusters=k2)
    assert count_parameters(second) == (2 * d * k + 2 * k + d * d + d * k + d * p
                                        + 2 * p * k2 + 2 * k2 + p**4 + p * p * k2)
    assert second.output_size == d * k + p * p * k2
    assert count_parameters(AttentionNetVLAD(d, k, num_heads=h, frame_encoder=False)) == (
        d * k  # centroids
        + 4 * d * d + d + 2 * h + 2 * d + 2 * d  # attention (+ BNs), LayerNorm
        + d * 4 * d + 4 * d + 2 * 4 * d + 4 * d * k + k + 2 * k)  # FFN to K with its BNs


def test_options_are_checked():
    with pytest.raises(ValueError, match="divide"):
        create_pooling("transformer_netvlad", feature_size=6, cluster_size=2, num_heads=4)
    with pytest.raises(ValueError, match="layout"):
        create_pooling("attention_netvlad", feature_size=6, cluster_size=2, num_heads=2, encoder="tf")
    with pytest.raises(ValueError, match="whitening"):
        create_pooling("second_order_netvlad", feature_size=6, cluster_size=2, whitening="pca")
    assert create_pooling("transformer_netvlad", feature_size=6, cluster_size=2, num_heads=2,
                          frame_encoder=False).accepts_frame_affine


def test_transformer_netvlad_without_frame_encoder_takes_the_lazy_frame_affine():
    from videopool.layers import FrameAffine

    layer, _, frames, mask = _build(TransformerNetVLAD, 3, num_heads=2)
    generator = torch.Generator().manual_seed(3)
    affine = FrameAffine(frame_scale=torch.rand(*frames.shape[:2], 1, generator=generator, dtype=torch.float64) + 0.5,
                         feature_scale=torch.rand(DIMS, generator=generator, dtype=torch.float64) + 0.5,
                         feature_shift=torch.randn(DIMS, generator=generator, dtype=torch.float64))
    for training in (False, True):
        layer.train(training)
        torch.testing.assert_close(layer(frames, mask, affine=affine), layer(affine.apply(frames), mask),
                                   rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name, kwargs", [
    ("attention_clusters", {}), ("second_order_netvlad", {"projection_size": 2}),
    ("transformer_netvlad", {"num_heads": 2, "frame_encoder": True}),
    ("attention_netvlad", {"num_heads": 2, "dropout": 0.0}),
])
@pytest.mark.parametrize("training", [False, True])
def test_a_video_without_real_frames_gives_zeros_and_leaves_the_others_alone(name, kwargs, training):
    """Also in training: the empty video's rows (and tokens) are in no batch-norm statistic."""
    torch.manual_seed(0)
    layer = create_pooling(name, feature_size=6, cluster_size=3, **kwargs).double().train(training)
    frames = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(5)[None] < torch.tensor([5, 0, 3])[:, None]
    out = layer(frames, mask)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    out.sum().backward()
    assert torch.isfinite(frames.grad).all() and torch.equal(frames.grad[1], torch.zeros_like(frames.grad[1]))
    kept = torch.tensor([0, 2])
    torch.testing.assert_close(layer(frames[kept], mask[kept]), out[kept], rtol=1e-10, atol=1e-12)
