"""NeXtVLAD against the TF1 reference: the linrongc/youtube-8m graph's recorded outputs (``nextvlad`` fixture).

The fixture holds the checkpoint variables (``nextvlad.weights.npz``), the batch fed to the reference model and
its intermediate tensors (``nextvlad.npz``), made by running the reference code in inference mode (K=8, G=4,
λ=1, H=32, r=8, MoE with M=4, V=10; ``nextvlad.json`` records every flag). The fixture directory lives in the
shared folder beside the repository (``../shared/fixtures/tf1-reference``); without it the tests skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videopool.layers import NeXtVLAD, SEContextGating
from videopool.models import ModelConfig, create_model

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "tf1-reference"
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "nextvlad.npz").is_file(),
    reason=f"TF1 reference fixtures not found at {FIXTURES.resolve()} (the shared folder beside the repository)",
)

STREAMS = {"video_VLAD": "rgb", "audio_VLAD": "audio"}
BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
HEAD = {
    "hidden1_weights": "hidden.weight",
    "hidden1_bn": "hidden.batch_norm",
    "gating_weights_1": "gating.reduce_weight",
    "gating_bn": "gating.batch_norm",
    "gating_weights_2": "gating.weight",
    "gates/weights": "classifier.gate_weight",
    "experts/weights": "classifier.expert_weight",
    "experts/biases": "classifier.expert_bias",
}


def _target(tf_name: str) -> str:
    """The videopool state-dict name of one TF variable of the fixture (``tower/`` scope)."""
    name = tf_name.removeprefix("tower/")
    scope, _, rest = name.partition("/")
    if scope in STREAMS:
        prefix, table = f"poolings.{STREAMS[scope]}.pooling.", NeXtVLAD.tf_variable_names
    else:
        prefix, table, rest = "", HEAD, name
    for tf_key, ours in table.items():
        if rest == tf_key:
            return prefix + ours
        if rest.startswith(tf_key + "/") and rest.rsplit("/", 1)[1] in BN_FIELDS:  # a batch-norm scope
            return f"{prefix}{ours}.{BN_FIELDS[rest.rsplit('/', 1)[1]]}"
    raise KeyError(f"no videopool parameter for TF variable {tf_name!r}")


def _fixture_model():
    info = json.loads((FIXTURES / "nextvlad.json").read_text())
    sizes, flags = info["sizes"], info["flags_all_reference"]
    config = ModelConfig.from_dict({
        "num_classes": info["vocab_size"],
        "modalities": {"rgb": 1024, "audio": 128},
        "l2_normalize_frames": False,
        "input_batch_norm": False,
        "pooling": {"type": "nextvlad", "cluster_size": sizes["K"],
                    "options": {"groups": sizes["G"], "expansion": sizes["lam"]},
                    "cluster_size_divisor": {"audio": 2},
                    "per_modality": {"audio": {"options": {"groups": sizes["G"] // 2}}}},
        "hidden": {"size": sizes["H"], "bias": False, "batch_norm": True, "dropout": flags["drop_rate"]},
        "gating": {"type": "se", "reduction": sizes["r"]},
        "classifier": {"type": "moe", "num_mixtures": sizes["M"]},
    })
    model = create_model(config)
    weights = np.load(FIXTURES / "nextvlad.weights.npz")
    state = {_target(name): torch.from_numpy(weights[name]) for name in weights.files if name != "global_step"}
    own = model.state_dict()
    assert set(own) - set(state) == {key for key in own if key.endswith("num_batches_tracked")}
    for key, value in state.items():
        assert tuple(own[key].shape) == tuple(value.shape), key
    model.load_state_dict(state, strict=False)
    return model.eval()


def _run(model, inputs, mask):
    recorded = {}

    def keep(name):
        return lambda module, args, output: recorded.__setitem__(name, output)

    model.poolings["rgb"].register_forward_hook(keep("video_pooled"))
    model.poolings["audio"].register_forward_hook(keep("audio_pooled"))
    model.hidden.batch_norm.register_forward_hook(lambda m, args, out: recorded.update(hidden_fc=args[0], hidden=out))
    model.gating.register_forward_hook(keep("gated"))
    with torch.no_grad():
        recorded["predictions"] = model({"rgb": inputs[..., :1024], "audio": inputs[..., 1024:]}, mask)
    return recorded


def _batch(length=None):
    data = np.load(FIXTURES / "nextvlad.npz")
    inputs = torch.from_numpy(data["inputs"])
    num_frames = torch.from_numpy(data["num_frames"]).long()
    if length is not None:
        inputs = inputs[:, :length]
    mask = torch.arange(inputs.shape[1])[None] < num_frames[:, None]
    return data, inputs, mask


KEYS = ["video_pooled", "audio_pooled", "hidden_fc", "hidden", "gated", "predictions"]


def test_tf_variables_map_one_to_one_onto_the_model():
    weights = np.load(FIXTURES / "nextvlad.weights.npz")
    targets = [_target(name) for name in weights.files if name != "global_step"]
    assert len(targets) == len(set(targets)) == 42
    assert isinstance(_fixture_model().gating, SEContextGating)


@pytest.mark.parametrize("length", [None, 12], ids=["300-frames", "first-12-frames"])
def test_reproduces_the_reference_outputs(length):
    """``inputs`` (300 frames, garbage padding) with the mask from ``num_frames``; the first 12 rows (all real
    frames, max(num_frames) = 12) give the same result, since padding has no influence."""
    data, inputs, mask = _batch(length)
    recorded = _run(_fixture_model(), inputs, mask)
    for key in KEYS:
        expected, got = data[key], recorded[key].numpy()
        assert got.shape == expected.shape, key
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6 * scale, err_msg=key)


def test_float64_port_is_within_the_fixtures_own_precision():
    """In float64 the port agrees with the float32 reference to the float32 rounding of its graph (~1e-6)."""
    data, inputs, mask = _batch()
    recorded = _run(_fixture_model().double(), inputs.double(), mask)
    for key in KEYS:
        expected = data[key].astype(np.float64)
        error = np.abs(recorded[key].numpy() - expected).max() / np.abs(expected).max()
        assert error < 1e-5, (key, error)
