"""Every registered configuration, in its small variant, runs forward and backward on a tiny padded batch."""

import pytest
import torch

from videopool.models import create_model, list_models, probabilities_of

SMALL_NAMES = list_models("*_small")
NUM_CLASSES = 20
LENGTHS = [7, 4, 2]  # real frames per video; the rest of the 7 rows is padding


def _batch(seed: int = 0, garbage: float = 0.0):
    generator = torch.Generator().manual_seed(seed)
    frames = {
        "rgb": torch.randn(3, 7, 1024, generator=generator),
        "audio": torch.randn(3, 7, 128, generator=generator),
    }
    mask = torch.arange(7).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)
    if garbage:
        for value in frames.values():
            value[~mask] = garbage
    return frames, mask


def test_registry_has_the_small_variants():
    assert len(SMALL_NAMES) >= 36


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_small_config_trains_and_ignores_padding(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES)
    frames, mask = _batch()

    probabilities = probabilities_of(model(frames, mask))  # a training forward may return a ModelOutput
    assert probabilities.shape == (3, NUM_CLASSES)
    assert torch.all((probabilities >= 0) & (probabilities <= 1))
    (probabilities.sum() + model.regularization_loss()).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name}: no gradient for {parameter_name}"
        assert torch.isfinite(parameter.grad).all(), f"{name}: non-finite gradient for {parameter_name}"
        assert parameter.grad.abs().sum() > 0, f"{name}: zero gradient for {parameter_name}"

    model.eval()
    with torch.no_grad():
        clean = model(frames, mask)
        noisy = model(*_batch(garbage=1e3))  # padding rows filled with large values
        torch.testing.assert_close(noisy, clean, rtol=1e-5, atol=1e-6)
        for index, length in enumerate(LENGTHS):  # a video alone, unpadded, gives the same scores
            alone = {key: value[index : index + 1, :length] for key, value in frames.items()}
            torch.testing.assert_close(model(alone)[0], clean[index], rtol=1e-4, atol=1e-5)
