"""Soft-DBoW, gated Soft-DBoW and DBoF against the loop references (spec §4.4–4.6)."""

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import DBoF, GatedSoftDBoW, SoftDBoW

LENGTHS = [3, 7, 5, 2]
DIMS, CLUSTERS = 6, 5


def _build(cls, seed=0, **kwargs):
    return ref.build_layer(cls, DIMS, CLUSTERS, LENGTHS, seed, **kwargs)


def _check(layer, frames, mask, expected, training):
    layer.train(training)
    np.testing.assert_allclose(layer(frames, mask).detach().numpy(), np.stack(expected), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("max_pool", [False, True])
@pytest.mark.parametrize("add_batch_norm", [True, False])
def test_soft_dbow_matches_reference(add_batch_norm, max_pool, training):
    layer, videos, frames, mask = _build(SoftDBoW, add_batch_norm=add_batch_norm, max_pool=max_pool)
    expected = ref.soft_dbow(videos, ref.params_of(layer), training=training, max_pool=max_pool)
    _check(layer, frames, mask, expected, training)
    assert layer.output_size == (2 if max_pool else 1) * CLUSTERS


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("add_batch_norm", [True, False])
def test_gated_soft_dbow_matches_reference(add_batch_norm, training):
    layer, videos, frames, mask = _build(GatedSoftDBoW, add_batch_norm=add_batch_norm)
    expected = ref.gated_soft_dbow(videos, ref.params_of(layer), training=training)
    _check(layer, frames, mask, expected, training)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("pooling", ["max", "average", "max_average"])
@pytest.mark.parametrize("activation", ["relu", "relu6", "sigmoid", "none"])
def test_dbof_matches_reference(activation, pooling, training):
    layer, videos, frames, mask = _build(DBoF, activation=activation, pooling=pooling)
    expected = ref.dbof(videos, ref.params_of(layer), training=training, activation=activation, pooling=pooling)
    _check(layer, frames, mask, expected, training)
    assert layer.output_size == (2 if pooling == "max_average" else 1) * CLUSTERS


def test_dbof_without_batch_norm_matches_reference():
    layer, videos, frames, mask = _build(DBoF, add_batch_norm=False, activation="none", pooling="max")
    _check(layer, frames, mask, ref.dbof(videos, ref.params_of(layer), activation="none", pooling="max"), False)


def test_dbof_rejects_unknown_options():
    with pytest.raises(ValueError, match="activation"):
        DBoF(4, 3, activation="glu")
    with pytest.raises(ValueError, match="pooling"):
        DBoF(4, 3, pooling="median")


def test_output_norms():
    layer, _, frames, mask = _build(SoftDBoW, max_pool=True)
    out = layer.eval()(frames, mask).detach()
    np.testing.assert_allclose(out[:, :CLUSTERS].norm(dim=1).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out[:, CLUSTERS:].norm(dim=1).numpy(), 1.0, rtol=1e-12)
    gated, _, frames, mask = _build(GatedSoftDBoW)
    np.testing.assert_allclose(gated.eval()(frames, mask).detach().norm(dim=1).numpy(), 1.0, rtol=1e-12)


def test_parameter_counts_match_spec():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        assert count(GatedSoftDBoW(1024, 4096)) == 12_599_296  # spec §6.2 gated Soft-DBoW video stream
        assert count(SoftDBoW(128, 512)) == 65_536 + 1_024
        assert count(SoftDBoW(1024, 8000)) == 8_192_000 + 16_000
        assert count(DBoF(1152, 8192)) == 9_437_184 + 16_384  # G-TF1 cluster layer + its BN
    names = set(GatedSoftDBoW(8, 4).state_dict())
    assert {"cluster_weights", "dim_red", "cluster_weights_2", "cluster_bn_2.weight", "cluster_bn.weight"} <= names
