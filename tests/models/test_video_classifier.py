"""VideoClassifier assembly: frame L2 over the concatenated modalities, early/late fusion, hidden layer, modalities."""

import math

import pytest
import torch

from videopool.layers import GatedSoftDBoW, SoftDBoW
from videopool.models import ConfigError, ModelConfig, VideoClassifier, create_model
from videopool.layers import HiddenLayer


def _config(**sections):
    return ModelConfig.from_dict({"num_classes": 4, "modalities": {"rgb": 3, "audio": 2}, **sections})


def test_average_logistic_matches_a_loop_reference_with_joint_frame_l2():
    config = _config(input_batch_norm=False, pooling={"type": "average"}, classifier={"type": "logistic"})
    model = VideoClassifier(config).double().eval()
    generator = torch.Generator().manual_seed(0)
    frames = {"rgb": torch.randn(2, 4, 3, generator=generator, dtype=torch.float64),
              "audio": torch.randn(2, 4, 2, generator=generator, dtype=torch.float64)}  # fmt: skip
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    head = model.classifier
    expected = torch.zeros(2, 4, dtype=torch.float64)
    for b in range(2):
        real = [n for n in range(4) if mask[b, n]]
        pooled = [0.0] * 5
        for n in real:
            joint = list(frames["rgb"][b, n].tolist()) + list(frames["audio"][b, n].tolist())
            norm = math.sqrt(sum(v * v for v in joint))  # one norm over all 5 dims, not per modality
            for d in range(5):
                pooled[d] += joint[d] / norm / len(real)
        for c in range(4):
            logit = sum(pooled[d] * head.weight[d, c].item() for d in range(5)) + head.bias[c].item()
            expected[b, c] = 1 / (1 + math.exp(-logit))
    torch.testing.assert_close(model(frames, mask), expected, rtol=1e-12, atol=1e-12)


def test_late_pipeline_runs_its_parts_in_order():
    config = _config(
        pooling={"type": "netvlad", "cluster_size": 4, "cluster_size_divisor": {"audio": 2}},
        hidden={"size": 6, "batch_norm": True, "activation": "relu6", "init": "willow"},
        gating={"type": "context"},
        classifier={"type": "moe", "num_mixtures": 2, "prob_gating": True},
    )
    torch.manual_seed(0)
    model = VideoClassifier(config).eval()
    assert model.poolings["rgb"].pooling.cluster_size == 4 and model.poolings["audio"].pooling.cluster_size == 2
    frames = {"rgb": torch.randn(3, 5, 3), "audio": torch.randn(3, 5, 2)}
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 3:] = False
    norm = torch.cat(list(frames.values()), -1).norm(dim=-1, keepdim=True)
    normalized = {name: model.poolings[name].input_norm(value / norm, mask) for name, value in frames.items()}
    pooled = torch.cat([model.poolings[name].pooling(value, mask) for name, value in normalized.items()], 1)
    expected = model.classifier(model.gating(model.hidden(pooled)))
    torch.testing.assert_close(model(frames, mask), expected)


def test_early_concat_pools_the_concatenated_frames_once():
    config = _config(input_batch_norm=False, fusion={"stage": "early"}, pooling={"type": "netrvlad", "cluster_size": 3})
    model = VideoClassifier(config).eval()
    assert list(model.poolings) == ["rgb_audio"] and model.fusion.output_size == model.poolings["rgb_audio"].output_size
    assert model.poolings["rgb_audio"].feature_size == 5
    frames = {"rgb": torch.randn(2, 4, 3), "audio": torch.randn(2, 4, 2)}
    joint = torch.cat([frames["rgb"], frames["audio"]], -1)
    expected = model.classifier(model.poolings["rgb_audio"].pooling(joint / joint.norm(dim=-1, keepdim=True)))
    torch.testing.assert_close(model(frames), expected)


def test_hidden_layer_matches_formula():
    torch.manual_seed(0)
    layer = HiddenLayer(4, 3, bias=True, batch_norm=True, activation="sigmoid").double().eval()
    with torch.no_grad():
        layer.bias.normal_()
        layer.batch_norm.running_mean.normal_()
        layer.batch_norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, dtype=torch.float64)
    bn = layer.batch_norm
    expected = torch.zeros(2, 3, dtype=torch.float64)
    for b in range(2):
        for j in range(3):
            value = sum(x[b, i].item() * layer.weight[i, j].item() for i in range(4)) + layer.bias[j].item()
            value = (value - bn.running_mean[j].item()) / math.sqrt(bn.running_var[j].item() + 1e-3)
            value = value * bn.weight[j].item() + bn.bias[j].item()
            expected[b, j] = 1 / (1 + math.exp(-value))
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_willow_hidden_init_uses_the_cluster_count():
    torch.manual_seed(0)
    model = create_model("netvlad_128_small", num_classes=3)  # K = 16
    assert tuple(model.hidden.weight.shape) == (1024 * 16 + 128 * 8, 256)  # TF layout [dim, H]
    assert model.hidden.weight.std().item() == pytest.approx(1 / math.sqrt(16), rel=0.02)
    assert model.hidden.bias.std().item() == pytest.approx(0.01, rel=0.2)
    assert model.hidden.batch_norm is None and isinstance(model.hidden.activation, torch.nn.Identity)  # spec P6


def test_per_modality_pooling_override():
    model = create_model("gated_soft_dbow_4096_small", num_classes=3)
    rgb, audio = model.poolings["rgb"].pooling, model.poolings["audio"].pooling
    assert isinstance(rgb, GatedSoftDBoW) and rgb.cluster_size == 32
    assert isinstance(audio, SoftDBoW) and not isinstance(audio, GatedSoftDBoW)
    assert audio.cluster_size == 4  # K/8


def test_dropping_a_modality_is_a_config_change():
    # the audio divisor goes with the audio modality (docs/custom-features.md); naming it explicitly is an error
    with pytest.raises(ConfigError, match="cluster_size_divisor names modality 'audio'"):
        create_model("gated_netvlad_256_small", modalities={"rgb": 1024}, cluster_size_divisor={"audio": 2})
    model = create_model("gated_netvlad_256_small", num_classes=3, modalities={"rgb": 1024})
    assert model.config.pooling.cluster_size_divisor == {}
    assert list(model.poolings) == ["rgb"]
    frames = {"rgb": torch.randn(2, 4, 1024), "audio": torch.randn(2, 4, 128)}
    assert model(frames).shape == (2, 3)  # extra modalities in the batch are ignored
    with pytest.raises(KeyError, match=r"\['rgb'\] are missing"):
        model({"audio": frames["audio"]})
    with pytest.raises(ValueError, match=r"frames\['rgb'\] must be \[B, N, 1024\]"):
        model({"rgb": torch.randn(2, 4, 1000)})


def test_regularization_loss_is_the_classifiers():
    model = create_model("gated_netvlad_256_small", num_classes=5)
    head = model.classifier
    expected = 0.5 * 1e-6 * (head.gate_weight.pow(2).sum() + head.expert_weight.pow(2).sum())
    torch.testing.assert_close(model.regularization_loss(), expected)


def test_pooling_rejecting_its_settings_names_the_modality():
    with pytest.raises(TypeError, match="pooling 'average' for 'rgb'"):
        VideoClassifier(_config(pooling={"type": "average", "cluster_size": 4}))


FOLDING = ["gated_netvlad_256_small", "gated_netrvlad_256_small", "soft_dbow_4096_small",
           "gated_soft_dbow_4096_small", "mfb_netvlad_mfb_small", "netvlad_256_early_small"]


def _folds(model, frames=None):
    """Whether every modality's pooling takes its input normalisation folded in (for these frames)."""
    scale = torch.ones(1) if model.l2_normalize_frames else None
    return all(p.can_fold(None if frames is None or name not in frames else frames[name], scale)
               for name, p in model.poolings.items())


def _never_fold(model, monkeypatch):
    for pooling in model.poolings.values():
        monkeypatch.setattr(pooling, "can_fold", lambda frames=None, frame_scale=None: False)


def _trained_statistics_model(name):
    """A float64 small twin whose BNs hold non-trivial running statistics, in eval mode."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=6).double().train()
    with torch.no_grad():
        for _ in range(3):
            model({m: torch.randn(4, 9, d, dtype=torch.float64) * 2 + 0.5 for m, d in model.config.modalities.items()})
    return model.eval()


@pytest.mark.parametrize("name", FOLDING)
def test_eval_folds_the_input_normalization_into_the_pooling_without_changing_the_output(name, monkeypatch):
    model = _trained_statistics_model(name)
    assert _folds(model)
    generator = torch.Generator().manual_seed(1)
    frames = {m: torch.randn(3, 8, d, generator=generator, dtype=torch.float64) for m, d in model.modalities.items()}
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[0, 5:] = False
    mask[2, 1:] = False
    padded = {m: torch.where(mask.unsqueeze(-1), value, float("nan")) for m, value in frames.items()}
    with torch.no_grad():
        folded = model(frames, mask)
        folded_nan_padding = model(padded, mask)
        folded_unmasked = model(frames)
        _never_fold(model, monkeypatch)
        unfolded = model(frames, mask)
        unfolded_unmasked = model(frames)
    torch.testing.assert_close(folded, unfolded, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(folded_nan_padding, unfolded, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(folded_unmasked, unfolded_unmasked, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["netfv_128_small", "mfb_dbof_concat_small", "avgpool_moe_cg_small"])
def test_poolings_that_need_the_normalized_frames_are_not_folded(name):
    assert not _folds(create_model(name, num_classes=6).eval())


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["gated_netvlad_256_small", "soft_dbow_4096_small"])
def test_training_folds_the_input_batch_norm_with_the_same_outputs_gradients_and_statistics(name, monkeypatch):
    """In training the input BN's batch statistics need no gradient (frames are data), so BN + per-frame L2 fold
    into the pooling as well: same probabilities, same gradient for every parameter, same running statistics."""
    generator = torch.Generator().manual_seed(2)
    frames = None
    results = []
    for fold in (True, False):
        model = _trained_statistics_model(name).train()
        if frames is None:
            frames = {m: torch.randn(4, 9, d, generator=generator, dtype=torch.float64) * 1.5 + 0.3
                      for m, d in model.modalities.items()}
            mask = torch.ones(4, 9, dtype=torch.bool)
            mask[1, 6:] = False
            mask[3, 2:] = False
            frames = {m: torch.where(mask.unsqueeze(-1), value, float("nan")) for m, value in frames.items()}
        assert _folds(model, frames)
        if not fold:
            _never_fold(model, monkeypatch)
        probabilities = model(frames, mask)
        (probabilities * torch.linspace(0.5, 2.0, probabilities.shape[1], dtype=torch.float64)).sum().backward()
        buffers = {k: v.clone() for k, v in model.named_buffers() if "running" in k}
        results.append((probabilities.detach(), _grads(model), buffers))
    (p_fold, g_fold, b_fold), (p_eager, g_eager, b_eager) = results
    torch.testing.assert_close(p_fold, p_eager, rtol=1e-10, atol=1e-12)
    assert g_fold.keys() == g_eager.keys() and any(".input_norm." in k for k in g_fold)
    for key in g_eager:
        torch.testing.assert_close(g_fold[key], g_eager[key], rtol=1e-8, atol=1e-12, msg=key)
    for key in b_eager:
        torch.testing.assert_close(b_fold[key], b_eager[key], rtol=1e-10, atol=1e-12, msg=key)


def test_frames_that_need_gradients_are_not_folded_in_training():
    model = create_model("gated_netvlad_256_small", num_classes=6).train()
    frames = {m: torch.randn(2, 5, d) for m, d in model.modalities.items()}
    assert _folds(model, frames)
    frames["rgb"].requires_grad_(True)
    assert not _folds(model, frames)
    model(frames).sum().backward()
    assert frames["rgb"].grad is not None and frames["rgb"].grad.abs().sum() > 0
    assert _folds(model.eval(), frames)  # running statistics: a fixed map either way


def _legacy_state_dict(model):
    """The state dict as videopool 0.1 named it: ``input_norms.<m>.*`` beside ``poolings.<m>.*``."""
    state = {}
    for key, value in model.state_dict().items():
        if ".input_norm." in key:
            name, field = key[len("poolings."):].split(".input_norm.")
            if model.early_fusion:  # 0.1 had one norm per modality; split the joined one back
                offset = 0
                for modality, size in model.modalities.items():
                    part = value if field == "num_batches_tracked" else value[offset : offset + size]
                    state[f"input_norms.{modality}.{field}"] = part.clone()
                    offset += size
                continue
            state[f"input_norms.{name}.{field}"] = value
        else:
            state[key.replace(".pooling.", ".", 1)] = value
    return state


@pytest.mark.parametrize("name", ["gated_netvlad_256_small", "netvlad_256_early_small"])
def test_checkpoints_of_the_previous_layout_still_load(name):
    trained = _trained_statistics_model(name)
    legacy = _legacy_state_dict(trained)
    assert any(key.startswith("input_norms.") for key in legacy)
    fresh = create_model(name, num_classes=6).double().eval()
    fresh.load_state_dict(legacy, strict=True)
    frames = {m: torch.randn(2, 5, d, dtype=torch.float64) for m, d in trained.modalities.items()}
    torch.testing.assert_close(fresh(frames), trained(frames), rtol=0, atol=0)
