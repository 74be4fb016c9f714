"""Padded frames never reach a result: whatever a padded frame holds (NaN, inf, 1e20), every named model gives
the probabilities of the same batch with zero padding, in eval and in training mode (and, for a model whose
training forward returns a ModelOutput, the same auxiliary tensors)."""

import pytest
import torch

from videopool.models import ModelOutput, create_model, list_models

GARBAGE = [float("nan"), float("inf"), -float("inf"), 1e20]


def _batch(model, generator):
    frames = {m: torch.randn(3, 6, d, generator=generator) for m, d in model.config.modalities.items()}
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, 1:] = False  # real frames first: the recurrent poolings need that
    return frames, mask


def _tensors(output):
    if isinstance(output, ModelOutput):
        return {"probabilities": output.probabilities, **output.aux}
    return {"probabilities": output}


def _assert_padding_is_ignored(model, training):
    model.train(training)
    frames, mask = _batch(model, torch.Generator().manual_seed(0))
    clean = {m: x.masked_fill(~mask.unsqueeze(-1), 0.0) for m, x in frames.items()}
    torch.manual_seed(1)  # the same dropout masks for every call
    expected = _tensors(model(clean, mask))
    assert all(torch.isfinite(value).all() for value in expected.values())
    for value in GARBAGE:
        dirty = {m: x.masked_fill(~mask.unsqueeze(-1), value) for m, x in frames.items()}
        torch.manual_seed(1)
        torch.testing.assert_close(_tensors(model(dirty, mask)), expected, msg=f"padding {value}")


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", list_models("*_small"))
def test_padding_values_never_reach_the_probabilities(name, training):
    torch.manual_seed(0)
    with torch.no_grad():
        _assert_padding_is_ignored(create_model(name, num_classes=5), training)


@pytest.mark.parametrize("name", ["netfv_128_small", "netvlad_256_early_small", "netfv_128_early_small"])
def test_padding_is_ignored_without_the_input_batch_norm(name):
    # Without the input BN no layer between the entrance and the pooling zeroes the padding: the entrance must.
    torch.manual_seed(0)
    with torch.no_grad():
        for training in (False, True):
            _assert_padding_is_ignored(create_model(name, num_classes=5, input_batch_norm=False), training)
