"""TF1 parity: videopool models with the weights of the original TF1 code reproduce its recorded outputs.

The fixtures (``shared/fixtures/tf1-reference/``, see its README.md) hold, per model, a checkpoint as ``.npz``
(every variable by TF name), the batch the reference was fed, the frames its sampler drew, its intermediate
tensors and its predictions, all from a ``Session.run`` of the unmodified reference code. Each test builds the
matching ``VideoClassifier``, loads the weights through :mod:`videopool.models.tf_names` (the mapping the
``import-tf`` command reuses), feeds the frames the reference pooled and compares every recorded tensor.

* The reference models do **not** L2-normalise frames: the train/eval scripts do it before ``create_model``,
  and the fixtures record the model on raw inputs. So every parity model has ``l2_normalize_frames: false``.
* WILLOW/NLVLAD sample ``n`` frames at random also at inference; the fixture records which (``frame_index``),
  and the model is fed ``inputs[b, frame_index[b]]`` as a video of ``n`` real frames.
* Tolerances (README "Testing a port"): a float64 re-computation matches the recording to < 1e-5 absolute, so
  float32 should reach ~1e-6 on the probabilities and ~1e-5 relative on the intermediates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videopool.models import create_model
from videopool.models.config import ModelConfig
from videopool.models.tf_names import TFTarget, convert_tf_weights, is_skipped_tf_name, tf_to_videopool

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "tf1-reference"
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"TF1 reference fixtures not found at {FIXTURES} (shared/ beside the repository)"
)

MODALITIES = {"rgb": 1024, "audio": 128}


def _model_config(fixture: str, pooling: dict, *, relu: bool, prob_gating: bool, early: bool = False) -> ModelConfig:
    """The videopool configuration of a WILLOW/NLVLAD fixture, from its recorded flags."""
    meta = json.loads((FIXTURES / f"{fixture}.json").read_text())
    sizes, flags = meta["sizes"], meta["flags_all_reference"]
    cluster_flag = "fv_cluster_size" if pooling["type"] == "netfv" else "netvlad_cluster_size"
    assert flags[cluster_flag] == sizes["K"] and flags["moe_num_mixtures"] == sizes["M"]
    assert flags["moe_prob_gating"] is prob_gating and flags["gating"] is True
    assert flags["fv_relu" if pooling["type"] == "netfv" else "netvlad_relu"] is relu
    return ModelConfig.from_dict({
        "num_classes": meta["vocab_size"],
        "modalities": MODALITIES,
        "l2_normalize_frames": False,  # the reference normalises outside the model; the fixtures feed raw frames
        "input_batch_norm": True,
        "pooling": {"cluster_size": sizes["K"], "add_batch_norm": True, "cluster_size_divisor": {"audio": 2},
                    **pooling},
        "fusion": {"stage": "early" if early else "late", "type": "concat"},
        # WILLOW/NLVLAD: hidden1_bn + ReLU6 only when relu (and then no bias); otherwise a bias alone.
        "hidden": {"size": sizes["H"], "bias": not relu, "batch_norm": relu, "activation": "relu6" if relu else "none"},
        "gating": {"type": "context", "add_batch_norm": True},
        "classifier": {"type": "moe", "num_mixtures": sizes["M"], "l2_penalty": flags["moe_l2"],
                       "prob_gating": prob_gating},
    })


WILLOW = {
    "willow_netvlad": dict(pooling={"type": "netvlad"}, relu=True, prob_gating=False),
    "willow_netvlad_gatedmoe": dict(pooling={"type": "netvlad"}, relu=False, prob_gating=True),
    "willow_netfv": dict(pooling={"type": "netfv", "options": {"couple_weights": True}}, relu=True,
                         prob_gating=False),
    "willow_netfv_gatedmoe": dict(pooling={"type": "netfv", "options": {"couple_weights": False}}, relu=False,
                                  prob_gating=True),
}
# The released code's value branch uses W_phi (nonlocal_g is unused), and the run scripts intra-normalise after
# the block (--beforeNorm): that is what the fixtures recorded.
NONLOCAL = {
    "nonlocal_netvlad": dict(pooling={"type": "nonlocal_netvlad", "options": {
        "value_weights": "phi", "intra_norm": "after_block", "reduction": "flatten"}},
        relu=False, prob_gating=True),
    "nonlocal_netvlad_shared2_avg": dict(pooling={"type": "nonlocal_netvlad", "options": {
        "value_weights": "phi", "intra_norm": "after_block", "reduction": "avg", "num_blocks": 2,
        "shared_weights": True}}, relu=False, prob_gating=True),
}
FIXTURE_CONFIGS = {**WILLOW, **NONLOCAL}

# Worst errors measured on these fixtures (float32 on CPU), kept a little above as the test's bound; the
# docs (docs/models.md, "TF1 parity") quote them.
PREDICTION_ATOL = 1e-6
INTERMEDIATE_RTOL = 1e-5


def load_fixture(name: str):
    """``(model, frames, recorded)``: the eval-mode model with the fixture's weights, the frames the reference
    pooled (``{rgb: [B, n, 1024], audio: [B, n, 128]}``) and the recorded tensors."""
    recorded = dict(np.load(FIXTURES / f"{name}.npz"))
    weights = dict(np.load(FIXTURES / f"{name}.weights.npz"))
    model = create_model(_model_config(name, **FIXTURE_CONFIGS[name])).eval()
    state = convert_tf_weights(weights, MODALITIES)
    result = model.load_state_dict({key: torch.from_numpy(value.copy()) for key, value in state.items()},
                                   strict=False)
    assert result.unexpected_keys == []
    # TF checkpoints have no batch counters; every parameter and statistic must come from the checkpoint.
    assert all(key.endswith("num_batches_tracked") for key in result.missing_keys), result.missing_keys
    batch = np.arange(len(recorded["num_frames"]))[:, None]
    sampled = torch.from_numpy(recorded["inputs"][batch, recorded["frame_index"]])  # [B, n, 1152]
    frames = {"rgb": sampled[..., :1024], "audio": sampled[..., 1024:]}
    return model, frames, recorded


def run_with_intermediates(model, frames) -> dict[str, np.ndarray]:
    """The model's outputs at the points the fixtures recorded."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.poolings["rgb"].register_forward_hook(lambda m, i, o: seen.__setitem__("video_pooled", o)),
        model.poolings["audio"].register_forward_hook(lambda m, i, o: seen.__setitem__("audio_pooled", o)),
        model.hidden.register_forward_hook(lambda m, i, o: seen.__setitem__("hidden", o)),
        model.gating.register_forward_hook(lambda m, i, o: seen.__setitem__("gated", o)),
    ]
    if model.classifier.prob_gating is not None:
        hooks.append(model.classifier.prob_gating.register_forward_hook(
            lambda m, i, o: seen.__setitem__("moe_probabilities", i[0])))
    try:
        with torch.no_grad():
            seen["predictions"] = model(frames)
    finally:
        for hook in hooks:
            hook.remove()
    pooled = torch.cat([seen["video_pooled"], seen["audio_pooled"]], dim=1)
    seen["hidden_fc"] = pooled @ model.hidden.weight
    return {key: value.detach().numpy() for key, value in seen.items()}


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |a − e| / max |e|: the error relative to the tensor's scale (entries near 0 do not inflate it)."""
    return float(np.abs(actual.astype(np.float64) - expected).max() / np.abs(expected).max())


def _check_parity(name: str) -> None:
    model, frames, recorded = load_fixture(name)
    ours = run_with_intermediates(model, frames)
    keys = [key for key in ("video_pooled", "audio_pooled", "hidden_fc", "hidden", "gated", "moe_probabilities")
            if key in recorded]
    assert len(keys) == 5 + ("moe_probabilities" in recorded)
    errors = {key: relative_error(ours[key], recorded[key]) for key in keys}
    assert all(error < INTERMEDIATE_RTOL for error in errors.values()), errors
    np.testing.assert_allclose(ours["predictions"], recorded["predictions"], rtol=0, atol=PREDICTION_ATOL)


@needs_fixtures
@pytest.mark.parametrize("name", sorted(WILLOW))
def test_willow_models_reproduce_the_tf1_reference(name):
    _check_parity(name)


@needs_fixtures
@pytest.mark.parametrize("name", sorted(NONLOCAL))
def test_nonlocal_netvlad_reproduces_the_tf1_reference(name):
    _check_parity(name)


@needs_fixtures
def test_nonlocal_block_input_is_the_centroid_subtracted_vlad():
    """The recorded descriptors entering the first non-local block (rows b·K + k = cluster k of video b)."""
    model, frames, recorded = load_fixture("nonlocal_netvlad")
    stream = model.poolings["rgb"]
    seen = {}
    hook = stream.pooling.nonlocal_blocks[0].register_forward_pre_hook(lambda m, i: seen.__setitem__("y", i[0]))
    with torch.no_grad():
        model(frames)
    hook.remove()
    tokens = seen["y"]  # [B, K, D]
    ours = tokens.reshape(-1, tokens.shape[-1]).numpy()
    assert relative_error(ours, recorded["video_nonlocal_input"]) < INTERMEDIATE_RTOL


@needs_fixtures
def test_the_recorded_nonlocal_g_is_unused_with_phi_values_and_used_with_g():
    """The reference bug the fixture README documents: with ``value_weights="phi"`` (as released) ``nonlocal_g``
    has no effect; with the paper's ``"g"`` it does."""
    model, frames, _ = load_fixture("nonlocal_netvlad")
    with torch.no_grad():
        before = model(frames)
        model.poolings["rgb"].pooling.nonlocal_blocks[0].nonlocal_g.normal_(0.0, 10.0)
        assert torch.equal(model(frames), before)


@needs_fixtures
def test_every_fixture_variable_has_a_videopool_name():
    for path in sorted(FIXTURES.glob("*.weights.npz")):
        if path.name.startswith("nextvlad"):
            continue  # NeXtVLAD has its own mapping (not part of the WILLOW table)
        names = np.load(path).files
        assert "global_step" in names
        for name in names:
            if not is_skipped_tf_name(name):
                assert tf_to_videopool(name, MODALITIES), name


def test_tf_names_map_by_the_documented_table():
    assert tf_to_videopool("input_bn/moving_mean", MODALITIES) == [
        TFTarget("poolings.rgb.input_norm.running_mean", 0, 1024),
        TFTarget("poolings.audio.input_norm.running_mean", 1024, 1152),
    ]
    cases = {
        "video_VLAD/cluster_weights": "poolings.rgb.pooling.cluster_weights",
        "tower/audio_VLAD/cluster_bn/gamma": "poolings.audio.pooling.cluster_bn.weight",
        "video_FV/covar_weights": "poolings.rgb.pooling.covar_weights",
        "video_DBOF/cluster_bn_2/beta": "poolings.rgb.pooling.cluster_bn_2.bias",
        "tower/video_VLAD/nonlocal_theta": "poolings.rgb.pooling.nonlocal_blocks.0.nonlocal_theta",
        "tower/audio_VLAD/nonlocal_layer/nonlocal_out": "poolings.audio.pooling.nonlocal_blocks.0.nonlocal_out",
        "hidden1_weights": "hidden.weight",
        "hidden1_bn/moving_variance": "hidden.batch_norm.running_var",
        "gating_weights_2": "gating.weight",
        "gating_bn/beta": "gating.batch_norm.bias",
        "gates/weights": "classifier.gate_weight",
        "experts/biases": "classifier.expert_bias",
        "gating_prob_weights": "classifier.prob_gating.weight",
        "tower/gating_prob_bn/gamma": "classifier.prob_gating.batch_norm.weight",
    }
    for tf_name, ours in cases.items():
        assert tf_to_videopool(tf_name) == [TFTarget(ours)], tf_name
    for skipped in ("global_step", "hidden1_weights/Adam", "video_VLAD/cluster_weights/Adam_1", "beta1_power"):
        assert is_skipped_tf_name(skipped)
    with pytest.raises(KeyError, match="no videopool parameter"):
        tf_to_videopool("RNN/multi_rnn_cell/cell_0/gru_cell/gates/kernel")
    state = convert_tf_weights({"global_step": np.int32(3), "input_bn/beta": np.arange(1152.0),
                                "gates/weights": np.ones((2, 3))})
    assert sorted(state) == ["classifier.gate_weight", "poolings.audio.input_norm.bias", "poolings.rgb.input_norm.bias"]
    assert state["poolings.audio.input_norm.bias"][0] == 1024.0
