"""NeXtVLAD against a float64 loop reference written from the formulas (paper arXiv 1811.05014 §3.2, reference code
linrongc/youtube-8m), its padding options, sizes and TF names. The registry-driven properties (masks, permutation
invariance, gradients, bf16) are in test_pooling_common.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import NeXtVLAD, create_pooling

LENGTHS = [5, 2, 7]
DIMS, CLUSTERS, GROUPS, EXPANSION = 6, 3, 2, 2  # expanded frame 12 = 2 groups of 6 features


def nextvlad_reference(videos, params, groups, training=False, padding_rows=None):
    """Loops over videos, frames, groups, clusters and features.

    ``padding_rows``: per video, extra frames that enter ``cluster_bn``'s training statistics only (the
    reference's behaviour with ``padded_frames_in_batch_norm``); they never enter the aggregation.
    """
    w_e, b_e = params["expansion_weights"], params["expansion_biases"]
    w_g, b_g = params["attention_weights"], params["attention_biases"]
    centroids = params["cluster_weights2"][0]
    group_size, clusters = centroids.shape

    def expand(frame):
        return ref.project(frame, w_e) + b_e

    expanded = [[expand(frame) for frame in video] for video in videos]
    logits = [[ref.project(row, params["cluster_weights"]) for row in rows] for rows in expanded]
    statistics_rows = logits
    if padding_rows is not None:
        statistics_rows = [rows + [ref.project(expand(frame), params["cluster_weights"]) for frame in extra]
                           for rows, extra in zip(logits, padding_rows)]
    if training:  # biased batch statistics over the rows that enter them
        flat = [row for rows in statistics_rows for row in rows]
        mean = [sum(row[c] for row in flat) / len(flat) for c in range(len(flat[0]))]
        var = [sum((row[c] - mean[c]) ** 2 for row in flat) / len(flat) for c in range(len(flat[0]))]
    else:
        mean, var = params["cluster_bn.running_mean"], params["cluster_bn.running_var"]
    gamma, beta = params["cluster_bn.weight"], params["cluster_bn.bias"]
    descriptors = []
    for rows, video_logits in zip(expanded, logits):
        residual = np.zeros((group_size, clusters))
        for row, row_logits in zip(rows, video_logits):
            normed = [(row_logits[c] - mean[c]) / math.sqrt(var[c] + ref.BN_EPS) * gamma[c] + beta[c]
                      for c in range(len(row_logits))]
            attention = [ref.sigmoid(value) for value in ref.project(row, w_g) + b_g]
            for g in range(groups):
                assignment = ref.softmax(normed[g * clusters:(g + 1) * clusters])
                for k in range(clusters):
                    weight = attention[g] * assignment[k]
                    for f in range(group_size):
                        residual[f, k] += weight * (row[g * group_size + f] - centroids[f, k])
        for k in range(clusters):  # intra-normalisation over the features of each cluster
            column = ref.l2([residual[f, k] for f in range(group_size)])
            residual[:, k] = column
        descriptors.append([residual[f, k] for f in range(group_size) for k in range(clusters)])
    return ref.batch_norm([[np.array(d)] for d in descriptors], params, "vlad_bn", training)


def _build(seed=0, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = NeXtVLAD(DIMS, CLUSTERS, groups=GROUPS, expansion=EXPANSION, **kwargs).double()
    ref.randomize_batch_norms(layer, generator)
    with torch.no_grad():  # the biases start at zero; make them matter
        layer.expansion_biases.normal_(0.0, 0.3, generator=generator)
        layer.attention_biases.normal_(0.0, 0.3, generator=generator)
    videos = ref.random_videos(LENGTHS, DIMS, generator)
    frames, mask = ref.pad_videos(videos, max(LENGTHS) + 2, generator)
    return layer, videos, frames, mask


def _padding_of(frames, mask):
    return [frames[b][~mask[b]].numpy() for b in range(frames.shape[0])]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_matches_loop_reference(training):
    layer, videos, frames, mask = _build(0)
    expected = [rows[0] for rows in nextvlad_reference(videos, ref.params_of(layer), GROUPS, training)]
    out = layer.train(training)(frames, mask)
    np.testing.assert_allclose(out.detach().numpy(), np.stack(expected), rtol=1e-10, atol=1e-12)


def test_reference_padding_option_puts_padded_rows_into_the_cluster_bn_statistics_only():
    layer, videos, frames, mask = _build(1, padded_frames_in_batch_norm=True)
    params = ref.params_of(layer)
    expected = nextvlad_reference(videos, params, GROUPS, True, padding_rows=_padding_of(frames, mask))
    out = layer.train()(frames, mask)
    np.testing.assert_allclose(out.detach().numpy(), np.stack([r[0] for r in expected]), rtol=1e-10, atol=1e-12)
    # the statistics (and so the outputs) differ from the default's; in eval mode the two are the same function
    default = NeXtVLAD(DIMS, CLUSTERS, groups=GROUPS, expansion=EXPANSION).double()
    default.load_state_dict(layer.state_dict())
    assert not torch.allclose(default.train()(frames, mask), out)
    default.load_state_dict(layer.state_dict())
    torch.testing.assert_close(default.eval()(frames, mask), layer.eval()(frames, mask), rtol=1e-12, atol=1e-12)


def test_training_updates_the_cluster_statistics_from_real_frames_only():
    layer, videos, frames, mask = _build(2)
    before = ref.params_of(layer)
    layer.train()(frames, mask)
    rows = [ref.project(ref.project(frame, before["expansion_weights"]) + before["expansion_biases"],
                        before["cluster_weights"]) for video in videos for frame in video]
    mean, var = ref.batch_statistics(rows)
    momentum = layer.cluster_bn.momentum
    np.testing.assert_allclose(layer.cluster_bn.running_mean.numpy(),
                               (1 - momentum) * before["cluster_bn.running_mean"] + momentum * mean)
    np.testing.assert_allclose(layer.cluster_bn.running_var.numpy(),
                               (1 - momentum) * before["cluster_bn.running_var"] + momentum * var)


def test_no_final_l2_and_feature_major_layout():
    """The output is vlad_bn of intra-normalised clusters: with an identity vlad_bn (eval, mean 0, var 1 − eps,
    γ = 1, β = 0), every cluster column f·K + k (fixed k) of a video with frames has norm 1, and the vector norm
    is sqrt(K), not 1."""
    layer, _, frames, mask = _build(3)
    with torch.no_grad():
        layer.vlad_bn.reset_parameters()
        layer.vlad_bn.running_var.fill_(1.0 - layer.vlad_bn.eps)
    out = layer.eval()(frames, mask)
    columns = out.view(len(LENGTHS), DIMS * EXPANSION // GROUPS, CLUSTERS).norm(dim=1)
    np.testing.assert_allclose(columns.detach().numpy(), 1.0, rtol=1e-10)
    np.testing.assert_allclose(out.norm(dim=1).detach().numpy(), math.sqrt(CLUSTERS), rtol=1e-10)


def test_parameter_count_formula_shapes_and_tf_names():
    with torch.device("meta"):
        video = create_pooling("nextvlad", feature_size=1024, cluster_size=128, groups=8, expansion=2)
        audio = create_pooling("nextvlad", feature_size=128, cluster_size=64, groups=4, expansion=2)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(video) == 4_313_096 and count(audio) == 112_388  # spec: per-modality block with biases and BNs
    assert video.output_size == 128 * 256 and audio.output_size == 64 * 64
    shapes = {name: tuple(p.shape) for name, p in video.named_parameters()}
    assert shapes == {
        "expansion_weights": (1024, 2048), "expansion_biases": (2048,),
        "attention_weights": (2048, 8), "attention_biases": (8,),
        "cluster_weights": (2048, 1024), "cluster_bn.weight": (1024,), "cluster_bn.bias": (1024,),
        "cluster_weights2": (1, 256, 128), "vlad_bn.weight": (32768,), "vlad_bn.bias": (32768,),
    }  # fmt: skip
    covered = set(NeXtVLAD.tf_variable_names.values())
    assert {key.split(".")[0] for key in video.state_dict()} == covered


def test_initialisation_follows_tf_slim_variance_scaling():
    torch.manual_seed(0)
    layer = NeXtVLAD(512, 16, groups=4, expansion=2)
    for name, fan_in in (("expansion_weights", 512), ("cluster_weights", 1024), ("cluster_weights2", 256)):
        weight = getattr(layer, name).detach()
        bound = 2 * math.sqrt(2.6 / fan_in)
        assert weight.abs().max() <= bound + 1e-7, name  # truncated at two (pre-correction) standard deviations
        assert abs(weight.std().item() / math.sqrt(2.0 / fan_in) - 1.0) < 0.05, name
    assert torch.equal(layer.expansion_biases, torch.zeros(1024)) and torch.equal(layer.attention_biases, torch.zeros(4))


def test_rejects_groups_that_do_not_divide_the_expanded_frame():
    with pytest.raises(ValueError, match="does not divide"):
        NeXtVLAD(6, 4, groups=5, expansion=1)
    with pytest.raises(ValueError, match="positive"):
        NeXtVLAD(6, 4, groups=0)
