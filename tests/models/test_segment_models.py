"""Segment models (videopool.models.segment): the rated-pair loss against a per-element reference and its
gradient, the frozen video encoder and the segment encoder's learning rate, averaging, and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from videopool.models import create_model, load_model, save_weights
from videopool.models.segment import (AveragedSegmentClassifier, ContextAwareSegmentClassifier, SegmentClassifier,
                                      SegmentModelConfig, rated_pair_loss, segment_model_from_config)
from videopool.training.step import TrainStep

V = 6
SETTINGS = {"cluster_size": 2, "hidden.size": 8, "modalities": {"rgb": 8, "audio": 4}}


def _video_model(seed=0):
    torch.manual_seed(seed)
    return create_model("gated_netvlad_256_small", num_classes=V, **SETTINGS)


def _config(kind, video, **keys):
    return SegmentModelConfig(segment_model=kind, video=video.config.to_dict(), fc_size=16, num_mixtures=2, **keys)


def _inputs(batch=4, frames=11, video_frames=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    segment = {"rgb": torch.randn(batch, frames, 8, generator=g), "audio": torch.randn(batch, frames, 4, generator=g)}
    video = {"rgb": torch.randn(batch, video_frames, 8, generator=g),
             "audio": torch.randn(batch, video_frames, 4, generator=g)}
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[0, :3] = False  # a segment at the start of its video
    return segment, mask, video, torch.ones(batch, video_frames, dtype=torch.bool)


def _labels(batch=4):
    targets = torch.zeros(batch, V)
    weights = torch.zeros(batch, V)
    targets[0, 1], weights[0, 1] = 1, 1.5  # rated positive
    weights[1, 2] = 0.5  # rated negative
    targets[2, 3], weights[2, 3] = 1, 1.5
    targets[3, 0], weights[3, 0] = 1, 1.5
    return targets, weights


def _reference_loss(p, targets, weights, mined, reduction):
    """The formula, one pair at a time."""
    rated_sum = mined_sum = 0.0
    rated_count = mined_count = 0
    for b in range(p.shape[0]):
        for c in range(p.shape[1]):
            q = float(p[b, c])
            if weights[b, c] > 0:
                y = float(targets[b, c])
                rated_sum += float(weights[b, c]) * -(y * math.log(q + 1e-5) + (1 - y) * math.log(1 - q + 1e-5))
                rated_count += 1
            if mined[b, c] > 0:
                mined_sum += float(mined[b, c]) * -math.log(1 - q + 1e-5)
                mined_count += 1
    if reduction == "bce_sum":
        return rated_sum / p.shape[0] + mined_sum / p.shape[0]
    return rated_sum / max(rated_count, 1) + mined_sum / max(mined_count, 1)


@pytest.mark.parametrize("reduction", ["bce_mean", "bce_sum"])
@pytest.mark.parametrize("with_mined", [False, True])
def test_rated_pair_loss_matches_the_formula(reduction, with_mined):
    p = torch.rand(4, V, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.98 + 0.01
    targets, weights = _labels()
    mined = torch.zeros(4, V)
    if with_mined:
        mined[1, 4] = mined[2, 5] = 0.5
    got = rated_pair_loss(p, torch.stack([targets, weights, mined], dim=1), reduction)
    assert float(got) == pytest.approx(_reference_loss(p, targets, weights, mined, reduction), rel=1e-9)


def test_unrated_pairs_get_no_gradient_by_default():
    p = torch.rand(4, V, generator=torch.Generator().manual_seed(0)).requires_grad_()
    targets, weights = _labels()
    rated_pair_loss(p, torch.stack([targets, weights, torch.zeros(4, V)], dim=1)).backward()
    assert (p.grad[weights == 0] == 0).all()
    assert (p.grad[weights > 0] != 0).all()
    # even an unrated probability of exactly 0 or 1 (an infinite BCE) leaves the loss and gradient finite
    q = p.detach().clone()
    q[weights == 0] = 1.0
    q.requires_grad_()
    loss = rated_pair_loss(q, torch.stack([targets, weights, torch.zeros(4, V)], dim=1))
    loss.backward()
    assert torch.isfinite(loss) and (q.grad[weights == 0] == 0).all()


def test_unrated_targets_do_not_change_the_loss_of_a_model():
    model = SegmentClassifier(_config("context_ignoring", _video_model())).train()
    segment, mask, _, _ = _inputs()
    targets, weights = _labels()
    output = model(segment, mask)
    noisy = torch.where(weights > 0, targets, torch.randint(0, 2, targets.shape).float())  # garbage off the ratings
    clean_loss = model.loss(output, torch.stack([targets, weights, torch.zeros_like(targets)], dim=1))
    noisy_loss = model.loss(output, torch.stack([noisy, weights, torch.zeros_like(targets)], dim=1))
    assert float(clean_loss.detach()) == float(noisy_loss.detach())


def test_context_ignoring_model_starts_as_the_video_model():
    video = _video_model().eval()
    model = SegmentClassifier(_config("context_ignoring", video))
    model.load_video_weights(video)
    model.eval()
    segment, mask, whole, whole_mask = _inputs()
    assert torch.equal(model(segment, mask), video(segment, mask))
    assert torch.equal(model(segment, mask, whole, whole_mask), video(segment, mask))  # the video is ignored
    assert not SegmentClassifier.needs_video_context and ContextAwareSegmentClassifier.needs_video_context


def test_context_aware_video_encoder_is_frozen_and_segment_encoder_learns_at_half_rate():
    video = _video_model()
    model = ContextAwareSegmentClassifier(_config("context_aware", video, dropout=0.0))
    model.load_video_weights(video)
    model.train()
    assert not model.video_encoder.training and model.segment_encoder.training
    assert not any(p.requires_grad for p in model.video_encoder.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr = 1e-3
    step = TrainStep(model, precision="fp32", device=torch.device("cpu"), learning_rate=lr, clip_mode="none",
                     loss="bce_mean", regularization_penalty=0.0)
    segment, mask, whole, whole_mask = _inputs()
    targets, weights = _labels()
    labels = torch.stack([targets, weights, torch.zeros_like(targets)], dim=1)
    step(segment, mask, labels, lr, inputs={"video_frames": whole, "video_mask": whole_mask})
    after = model.state_dict()
    for name, value in before.items():  # parameters and BN statistics of the video encoder unchanged
        if name.startswith("video_encoder."):
            assert torch.equal(value, after[name]), name
    scales = sorted(group["lr"] for group in step.optimizer.param_groups)
    assert scales == pytest.approx([lr * 0.5, lr])
    # Adam's first step moves each weight by about lr · sign(gradient): the segment encoder by lr / 2
    parameters = {name for name, _ in model.segment_encoder.named_parameters(prefix="segment_encoder")}
    moved_segment = max(float((after[k] - before[k]).abs().max()) for k in parameters)
    moved_head = float((after["fc.weight"] - before["fc.weight"]).abs().max())
    assert moved_segment == pytest.approx(lr * 0.5, rel=0.05) and moved_head == pytest.approx(lr, rel=0.05)


def test_context_aware_model_needs_the_video():
    model = ContextAwareSegmentClassifier(_config("context_aware", _video_model())).eval()
    segment, mask, whole, whole_mask = _inputs()
    with pytest.raises(ValueError, match="needs the whole video"):
        model(segment, mask)
    out = model(segment, mask, whole, whole_mask)
    assert out.shape == (4, V) and ((out > 0) & (out < 1)).all()


def test_average_is_the_mean_of_its_members():
    video = _video_model()
    ignoring = SegmentClassifier(_config("context_ignoring", video)).eval()
    aware = ContextAwareSegmentClassifier(_config("context_aware", video)).eval()
    average = AveragedSegmentClassifier.of([ignoring, aware]).eval()
    segment, mask, whole, whole_mask = _inputs()
    expected = (ignoring(segment, mask) + aware(segment, mask, whole, whole_mask)) / 2
    assert torch.allclose(average(segment, mask, whole, whole_mask), expected, atol=1e-7)
    assert average.needs_video_context


@pytest.mark.parametrize("kind", ["context_ignoring", "context_aware", "average"])
def test_load_model_rebuilds_segment_models(tmp_path, kind):
    video = _video_model()
    if kind == "average":
        members = [SegmentClassifier(_config("context_ignoring", video)),
                   ContextAwareSegmentClassifier(_config("context_aware", video))]
        model = AveragedSegmentClassifier.of(members)
    else:
        model = segment_model_from_config(_config(kind, video))
    model.eval()
    path = str(tmp_path / "m.safetensors")
    save_weights(path, model.state_dict(), {"model_config": model.config.to_dict(), "num_classes": V})
    loaded, _ = load_model(path)
    segment, mask, whole, whole_mask = _inputs()
    assert type(loaded) is type(model)
    assert torch.equal(loaded(segment, mask, whole, whole_mask), model(segment, mask, whole, whole_mask))


def test_segment_config_is_strict():
    from videopool.core.schema import ConfigError

    video = _video_model().config.to_dict()
    with pytest.raises(ConfigError, match="fc_sise.*did you mean 'fc_size'"):
        SegmentModelConfig.from_dict({"segment_model": "context_aware", "video": video, "fc_sise": 3})
    with pytest.raises(ConfigError, match="segment_model"):
        SegmentModelConfig.from_dict({"segment_model": "context_awake", "video": video})
    with pytest.raises(ConfigError, match="at least 2 members"):
        SegmentModelConfig.from_dict({"segment_model": "average", "members": []})


def test_precise_batch_norm_leaves_the_frozen_video_encoder_alone():
    from videopool.training.batch_norm import recompute_batch_norm

    video = _video_model()
    model = ContextAwareSegmentClassifier(_config("context_aware", video))
    model.load_video_weights(video)
    frozen = {k: v.clone() for k, v in model.video_encoder.state_dict().items()}
    trained = {k: v.clone() for k, v in model.segment_encoder.state_dict().items() if "running_mean" in k}
    segment, mask, whole, whole_mask = _inputs()
    recompute_batch_norm(model, [0, 1], lambda _: model(segment, mask, whole, whole_mask))
    assert all(torch.equal(v, model.video_encoder.state_dict()[k]) for k, v in frozen.items())
    assert trained and any(not torch.equal(v, model.segment_encoder.state_dict()[k]) for k, v in trained.items())
