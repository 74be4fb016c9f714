"""The model-defined loss hook of ``TrainStep`` (docs/architecture.md, "Models"): a model with ``loss(output,
labels, reduction)`` is trained on that loss (plus ``regularization_loss()``), a model without one exactly as
before, in fp32, under bf16 autocast with master weights, and through ``DistributedDataParallel``."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from videopool.models import ModelOutput, binary_cross_entropy_on_probabilities, create_model
from videopool.training.optim import clip_gradients, create_adam
from videopool.training.step import TrainStep, prepare_bf16

CPU = torch.device("cpu")
MIXTURE = ("mix_nextvlad_3x_k112_g8_small", {"cluster_size": 4, "hidden.size": 16, "gating.reduction": 4,
                                              "num_classes": 5})


class _CustomLoss(nn.Module):
    """Returns a ModelOutput in training mode and defines a loss that is no BCE at all."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1024, 5) * 0.05)
        self.reductions: list[str] = []

    def forward(self, frames, mask=None):
        scores = frames["rgb"].mean(1) @ self.weight
        probabilities = torch.sigmoid(scores)
        return ModelOutput(probabilities, {"scores": scores}) if self.training else probabilities

    def loss(self, output, labels, reduction):
        self.reductions.append(reduction)
        return 7.0 * (output.aux["scores"].float() - labels).square().mean()

    def regularization_loss(self):
        return 0.5 * self.weight.square().sum()


def _batch(seed=0, batch=4, classes=5):
    generator = torch.Generator().manual_seed(seed)
    frames = {"rgb": torch.randn(batch, 6, 1024, generator=generator),
              "audio": torch.randn(batch, 6, 128, generator=generator)}
    mask = torch.arange(6)[None] < torch.tensor([6, 3, 5, 1][:batch])[:, None]
    labels = (torch.rand(batch, classes, generator=generator) > 0.6).float()
    return frames, mask, labels


def _manual_step(model, loss_fn, frames, mask, labels, penalty, lr=0.1):
    """The step written out: forward, loss + penalty · regularization, backward, per-tensor clipping, Adam."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = create_adam(params, lr)
    loss = loss_fn(model(frames, mask), labels) + penalty * model.regularization_loss()
    loss.backward()
    clip_gradients(params, 1.0, "per_tensor")
    optimizer.step()
    return loss.detach()


def test_train_step_uses_the_model_loss():
    torch.manual_seed(0)
    model = _CustomLoss().train()
    reference = copy.deepcopy(model)
    frames, mask, labels = _batch()
    step = TrainStep(model, precision="fp32", device=CPU, learning_rate=0.1, loss="bce_mean",
                     regularization_penalty=0.25)
    got = step(frames, mask, labels)
    assert model.reductions == ["bce_mean"]  # the configured reduction is handed to the model
    expected = _manual_step(reference, lambda out, y: reference.loss(out, y, "bce_mean"), frames, mask, labels, 0.25)
    assert torch.equal(got, expected)
    assert torch.equal(model.weight, reference.weight)


def test_a_model_without_a_loss_trains_exactly_as_before():
    torch.manual_seed(0)
    model = create_model("gated_netvlad_256_small", num_classes=5, cluster_size=2, **{"hidden.size": 8}).train()
    reference = copy.deepcopy(model)
    frames, mask, labels = _batch(1)
    step = TrainStep(model, precision="fp32", device=CPU, learning_rate=0.1, loss="bce_sum")
    assert step.model_loss is None
    torch.manual_seed(5)  # the same dropout masks, if any
    got = step(frames, mask, labels)
    torch.manual_seed(5)
    expected = _manual_step(reference, lambda p, y: binary_cross_entropy_on_probabilities(p, y, "bce_sum"),
                            frames, mask, labels, 1.0)
    assert torch.equal(got, expected)
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_mixture_trains_through_the_hook_in_fp32_and_bf16():
    name, settings = MIXTURE
    frames, mask, labels = _batch(2)
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = create_model(name, **settings).train()
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        master = prepare_bf16(model, precision, "master_weights", min_numel=4096)
        assert (master is not None) == (precision == "bf16")
        step = TrainStep(model, precision=precision, device=CPU, learning_rate=1e-3, master=master, loss="bce_sum")
        torch.manual_seed(1)  # the same dropout masks in both forwards
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            output = model(frames, mask)
            expected = model.loss(output, labels, "bce_sum") + model.regularization_loss()
        torch.manual_seed(1)
        losses = [step(frames, mask, labels) for _ in range(3)]
        assert losses[0].dtype == torch.float32 and all(torch.isfinite(loss) for loss in losses)
        # the first step's loss is the mixture's (3 branch BCEs + mixed BCE + λ·KL), not a plain BCE
        torch.testing.assert_close(losses[0], expected.float(), rtol=2e-2 if precision == "bf16" else 1e-6, atol=0)
        assert losses[-1] < losses[0]
        weights = step.state_dict_fp32()
        assert all(not torch.equal(weights[k], before[k]) for k in ("gate_weight", "branches.2.classifier.weight"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    name, settings = MIXTURE
    torch.manual_seed(0)  # identical initial replicas
    model = create_model(name, **settings).train()
    module = nn.parallel.DistributedDataParallel(model)
    step = TrainStep(module, precision="fp32", device=CPU, learning_rate=1e-3, loss="bce_sum")
    assert step.model is model and step.model_loss is not None
    losses = [float(step(*_batch(10 * rank + i))) for i in range(2)]  # each rank its own data
    torch.save({"params": dict(model.named_parameters()), "losses": losses}, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_mixture_trains_through_distributed_data_parallel(tmp_path):
    for attempt in range(3):
        try:
            mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
            break
        except mp.ProcessRaisedException as err:
            if "address already in use" not in str(err).lower() or attempt == 2:
                raise
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert states[0]["losses"] != states[1]["losses"]  # different data on the two ranks ...
    for key, value in states[0]["params"].items():  # ... and the same weights: the gradients were all-reduced
        assert torch.equal(value, states[1]["params"][key]), key
    torch.manual_seed(0)
    initial = create_model(MIXTURE[0], **MIXTURE[1]).gate_weight
    assert not torch.equal(states[0]["params"]["gate_weight"], initial)


@pytest.mark.parametrize("reduction", ["bce_sum", "bce_mean"])
def test_plain_bce_path_is_the_probability_bce(reduction):
    """A model without ``loss``: the step's loss is the BCE on its probabilities plus the regularization."""
    torch.manual_seed(0)
    model = create_model("avgpool_logistic_small", num_classes=5).train()
    frames, mask, labels = _batch(3)
    with torch.no_grad():
        expected = binary_cross_entropy_on_probabilities(model(frames, mask), labels, reduction)
        expected = expected + model.regularization_loss()
    step = TrainStep(model, precision="fp32", device=CPU, learning_rate=0.0, loss=reduction)
    assert torch.equal(step(frames, mask, labels), expected)
