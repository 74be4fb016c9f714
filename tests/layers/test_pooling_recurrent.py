"""LSTM / GRU pooling: final states of the real frames vs a step-by-step loop reference, layouts and counts."""

import numpy as np
import pytest
import torch

from tests.layers import reference as ref
from videopool.layers import GRUPooling, LSTMPooling

LENGTHS = [4, 1, 6]
DIMS, HIDDEN, LAYERS = 5, 3, 2


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    videos = ref.random_videos(LENGTHS, DIMS, generator)
    return videos, *ref.pad_videos(videos, max(LENGTHS) + 2, generator)


def _randomize_biases(layer):
    # Non-zero trainable biases so the reference checks that they enter where TF puts them.
    with torch.no_grad():
        for name, parameter in layer.rnn.named_parameters():
            if name.startswith("bias"):
                parameter.normal_()


@pytest.mark.parametrize("output_states", ["all", "last_h"])
def test_lstm_matches_tf_cell_reference(output_states):
    torch.manual_seed(0)
    videos, frames, mask = _data()
    layer = LSTMPooling(DIMS, HIDDEN, LAYERS, output_states=output_states).double()
    _randomize_biases(layer)
    states = ref.lstm_states(videos, ref.params_of(layer), LAYERS, HIDDEN, forget_bias=1.0)
    if output_states == "all":
        expected = [np.concatenate([part for c, h in video for part in (c, h)]) for video in states]
    else:
        expected = [video[-1][1] for video in states]
    out = layer(frames, mask)
    assert out.shape == (len(LENGTHS), layer.output_size)
    np.testing.assert_allclose(out.detach().numpy(), np.stack(expected), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("output_states", ["all", "last_h"])
def test_gru_matches_reference(output_states):
    torch.manual_seed(1)
    videos, frames, mask = _data(1)
    layer = GRUPooling(DIMS, HIDDEN, LAYERS, output_states=output_states).double()
    _randomize_biases(layer)
    states = ref.gru_states(videos, ref.params_of(layer), LAYERS, HIDDEN)
    expected = [np.concatenate(video) if output_states == "all" else video[-1] for video in states]
    np.testing.assert_allclose(layer(frames, mask).detach().numpy(), np.stack(expected), rtol=1e-10, atol=1e-12)


def test_output_sizes_match_willow_and_gtf1():
    with torch.device("meta"):
        assert LSTMPooling(1152, 1024).output_size == 4096  # [c1, h1, c2, h2]
        assert GRUPooling(1152, 1200).output_size == 2400  # [h1, h2]
        assert LSTMPooling(1152, 1024, output_states="last_h").output_size == 1024


def test_trainable_parameter_counts_match_tf_cells():
    """spec §6.2: one bias vector per layer, like TF's BasicLSTMCell / GRUCell."""
    with torch.device("meta"):
        lstm, gru = LSTMPooling(1152, 1024), GRUPooling(1152, 1200)
    lstm_counts = {n: p.numel() for n, p in lstm.named_parameters()}
    gru_counts = {n: p.numel() for n, p in gru.named_parameters()}
    layer_sum = lambda counts, layer: sum(v for n, v in counts.items() if n.endswith(f"_l{layer}"))  # noqa: E731
    assert layer_sum(lstm_counts, 0) == 2176 * 4096 + 4096 == 8_916_992
    assert layer_sum(lstm_counts, 1) == 2048 * 4096 + 4096 == 8_392_704
    assert layer_sum(gru_counts, 0) == (1152 + 1200) * 3600 + 3600 == 8_470_800
    assert layer_sum(gru_counts, 1) == 2400 * 3600 + 3600 == 8_643_600
    assert not any("bias_hh" in name for name in lstm_counts)
    assert not any("bias_hh" in key for key in LSTMPooling(4, 3).state_dict())


def test_tf_bias_initialisation():
    torch.manual_seed(0)
    lstm, gru = LSTMPooling(4, 3), GRUPooling(4, 3)
    assert torch.equal(lstm.rnn.bias_ih_l0, torch.zeros(12))
    assert torch.equal(lstm.rnn.bias_hh_l0, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))  # forget slice
    assert torch.equal(gru.rnn.bias_ih_l1, torch.tensor([1.0] * 6 + [0.0] * 3))
    bound = (6 / (4 + 3 + 12)) ** 0.5
    assert lstm.rnn.weight_ih_l0.abs().max() <= bound and lstm.rnn.weight_hh_l0.abs().max() <= bound


@pytest.mark.parametrize("cls", [LSTMPooling, GRUPooling])
def test_padding_and_batching_do_not_change_a_video(cls):
    torch.manual_seed(2)
    videos, frames, mask = _data(2)
    layer = cls(DIMS, HIDDEN, LAYERS).double()
    batched = layer(frames, mask)
    for b, video in enumerate(videos):
        alone = layer(torch.from_numpy(video)[None])
        torch.testing.assert_close(batched[b], alone[0])


@pytest.mark.parametrize("cls", [LSTMPooling, GRUPooling])
def test_rejects_masks_with_holes_and_zeroes_empty_videos(cls):
    layer = cls(DIMS, HIDDEN, LAYERS)
    frames = torch.randn(2, 4, DIMS)
    with pytest.raises(ValueError, match="real frames first"):
        layer(frames, torch.tensor([[True, False, True, False], [True, True, True, True]]))
    out = layer(frames, torch.tensor([[False] * 4, [True, True, False, False]]))
    assert torch.equal(out[0], torch.zeros(layer.output_size))
    torch.testing.assert_close(out[1], layer(frames[1:, :2])[0])


def test_rejects_unknown_output_states():
    with pytest.raises(ValueError, match="output_states"):
        GRUPooling(4, 3, output_states="mean")
