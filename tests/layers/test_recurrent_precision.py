"""The LSTM/GRU recurrence runs in float32 inside bf16 models (issue 15): under CPU autocast, with bf16 master
weights on the recurrent matrices, and in a bf16 inference copy — checked on the tensors the ``nn.LSTM``/``nn.GRU``
module actually receives (a forward hook), and on the result against a float32 run of the same weights."""

import copy

import pytest
import torch

from videopool.inference.predict import bf16_copy
from videopool.layers.recurrent import GRUPooling, LSTMPooling
from videopool.training.optim import BF16MasterWeights

LAYERS = [LSTMPooling, GRUPooling]


def _inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(3, 40, 16, generator=generator)
    mask = torch.arange(40).unsqueeze(0) < torch.tensor([[40], [25], [7]])
    frames = frames * mask.unsqueeze(-1)
    return frames, mask


def _record_dtypes(pooling):
    seen = []

    def hook(module, args, _output):
        seen.append({args[0].data.dtype, *(w.dtype for w in module._flat_weights)})

    pooling.rnn.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("masked", [True, False])
def test_recurrence_is_float32_under_bf16_autocast(layer, masked):
    torch.manual_seed(0)
    pooling = layer(16, hidden_size=8, num_layers=2)
    frames, mask = _inputs()
    mask = mask if masked else None
    reference = pooling(frames, mask)
    seen = _record_dtypes(pooling)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pooling(frames, mask)
    # Without the guard an unpacked nn.LSTM runs the bf16 oneDNN kernel here (output and state bf16).
    assert seen == [{torch.float32}]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=0, atol=0)


@pytest.mark.parametrize("layer", LAYERS)
def test_bf16_master_weights_on_the_recurrent_matrices_still_recur_in_float32(layer):
    torch.manual_seed(0)
    pooling = layer(16, hidden_size=8, num_layers=2)
    frames, mask = _inputs()
    trained = copy.deepcopy(pooling)
    master = BF16MasterWeights(trained, min_numel=0)  # every matrix held in bf16, as the big twins' are
    assert trained.rnn.weight_hh_l0.dtype == torch.bfloat16
    seen = _record_dtypes(trained)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = trained(frames, mask)
    assert seen == [{torch.float32}]
    # The same computation in float32 from the bf16-rounded weights: only the weights' rounding differs.
    rounded = copy.deepcopy(pooling)
    with torch.no_grad():
        for name, p in rounded.rnn.named_parameters():
            if name.startswith("weight"):
                p.copy_(p.to(torch.bfloat16).float())
    torch.testing.assert_close(out, rounded(frames, mask), rtol=1e-6, atol=1e-6)
    out.square().sum().backward()  # gradients still reach the bf16 weights, and from there the fp32 masters
    master.gradients_to_masters()
    grads = [m.grad for name, m in master.names.items() if "weight_hh" in name]
    assert grads and all(g is not None and g.dtype == torch.float32 and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("layer", LAYERS)
def test_bf16_inference_copy_recurs_in_float32_and_returns_bf16(layer):
    torch.manual_seed(0)
    pooling = layer(16, hidden_size=8, num_layers=2).eval()
    frames, mask = _inputs()
    low = bf16_copy(pooling)
    seen = _record_dtypes(low)
    out = low(frames.to(torch.bfloat16), mask)
    assert seen == [{torch.float32}]
    assert out.dtype == torch.bfloat16  # the next (bf16) layer gets its own dtype
    torch.testing.assert_close(out.float(), pooling(frames, mask), rtol=0.02, atol=0.02)
