"""EnsembleClassifier: the weighted mean of its members' probabilities, each member on its own modalities and frame
count (checked against a per-video loop over videopool.data.sampling's uniform strategy), its config as strict
data, the save/load round trip, and torch.export with free batch size and frame count."""

import numpy as np
import pytest
import torch

from tests.export_check import assert_exports_like_the_model
from videopool.core.schema import ConfigError
from videopool.data.sampling import uniform_frame_indices
from videopool.models import create_model, load_model, save_weights
from videopool.models.ensemble import (EnsembleClassifier, EnsembleConfig, EnsembleMember, ensemble_from_checkpoints,
                                       uniform_subsample)

V = 7


def _members():
    torch.manual_seed(0)
    vlad = create_model("gated_netvlad_256_small", num_classes=V, cluster_size=4, **{"hidden.size": 8})
    average = create_model("avgpool_logistic", num_classes=V)
    rgb_only = create_model("avgpool_logistic", num_classes=V, modalities={"rgb": 1024})
    return [m.eval() for m in (vlad, average, rgb_only)]


def _ensemble(models, weights, counts):
    config = EnsembleConfig([EnsembleMember(m.config, w, c) for m, w, c in zip(models, weights, counts)])
    ensemble = EnsembleClassifier(config).eval()
    for target, model in zip(ensemble.members, models):
        target.load_state_dict(model.state_dict())
    return ensemble


def _batch(lengths, frames=9, seed=1):
    generator = torch.Generator().manual_seed(seed)
    inputs = {"rgb": torch.randn(len(lengths), frames, 1024, generator=generator),
              "audio": torch.randn(len(lengths), frames, 128, generator=generator)}
    mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
    return inputs, mask


def _uniform_reference(inputs, mask, count):
    """Each video alone: its real frames, then data.sampling's uniform indices floor(i * T / count)."""
    out = {name: torch.zeros(x.shape[0], count, x.shape[2]) for name, x in inputs.items()}
    for b in range(mask.shape[0]):
        real = mask[b].nonzero().flatten()
        if len(real) == 0:
            continue
        picked = real[torch.from_numpy(uniform_frame_indices(len(real), count))]
        for name, x in inputs.items():
            out[name][b] = x[b, picked]
    return out, mask.any(dim=1, keepdim=True).expand(-1, count)


def test_output_is_the_weighted_mean_of_the_members():
    models = _members()
    ensemble = _ensemble(models, [2.0, 1.0, 3.0], [None, None, None])
    inputs, mask = _batch([9, 4, 1])
    with torch.no_grad():
        expected = (2 * models[0](inputs, mask) + models[1](inputs, mask) + 3 * models[2](inputs, mask)) / 6
        torch.testing.assert_close(ensemble(inputs, mask), expected, rtol=0, atol=1e-7)


def test_one_member_ensemble_is_the_member():
    model = _members()[0]
    inputs, mask = _batch([9, 3])
    with torch.no_grad():
        torch.testing.assert_close(_ensemble([model], [5.0], [None])(inputs, mask), model(inputs, mask),
                                   rtol=0, atol=0)


def test_uniform_subsample_matches_the_loaders_uniform_strategy_per_video():
    inputs, mask = _batch([9, 4, 0, 1])
    mask[0, 2] = False  # real frames need not be a prefix
    for count in (3, 4, 12):
        picked, picked_mask = uniform_subsample(inputs, mask, count)
        expected, expected_mask = _uniform_reference(inputs, mask, count)
        assert torch.equal(picked_mask, expected_mask)
        for name in inputs:  # the empty video's slots are masked; compare only real ones
            assert torch.equal(picked[name][picked_mask], expected[name][expected_mask])


def test_members_with_different_frame_counts_each_see_their_own_uniform_subsample():
    models = _members()
    ensemble = _ensemble(models, [1.0, 1.0, 1.0], [3, 5, None])
    inputs, mask = _batch([9, 4, 2])
    with torch.no_grad():
        own = [_uniform_reference(inputs, mask, 3), _uniform_reference(inputs, mask, 5), (inputs, mask)]
        expected = sum(model(*seen) for model, seen in zip(models, own)) / 3
        torch.testing.assert_close(ensemble(inputs, mask), expected, rtol=0, atol=1e-6)
        # a video's score does not depend on the batch it is in (padding to the batch's longest video included)
        alone = ensemble({name: x[1:2, :4] for name, x in inputs.items()}, mask[1:2, :4])
        torch.testing.assert_close(alone, ensemble(inputs, mask)[1:2], rtol=0, atol=1e-6)


def test_config_round_trips_and_is_strict():
    models = _members()
    config = EnsembleConfig([EnsembleMember(m.config, 1.0, 4, f"run{i}") for i, m in enumerate(models)])
    data = config.to_dict()
    assert data["modalities"] == {"rgb": 1024, "audio": 128} and data["num_classes"] == V
    assert EnsembleConfig.from_dict(data).to_dict() == data
    with pytest.raises(ConfigError, match="members\\[0\\].wieght"):
        EnsembleConfig.from_dict({**data, "members": [{**data["members"][0], "wieght": 2}]})
    with pytest.raises(ConfigError, match="weight must be a positive"):
        EnsembleConfig.from_dict({**data, "members": [{**data["members"][0], "weight": 0}]})
    other = create_model("avgpool_logistic", num_classes=V + 1).config
    with pytest.raises(ConfigError, match="different numbers of classes"):
        EnsembleConfig([EnsembleMember(models[0].config), EnsembleMember(other)])
    with pytest.raises(ConfigError, match="modalities"):
        EnsembleConfig.from_dict({**data, "modalities": {"rgb": 1024}})


def test_saved_ensemble_loads_back_and_scores_the_same(tmp_path):
    models = _members()
    paths = []
    for i, model in enumerate(models):
        paths.append(str(tmp_path / f"m{i}.safetensors"))
        save_weights(paths[-1], model.state_dict(), {"model_config": model.config.to_dict(), "num_classes": V,
                                                     "train_config": {"num_frames": 3 + i,
                                                                      "frame_selection": "random"}})
    assert ensemble_from_checkpoints(paths)[0].frame_counts == [None, None, None]  # every frame by default
    ensemble, infos = ensemble_from_checkpoints(paths, [1.0, 2.0, 1.0], "trained")
    assert ensemble.frame_counts == [3, 4, 5]  # each run's own training count
    out = tmp_path / "ensemble.safetensors"
    save_weights(str(out), ensemble.state_dict(), {"model_config": ensemble.config.to_dict(), "num_classes": V})
    loaded, info = load_model(str(out))
    assert isinstance(loaded, EnsembleClassifier) and loaded.config.to_dict() == ensemble.config.to_dict()
    inputs, mask = _batch([9, 6])
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs, mask), ensemble(inputs, mask), rtol=0, atol=0)
        expected = (models[0](*_uniform_reference(inputs, mask, 3)) + 2 * models[1](*_uniform_reference(
            inputs, mask, 4)) + models[2](*_uniform_reference(inputs, mask, 5))) / 4
        torch.testing.assert_close(loaded(inputs, mask), expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # a torch.export trace of three members: 20 s measured on the shared (loaded) 2-core machine
def test_ensemble_exports_with_free_batch_and_frame_count(tmp_path):
    ensemble = _ensemble(_members(), [1.0, 2.0, 1.0], [3, None, 5])
    metadata = assert_exports_like_the_model(ensemble, tmp_path, shapes=((3, 6), (2, 11), (4, 2)))
    assert metadata["modalities"] == {"rgb": 1024, "audio": 128}


def test_training_forward_gives_member_probabilities_for_the_loss():
    models = _members()[:2]
    ensemble = _ensemble(models, [1.0, 1.0], [None, 4]).train()
    inputs, mask = _batch([9, 5, 3])
    output = ensemble(inputs, mask)
    assert output.aux["member_probabilities"].shape == (3, 2, V)
    labels = torch.from_numpy(np.eye(V, dtype=np.float32)[[0, 1, 2]])
    loss = ensemble.loss(output, labels, "bce_sum")
    loss.backward()
    assert all(p.grad is not None for p in ensemble.members[1].parameters() if p.requires_grad)
