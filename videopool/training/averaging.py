"""Checkpoint averaging: one model whose weights are the mean of several checkpoints of one run.

Tang et al., "Non-local NetVLAD Encoding for Video Classification" (arXiv 1810.00207), §3.3, average the
parameters of several checkpoints of one training run ("linear model averaging", after Stochastic Weight
Averaging, Izmailov et al., arXiv 1803.05407) and gain 0.001-0.005 GAP@20 per model (their Table 2)::

    θ̄ = (1/K) · Σ_k θ_k                    every floating tensor, computed in float64

Batch-norm statistics are not parameters: the mean of K running means is not the statistics of the averaged
network's activations. By default they are recomputed (the plain average of the batch statistics of a few
training batches, as SWA's ``update_bn`` and :mod:`videopool.training.batch_norm` do); ``batch_norm="averaged"``
keeps the mean of the stored statistics instead. Integer buffers (``num_batches_tracked``) are the newest
checkpoint's.

The result is an ordinary checkpoint (model and training config inside), so ``evaluate``, ``predict``,
``export`` and :func:`videopool.models.load_model` read it like any other.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Mapping, Sequence

import torch

from videopool.core.errors import UserError
from videopool.core.files import link_atomically
from videopool.models import checkpoint as ckpt
from videopool.models.registry import model_from_config_dict
from videopool.training.batch_norm import batch_norm_layers, recompute_batch_norm

BN_MODES = ("recompute", "averaged")


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the floating tensors of ``states`` (summed in float64, returned in each tensor's
    own dtype); a non-floating tensor is taken from the last state. All states must have the same keys and
    shapes."""
    if not states:
        raise ValueError("no checkpoint to average")
    keys = list(states[-1])
    for index, state in enumerate(states):
        if set(state) != set(keys):
            missing, extra = sorted(set(keys) - set(state)), sorted(set(state) - set(keys))
            raise ValueError(f"checkpoint {index} has other tensors than the last one (missing {missing[:3]}, "
                             f"extra {extra[:3]})")
    averaged = {}
    for name in keys:
        last = states[-1][name]
        if not last.is_floating_point():
            averaged[name] = last.clone()
            continue
        total = torch.zeros(last.shape, dtype=torch.float64)
        for state in states:
            if state[name].shape != last.shape:
                raise ValueError(f"tensor {name!r} has shape {tuple(state[name].shape)} in one checkpoint and "
                                 f"{tuple(last.shape)} in another")
            total += state[name].to(torch.float64)
        averaged[name] = (total / len(states)).to(last.dtype)
    return averaged


def last_checkpoints(run_dir: str, count: int | None) -> list[str]:
    """The newest ``count`` step checkpoints of ``run_dir`` (all of them when ``count`` is None), oldest first."""
    folder = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist")
    found = ckpt.step_checkpoints(folder)
    if not found:
        raise UserError(f"{run_dir!r} holds no step checkpoints ({folder}/step-*.safetensors); give a training "
                        "run directory, or the files with --checkpoints")
    count = len(found) if count is None else count
    if count > len(found):
        steps = ", ".join(str(step) for step, _ in found)
        raise UserError(f"--last {count}: {run_dir!r} keeps only {len(found)} step checkpoint(s) (steps {steps}); "
                        f"use --last {len(found)} or fewer, or train with --set keep_checkpoints=0 (keep all)")
    return [path for _, path in found[-count:]]


def read_checkpoints(paths: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, torch.Tensor]]]:
    """``(infos, verified tensors)`` of ``paths``, refusing checkpoints of different models (a UserError that
    names the two files and the differing keys)."""
    infos = [ckpt.read_info(path) for path in paths]
    for path, info in zip(paths, infos):
        if "model_config" not in info:
            raise UserError(f"checkpoint {path!r} stores no model_config; it cannot be averaged")
    first = infos[0]
    for path, info in zip(paths[1:], infos[1:]):
        keys = sorted(set(first["model_config"]) | set(info["model_config"]))
        differ = [k for k in keys if first["model_config"].get(k) != info["model_config"].get(k)]
        if info.get("num_classes") != first.get("num_classes"):
            differ.append("num_classes")
        if differ:
            raise UserError(f"checkpoints {paths[0]!r} and {path!r} are of different models (they differ in "
                            f"{', '.join(differ)}); only checkpoints of one model configuration can be averaged")
    return infos, [ckpt.read_weights(path) for path in paths]


def bn_loader(info: Mapping[str, Any], data: Sequence[str] | None, batch_size: int | None = None,
              workers: int | None = None, device: str | torch.device = "cpu"):
    """Training batches for the recomputation: ``data`` when given, else the run's ``train_data``, with the run's
    frame selection, frame count, batch size and seed (shuffled, as in training)."""
    from videopool.data.loader import make_loader

    train = info.get("train_config") or {}
    patterns = list(data or train.get("train_data") or [])
    if not patterns:
        raise UserError("the checkpoint does not name its training data; pass --bn-data GLOB (training shards) "
                        "or --bn averaged")
    if not data:
        from videopool.data.loader import expand_patterns

        try:
            expand_patterns(patterns, "the run's train_data")
        except FileNotFoundError as err:
            raise UserError(f"{err}; pass --bn-data GLOB (training shards) or --bn averaged") from None
    return make_loader(patterns, num_classes=int(info["num_classes"]),
                       batch_size=batch_size or int(train.get("batch_size", 80)),
                       strategy=train.get("frame_selection", "random"), num_frames=int(train.get("num_frames", 300)),
                       shuffle=True, seed=int(train.get("seed", 0)), workers=workers, device=device,
                       what="--bn-data" if data else "the run's train_data",
                       features=(info.get("model_config") or {}).get("modalities"), trainable=False)


def recompute_statistics(model: torch.nn.Module, loader, batches: int, device: str | torch.device = "cpu") -> int:
    """Replace the BN running statistics of ``model`` by the average batch statistics of the first ``batches``
    batches of ``loader``; returns how many were used (0 for a model without BN)."""
    if not batch_norm_layers(model):
        return 0

    def forward(batch) -> None:
        batch = batch.to(device)
        model(batch.frames, batch.mask)

    return recompute_batch_norm(model, itertools.islice(loader, batches), forward)


def average_checkpoints(paths: Sequence[str], *, batch_norm: str = "recompute", bn_batches: int = 20,
                        bn_data: Sequence[str] | None = None, batch_size: int | None = None,
                        workers: int | None = None,
                        device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model whose weights are the mean of ``paths`` (eval mode) and the checkpoint info to save with it.

    ``batch_norm``: ``"recompute"`` (on ``bn_batches`` training batches, see :func:`bn_loader`) or
    ``"averaged"``. The info is the last checkpoint's (``paths`` oldest first: the newest), with ``averaged_from`` (path and step of each input) and
    ``batch_norm`` added and the single checkpoint's validation metrics dropped."""
    if batch_norm not in BN_MODES:
        raise UserError(f"batch_norm must be one of {list(BN_MODES)}, got {batch_norm!r}")
    infos, states = read_checkpoints(paths)
    model = model_from_config_dict(infos[-1]["model_config"])
    model.load_state_dict(average_state_dicts(states), strict=True)
    model.to(device)
    note = "averaged" if batch_norm_layers(model) else "none in this model"
    if batch_norm == "recompute" and batch_norm_layers(model):
        used = recompute_statistics(model, bn_loader(infos[-1], bn_data, batch_size, workers, device), bn_batches,
                                    device)
        if used == 0:
            raise UserError("the batch-norm data holds no video; pass other --bn-data or --bn averaged")
        note = f"recomputed on {used} training batches"
    info = {**infos[-1], "metrics": {}, "batch_norm": note,
            "averaged_from": [{"path": os.path.abspath(p), "step": i.get("step")} for p, i in zip(paths, infos)]}
    info.pop("path", None)
    return model.eval(), info


def check_output(out: str) -> None:
    """Refuse an output directory that holds a training run (its best/last would be replaced)."""
    if not out.endswith(".safetensors") and (os.path.isdir(os.path.join(out, "checkpoints"))
                                             or os.path.exists(os.path.join(out, "resume.pt"))):
        raise UserError(f"--out {out!r} holds a training run, whose best/last would be replaced; choose another "
                        "directory or a .safetensors file")


def save_averaged(model: torch.nn.Module, info: Mapping[str, Any], out: str) -> str:
    """Write the averaged model to ``out``: a ``.safetensors`` file, or a directory that then holds it as
    ``best.safetensors`` with ``last.safetensors`` linked to it (what ``evaluate RUN`` loads). A directory holding
    a training run is refused. Returns the checkpoint path."""
    check_output(out)
    if out.endswith(".safetensors"):
        path = out
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    else:
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "best.safetensors")
    ckpt.save_weights(path, model.state_dict(), dict(info))
    if path != out:
        link_atomically(path, os.path.join(out, "last.safetensors"))
    return path
