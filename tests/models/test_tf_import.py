"""The pieces of ``import-tf`` on the models floor (videopool.models.tf_import).

* :func:`infer_overrides` reads the sizes each fixture's ``NAME.json`` records (K, H, M, V, G, λ, r) and the
  optional parts off the variable shapes alone.
* :func:`tf_state_dict` + :func:`check_report`: every problem is listed (shape mismatches, parameters without a
  variable, variables without a parameter), optimizer slots are ignored and counted, ``allow_unused`` drops
  model-looking leftovers; a WILLOW Soft-DBoW checkpoint (written by tests/tf_bundle.py with the names of the
  WILLOW code, no fixture exists for it) lands on the named parameters.
* :func:`fold_rgb_unwhitening`: the folded NeXtVLAD on raw features equals the unfolded one on linrongc's
  pre-processed features, and on the real ``nextvlad`` checkpoint reproduces the recorded predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tf_bundle import write_bundle
from videopool.data.tf_checkpoint import TFCheckpoint
from videopool.models import create_model, get_model_config, resolve_config
from videopool.models.tf_import import (DEQUANTIZATION_BIAS, TFImportError, check_report, fold_rgb_unwhitening,
                                        infer_overrides, reference_settings, tf_state_dict)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf1-reference"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "nextvlad.ckpt.index").is_file(),
                                    reason=f"TF1 reference fixtures not found at {FIXTURES}")
FAMILY = {"willow_netvlad": "gated_netvlad_256", "willow_netvlad_gatedmoe": "gated_netvlad_256",
          "willow_netfv": "gated_netfv_128", "willow_netfv_gatedmoe": "gated_netfv_128",
          "nextvlad": "nextvlad_k128_g8", "nonlocal_netvlad": "nl_netvlad_128",
          "nonlocal_netvlad_shared2_avg": "nl_netvlad_128"}


def _build(model_name: str, shapes, settings=None, **extra):
    """The model import-tf builds: named config ← variables ← reference flags ← videopool keys."""
    translated, rest = reference_settings(settings or {})
    overrides = {**infer_overrides(shapes, get_model_config(model_name)), **translated, **rest, **extra}
    overrides = {key: value for key, value in overrides.items() if key not in ("num_frames", "frame_selection",
                                                                                 "eval_sampling")}
    config = resolve_config(model_name, **overrides)
    return create_model(config).eval(), config


@needs_fixtures
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_sizes_and_parts_are_read_off_the_variables(name):
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    sizes, flags = meta["sizes"], meta["flags_all_reference"]
    found = infer_overrides(TFCheckpoint(str(FIXTURES / f"{name}.ckpt")).shapes(), get_model_config(FAMILY[name]))
    assert found["pooling.cluster_size"] == sizes["K"] and found["hidden.size"] == sizes["H"]
    assert found["num_classes"] == meta["vocab_size"] and found["classifier.num_mixtures"] == sizes["M"]
    assert found["modalities"] == {"rgb": 1024, "audio": 128}
    assert found["pooling.cluster_size_divisor.audio"] == 2
    assert found["classifier.prob_gating"] is flags.get("moe_prob_gating", False)  # linrongc has no such flag
    if name == "nextvlad":
        assert (found["pooling.options.groups"], found["pooling.options.expansion"]) == (sizes["G"], sizes["lam"])
        assert found["pooling.per_modality.audio.options.groups"] == sizes["G"] // 2
        assert found["gating.type"] == "se" and found["gating.reduction"] == sizes["r"]
        assert found["input_batch_norm"] is False and found["hidden.activation"] == "none"
        return
    relu = flags["fv_relu" if "netfv" in name else "netvlad_relu"]
    assert found["hidden.batch_norm"] is relu and found["hidden.bias"] is not relu
    assert found["hidden.activation"] == ("relu6" if relu else "none")
    assert found["gating.type"] == "context" and found["input_batch_norm"] is True
    if "netfv" in name:
        assert found["pooling.options.couple_weights"] is flags["fv_couple_weights"]
    if name.startswith("nonlocal"):
        assert found["pooling.options.value_weights"] == "phi"
        assert found["pooling.options.shared_weights"] is flags["nonlocalvlad_shared"]
        assert found["pooling.options.reduction"] == ("avg" if flags["avg_netvlad"] else "flatten")


@needs_fixtures
def test_every_problem_is_listed():
    ckpt = TFCheckpoint(str(FIXTURES / "willow_netvlad.ckpt"))
    shapes = ckpt.shapes()
    # a config that disagrees on H and asks for probability gating the checkpoint does not have
    model, config = _build("gated_netvlad_256", shapes, {"moe_prob_gating": True}, **{"hidden.size": 20})
    extra = {**shapes, "video_VLAD/mystery": (3,), "hidden1_weights/Adam": (8704, 32), "beta1_power": ()}
    state, report = tf_state_dict(model, config, extra, ckpt.read)
    assert "hidden1_weights [8704, 32] -> hidden.weight [8704, 20]" in report.mismatched
    assert "classifier.prob_gating.weight" in report.missing and "hidden.weight" not in report.missing
    assert report.unused == ["video_VLAD/mystery"]
    assert sorted(report.ignored) == ["beta1_power", "global_step", "hidden1_weights/Adam"]
    with pytest.raises(TFImportError) as caught:
        check_report(report, model_name="gated_netvlad_256")
    message = str(caught.value)
    assert all(part in message for part in ("12 shape mismatch(es)", "classifier.prob_gating.batch_norm.running_var",
                                            "1 checkpoint variable(s) that no parameter takes: video_VLAD/mystery"))
    model, config = _build("gated_netvlad_256", shapes)
    state, report = tf_state_dict(model, config, extra, ckpt.read)
    with pytest.raises(TFImportError, match="video_VLAD/mystery"):
        check_report(report)
    check_report(report, allow_unused=True)  # the only problem left is the unused variable
    model.load_state_dict(state, strict=True)
    np.testing.assert_array_equal(model.poolings["audio"].input_norm.running_var.numpy(),
                                  ckpt.read("input_bn/moving_variance")[1024:])


def test_a_willow_soft_dbow_checkpoint_lands_on_the_named_parameters(tmp_path):
    rng = np.random.default_rng(0)
    k, h, v, m = 32, 8, 5, 2
    shapes = {"input_bn/gamma": (1152,), "input_bn/beta": (1152,), "input_bn/moving_mean": (1152,),
              "input_bn/moving_variance": (1152,), "video_DBOF/cluster_weights": (1024, k),
              "audio_DBOF/cluster_weights": (128, k // 8), "hidden1_weights": (k + k // 8, h), "hidden1_biases": (h,),
              "gates/weights": (h, v * (m + 1)), "experts/weights": (h, v * m), "experts/biases": (v * m,)}
    for stream, size in (("video_DBOF", k), ("audio_DBOF", k // 8)):
        for field in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{stream}/cluster_bn/{field}"] = (size,)
    tensors = {name: rng.uniform(0.5, 1.5, shape).astype(np.float32) for name, shape in shapes.items()}
    tensors.update({"global_step": np.int32(1234), "hidden1_weights/Adam": np.zeros((k + k // 8, h), np.float32),
                    "beta2_power": np.float32(0.9)})
    write_bundle(str(tmp_path / "dbof.ckpt"), tensors)
    ckpt = TFCheckpoint(str(tmp_path / "dbof.ckpt"))
    model, config = _build("soft_dbow_4096", ckpt.shapes())
    assert config.pooling.cluster_size == k and config.pooling.cluster_size_divisor == {"audio": 8}
    assert config.num_classes == v
    state, report = tf_state_dict(model, config, ckpt.shapes(), ckpt.read)
    check_report(report)
    assert len(report.ignored) == 3 and len(report.loaded) == len(shapes)
    model.load_state_dict(state, strict=True)
    params = model.state_dict()
    np.testing.assert_array_equal(params["poolings.rgb.pooling.cluster_weights"], tensors["video_DBOF/cluster_weights"])
    np.testing.assert_array_equal(params["poolings.audio.pooling.cluster_bn.running_mean"],
                                  tensors["audio_DBOF/cluster_bn/moving_mean"])
    np.testing.assert_array_equal(params["classifier.expert_bias"], tensors["experts/biases"])


def test_a_checkpoint_of_another_family_is_refused():
    shapes = {"tower/video_VLAD/cluster_weights": (1024, 8), "tower/video_VLAD/cluster_weights2": (1, 1024, 8),
              "tower/video_VLAD/nonlocal_theta": (1024, 8), "tower/hidden1_weights": (8192, 4)}
    with pytest.raises(TFImportError, match="holds a nonlocal_netvlad model, but --model is a netvlad configuration"):
        infer_overrides(shapes, get_model_config("gated_netvlad_256"))
    with pytest.raises(TFImportError, match="no video stream scope"):
        infer_overrides({"RNN/kernel": (1152, 4)}, get_model_config("gated_netvlad_256"))
    with pytest.raises(TFImportError, match=r"needs a 2-d variable 'video_VLAD/cluster_weights' \(found shape"):
        infer_overrides({"video_VLAD/cluster_weights": (1024,)}, get_model_config("gated_netvlad_256"))
    # within a family the variables decide: WILLOW's GatedDBoF has dim_red, its SoftDBoF has not
    gated = {"video_DBOF/cluster_weights": (1024, 16), "video_DBOF/dim_red": (16, 1024),
             "hidden1_weights": (16, 4), "fully_connected/weights": (4, 3)}
    assert infer_overrides(gated, get_model_config("soft_dbow_4096"))["pooling.type"] == "gated_soft_dbow"
    del gated["video_DBOF/dim_red"]
    found = infer_overrides(gated, get_model_config("gated_soft_dbow_4096"))
    assert (found["pooling.type"], found["classifier.type"], found["num_classes"]) == ("soft_dbow", "logistic", 3)


@needs_fixtures
def test_the_folded_rgb_unwhitening_is_linrongcs_preprocessing():
    ckpt = TFCheckpoint(str(FIXTURES / "nextvlad.ckpt"))
    plain, config = _build("nextvlad_k128_g8", ckpt.shapes())
    state, report = tf_state_dict(plain, config, ckpt.shapes(), ckpt.read)
    check_report(report)
    plain.load_state_dict(state)
    eigenvalues = np.random.default_rng(1).uniform(0.01, 15.0, (2048, 1)).astype(np.float32)
    folded, _ = _build("nextvlad_k128_g8", ckpt.shapes())
    fold_rgb_unwhitening(state, config, eigenvalues)
    folded.load_state_dict(state)
    recorded = np.load(FIXTURES / "nextvlad.npz")
    inputs = torch.from_numpy(recorded["inputs"].astype(np.float64))
    mask = torch.arange(inputs.shape[1])[None] < torch.from_numpy(recorded["num_frames"])[:, None]
    scale = torch.from_numpy(np.sqrt(eigenvalues[:1024, 0].astype(np.float64)) + 1e-4)
    # the features videopool reads x, such that the reference's pre-processing gives the recorded inputs
    raw = inputs.clone()
    raw[..., :1024] = inputs[..., :1024] / scale + DEQUANTIZATION_BIAS
    with torch.no_grad():
        ours = folded({"rgb": raw[..., :1024].float(), "audio": raw[..., 1024:].float()}, mask)
        theirs = plain({"rgb": inputs[..., :1024].float(), "audio": inputs[..., 1024:].float()}, mask)
    np.testing.assert_allclose(ours.numpy(), recorded["predictions"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=2e-6)
    with pytest.raises(TFImportError, match="2048 holds|2048\\)"):
        fold_rgb_unwhitening(dict(state), config, eigenvalues[:100])
    willow = create_model("gated_netvlad_256_small", num_classes=4)
    with pytest.raises(TFImportError, match="linrongc's NeXtVLAD pre-processing"):
        fold_rgb_unwhitening(willow.state_dict(), willow.config, eigenvalues)
