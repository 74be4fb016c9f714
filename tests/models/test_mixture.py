"""The mixture of NeXtVLADs with distillation (``MixtureClassifier``, spec §4.9 "Mixture"): its forward against a
float64 reference of the formula, its loss against a loop over videos, classes and branches, the configuration
(validation, parameter counts of spec §6.2, recipe), and the heads' logits it is built on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.layers.reference import randomize_batch_norms
from videopool.layers.heads import LogisticClassifier
from videopool.models import (
    ConfigError,
    MixtureClassifier,
    ModelConfig,
    ModelOutput,
    VideoClassifier,
    count_parameters,
    create_model,
    distillation_loss,
    get_named_config,
    get_recipe,
    model_from_config_dict,
)

NAME = "mix_nextvlad_3x_k112_g8"
TINY = {"cluster_size": 4, "hidden.size": 16, "gating.reduction": 4, "num_classes": 5}
LENGTHS = [7, 4, 1]


def _batch(generator, garbage=0.0):
    frames = {"rgb": torch.randn(3, 7, 1024, generator=generator, dtype=torch.float64),
              "audio": torch.randn(3, 7, 128, generator=generator, dtype=torch.float64)}
    mask = torch.arange(7)[None] < torch.tensor(LENGTHS)[:, None]
    if garbage:
        frames = {m: x.masked_fill(~mask[..., None], garbage) for m, x in frames.items()}
    return frames, mask


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = create_model(f"{NAME}_small", **{**TINY, **overrides}).double()
    randomize_batch_norms(model, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        model.gate_bias.normal_(0, 0.5)
    return model


def _reference_gate(model, frames, training, padded_frames_in_gate=False, l2=False):
    """x̄ (real frames, or the sum over the padded length), BN (running or biased batch statistics), FC, softmax."""
    means = []
    for video, length in enumerate(LENGTHS):
        rows = [np.concatenate([frames[m][video, t].numpy() for m in ("rgb", "audio")]) for t in range(length)]
        if l2:
            rows = [row / math.sqrt(max(float(row @ row), 1e-12)) for row in rows]
        means.append(sum(rows) / (7 if padded_frames_in_gate else length))
    means = np.stack(means)
    norm = model.gate_norm
    if training:
        mean, var = means.mean(0), means.var(0)
    else:
        mean, var = norm.running_mean.numpy(), norm.running_var.numpy()
    normed = (means - mean) / np.sqrt(var + norm.eps) * norm.weight.detach().numpy() + norm.bias.detach().numpy()
    logits = normed @ model.gate_weight.detach().numpy() + model.gate_bias.detach().numpy()
    weights = np.exp(logits - logits.max(1, keepdims=True))
    return weights / weights.sum(1, keepdims=True)


@pytest.mark.parametrize("options", [{}, {"mixture.padded_frames_in_gate": True}, {"l2_normalize_frames": True}],
                         ids=["real-frames", "reference-mean", "l2"])
def test_eval_forward_equals_the_formula_in_float64(options):
    model = _model(**options).eval()
    frames, mask = _batch(torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = model(*_batch(torch.Generator().manual_seed(2), garbage=1e6))  # padding values never matter
        gate = _reference_gate(model, frames, False, options.get("mixture.padded_frames_in_gate", False),
                               options.get("l2_normalize_frames", False))
        for video, length in enumerate(LENGTHS):  # every branch on the video alone, unpadded
            alone = {m: x[video : video + 1, :length] for m, x in frames.items()}
            branch_logits = [branch.logits(alone)[0].numpy() for branch in model.branches]
            for branch, logits in zip(model.branches, branch_logits):  # logits are what the branch's sigmoid reads
                np.testing.assert_allclose(branch(alone)[0].numpy(), 1 / (1 + np.exp(-logits)), rtol=1e-12)
            mixed = sum(w * z for w, z in zip(gate[video], branch_logits))
            np.testing.assert_allclose(got[video].numpy(), 1 / (1 + np.exp(-mixed)), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(model.logits(frames, mask), torch.logit(got), rtol=1e-8, atol=1e-10)
    assert isinstance(got, torch.Tensor) and got.shape == (3, 5)


def test_training_forward_returns_the_gate_and_branch_logits():
    model = _model().train()
    frames, mask = _batch(torch.Generator().manual_seed(3))
    torch.manual_seed(4)
    output = model(frames, mask)
    assert isinstance(output, ModelOutput) and set(output.aux) == {"logits", "branch_logits", "gate"}
    np.testing.assert_allclose(output.aux["gate"].detach().numpy(), _reference_gate(model, frames, True), rtol=1e-10)
    assert output.aux["branch_logits"].shape == (3, 3, 5)
    mixed = (output.aux["gate"][..., None] * output.aux["branch_logits"]).sum(1)
    torch.testing.assert_close(output.aux["logits"], mixed)
    torch.testing.assert_close(output.probabilities, torch.sigmoid(mixed))
    # the gate norm's running statistics move with slim's decay 0.999 (eval then uses them)
    assert not torch.equal(model.gate_norm.running_mean, torch.zeros(1152, dtype=torch.float64))


def _bce(p, y, reduction):
    terms = [-(yy * math.log(pp + 1e-5) + (1 - yy) * math.log(1 - pp + 1e-5)) for pp, yy in zip(p, y)]
    return sum(terms) if reduction == "bce_sum" else sum(terms) / len(terms)


def _softmax(values, temperature):
    top = max(values)
    e = [math.exp((v - top) / temperature) for v in values]
    return [x / sum(e) for x in e]


def _reference_loss(logits, branch_logits, labels, reduction, temperature, weight):
    """Loop over videos, branches and classes: BCE(σ(z)) + Σ_b BCE(σ(z_b)) + λ · mean_batch Σ_b KL(q ‖ q_b)."""
    sigmoid = lambda row: [1 / (1 + math.exp(-v)) for v in row]  # noqa: E731
    label_loss, kl = 0.0, 0.0
    for video in range(len(labels)):
        y = labels[video]
        label_loss += _bce(sigmoid(logits[video]), y, reduction)
        q = _softmax(logits[video], temperature)
        for branch in branch_logits[video]:
            label_loss += _bce(sigmoid(branch), y, reduction)
            q_b = _softmax(branch, temperature)
            kl += sum(a * (math.log(a + 1e-8) - math.log(b + 1e-8)) for a, b in zip(q, q_b))
    return (label_loss + weight * kl) / len(labels)


@pytest.mark.parametrize("reduction", ["bce_sum", "bce_mean"])
def test_loss_equals_a_loop_over_videos_branches_and_classes(reduction):
    model = _model(**{"mixture.temperature": 3.0, "mixture.distillation_weight": 9.0})
    generator = torch.Generator().manual_seed(5)
    branch_logits = torch.randn(4, 3, 5, generator=generator, dtype=torch.float64) * 3
    gate = torch.softmax(torch.randn(4, 3, generator=generator, dtype=torch.float64), -1)
    logits = (gate[..., None] * branch_logits).sum(1)
    labels = (torch.rand(4, 5, generator=generator) > 0.6).double()
    output = ModelOutput(torch.sigmoid(logits), {"logits": logits, "branch_logits": branch_logits, "gate": gate})
    expected = _reference_loss(logits.tolist(), branch_logits.tolist(), labels.tolist(), reduction, 3.0, 9.0)
    assert model.loss(output, labels, reduction).item() == pytest.approx(expected, rel=1e-6)  # BCE in float32
    with pytest.raises(TypeError, match="training-mode output"):
        model.loss(torch.sigmoid(logits), labels, reduction)


def test_distillation_gradients_flow_into_both_sides():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(3, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    branch_logits = torch.randn(3, 2, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda z, zb: distillation_loss(z, zb, 3.0), (logits, branch_logits))
    distillation_loss(logits, branch_logits, 3.0).backward()
    assert logits.grad.abs().sum() > 0 and branch_logits.grad.abs().sum() > 0  # no stop gradient
    expected = _reference_loss(logits.tolist(), branch_logits.tolist(), [[0] * 7] * 3, "bce_sum", 3.0, 1.0)
    bce_part = _reference_loss(logits.tolist(), branch_logits.tolist(), [[0] * 7] * 3, "bce_sum", 3.0, 0.0)
    assert distillation_loss(logits, branch_logits, 3.0).item() == pytest.approx(expected - bce_part, rel=1e-9)


def test_the_model_loss_reaches_every_parameter():
    model = _model().train()
    frames, mask = _batch(torch.Generator().manual_seed(7))
    labels = torch.zeros(3, 5, dtype=torch.float64)
    labels[:, 1] = 1
    (model.loss(model(frames, mask), labels) + model.regularization_loss()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    branch_l2 = sum(branch.classifier.regularization_loss() for branch in model.branches)
    assert model.regularization_loss().item() == pytest.approx(branch_l2.item())


def test_parameter_count_of_the_final_model_equals_the_spec():
    model = create_model(NAME, device="meta")
    assert isinstance(model, MixtureClassifier) and len(model.branches) == 3
    assert count_parameters(model) == 235_929_510 + 5_763
    assert all(count_parameters(branch) == 78_643_170 for branch in model.branches)  # nextvlad_k112_g8_h2048
    assert count_parameters(model.gate_norm) == 2_304 and model.gate_weight.numel() + model.gate_bias.numel() == 3_459
    branch = model.branches[0]
    assert isinstance(branch, VideoClassifier) and branch.config.mixture.branches == 1
    assert branch.config.to_dict() == {**model.config.to_dict(), "mixture": branch.config.mixture.__dict__}
    assert 3_000_000 < count_parameters(create_model(NAME + "_small", device="meta")) < 30_000_000


def test_named_config_and_recipe():
    named = get_named_config(NAME)
    mixture = named.model.mixture
    assert (mixture.branches, mixture.temperature, mixture.distillation_weight) == (3, 3.0, 9.0)
    assert not mixture.padded_frames_in_gate
    branch = get_named_config("nextvlad_k112_g8_h2048").model.to_dict()
    assert {**named.model.to_dict(), "mixture": branch["mixture"]} == branch  # three final NeXtVLADs
    recipe = get_recipe(NAME)
    assert recipe == get_recipe("nextvlad_k112_g8_h2048")  # the final scripts' recipe (spec §7.2)
    assert recipe["lr_decay_examples"] // recipe["batch_size"] == 15_625 and recipe["max_steps"] == 460_000


def test_mixture_config_is_validated():
    with pytest.raises(ConfigError, match="mixture.branches"):
        create_model(f"{NAME}_small", **{"mixture.branches": 0})
    with pytest.raises(ConfigError, match="mixture.temperature"):
        create_model(f"{NAME}_small", **{"mixture.temperature": 0.0})
    with pytest.raises(ConfigError, match="mixture.distillation_weight"):
        create_model(f"{NAME}_small", **{"mixture.distillation_weight": -1.0})
    with pytest.raises(ConfigError, match="logistic"):
        create_model(f"{NAME}_small", **{"classifier.type": "moe"})
    with pytest.raises(ConfigError, match="prob_gating"):
        create_model(f"{NAME}_small", **{"classifier.prob_gating": True})
    with pytest.raises(ConfigError, match="mixture.branches"):
        create_model(f"{NAME}_small", **{"mixture.branchs": 2})
    with pytest.raises(ConfigError, match="branches"):
        ModelConfig.from_dict({"classifier": {"type": "logistic"}, "mixture": {"branchez": 2}})
    # one branch is the plain model; the mixture section round-trips through the checkpoint dict
    assert type(create_model(f"{NAME}_small", **{"mixture.branches": 1})) is VideoClassifier
    config = create_model(f"{NAME}_small", **{"mixture.branches": 2}).config
    assert ModelConfig.from_dict(config.to_dict()) == config and config.mixture.branches == 2
    # checkpoints written before the mixture section existed hold no 'mixture' key: they rebuild plain models
    older = {key: value for key, value in create_model("nextvlad_k128_g8_small").config.to_dict().items()
             if key != "mixture"}
    assert type(model_from_config_dict(older, device="meta")) is VideoClassifier


def test_logistic_logits_and_their_limits():
    torch.manual_seed(0)
    head = LogisticClassifier(6, 4)
    h = torch.randn(3, 6)
    torch.testing.assert_close(torch.sigmoid(head.logits(h)), head(h), rtol=0, atol=0)
    with pytest.raises(TypeError, match="logistic"):
        create_model("gated_netvlad_256_small", num_classes=4).eval().logits(
            {"rgb": torch.randn(2, 3, 1024), "audio": torch.randn(2, 3, 128)})
    with pytest.raises(TypeError, match="prob_gating"):
        create_model("avgpool_logistic_small", num_classes=4, **{"classifier.prob_gating": True}).logits(
            {"rgb": torch.randn(2, 3, 1024), "audio": torch.randn(2, 3, 128)})
