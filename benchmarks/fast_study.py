"""An in-memory training loop for the factor studies (``mfb_factors.py``, ``rnn_factors.py``).

Why not ``train_named_model``: on a shared 2-core machine the TFRecord decoding of every epoch dominated (a
4-epoch small-twin run took ~15 min under load); here the demo shards are decoded once into uint8 arrays and
each epoch draws its frames from memory. What stays the same as ``videopool train``: the model (the named
config's ``_small`` twin built by ``create_model``), the step (``TrainStep``: the TF1 ``bce_sum`` loss +
regularisation, per-tensor clipping, Adam), the frame selections (``videopool.data.select_frames``), precise
batch norm before validation (20 training batches, as ``bn_recompute_batches``) and the metrics (the streaming
evaluator: GAP@20, hit@1, mAP). Validation uses every real frame. Hooks see the model before training
(``on_model``) and after every step (``on_step``), so a study can record gradients without a second run.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

_CACHE: dict[str, "Split"] = {}


@dataclass
class Split:
    codes: list[dict[str, np.ndarray]]  # per video: modality -> uint8 [T, D]
    labels: np.ndarray  # float32 [videos, classes] multi-hot


def load_split(data: str, split: str, num_classes: int = 256) -> Split:
    key = f"{data}:{split}"
    if key not in _CACHE:
        from videopool.data import iter_videos

        codes, labels = [], []
        for video in iter_videos(sorted(glob.glob(os.path.join(data, f"{split}-*.tfrecord"))), dequantize=False):
            codes.append({name: np.ascontiguousarray(x) for name, x in video.features.items()})
            row = np.zeros(num_classes, dtype=np.float32)
            row[video.labels] = 1.0
            labels.append(row)
        _CACHE[key] = Split(codes, np.stack(labels))
    return _CACHE[key]


def make_batch(split: Split, rows: np.ndarray, strategy: str, num_frames: int, rng: np.random.Generator | None):
    """frames {modality: float32 [B, N, D]}, mask bool [B, N], labels [B, V] for the videos ``rows``."""
    import torch

    from videopool.data import FrameSelection, select_frames
    from videopool.data.collate import dequantize_tensor

    selection = FrameSelection(strategy, num_frames)
    picks = [select_frames(len(next(iter(split.codes[r].values()))), selection, rng) for r in rows]
    width = max(len(p) for p in picks)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    frames = {}
    for name in split.codes[rows[0]]:
        dim = split.codes[rows[0]][name].shape[1]
        codes = np.zeros((len(rows), width, dim), dtype=np.uint8)
        for i, (r, p) in enumerate(zip(rows, picks)):
            codes[i, : len(p)] = split.codes[r][name][p]
        frames[name] = dequantize_tensor(torch.from_numpy(codes))
    for i, p in enumerate(picks):
        mask[i, : len(p)] = True
    for x in frames.values():
        x.masked_fill_(~mask.unsqueeze(-1), 0.0)  # padding rows are exactly 0 (the VideoBatch contract)
    return frames, mask, torch.from_numpy(split.labels[rows])


def validate(model, split: Split, batch_size: int = 100) -> dict[str, float]:
    import torch

    from videopool.metrics import StreamingEvaluator

    evaluator = StreamingEvaluator(split.labels.shape[1], top_k=20)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split.codes), batch_size):
            rows = np.arange(start, min(start + batch_size, len(split.codes)))
            frames, mask, labels = make_batch(split, rows, "all", 300, None)
            evaluator.update(model(frames, mask).float().numpy(), labels.numpy())
    model.train()
    r = evaluator.compute()
    return {"gap": float(r["gap"]), "hit_at_1": float(r["hit_at_1"]), "map": float(r["map"])}


def train(model_name: str, model_overrides: dict[str, Any], recipe: dict[str, Any], seed: int, data: str, *,
          on_model: Callable[[Any], None] | None = None, on_step: Callable[[int, Any], None] | None = None,
          precision: str = "fp32") -> dict[str, Any]:
    """Train ``model_name``'s small twin; returns final metrics, the GAP after every epoch and wall seconds."""
    import torch

    from videopool.core.rng import seed_everything
    from videopool.models import create_model
    from videopool.training.batch_norm import batch_norm_layers, recompute_batch_norm
    from videopool.training.step import TrainStep, prepare_bf16

    train_split, val_split = load_split(data, "train"), load_split(data, "validate")
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = create_model(f"{model_name}_small", num_classes=train_split.labels.shape[1], **model_overrides).train()
    if on_model is not None:
        on_model(model)
    master = prepare_bf16(model, precision, "master_weights")
    step = TrainStep(model, precision=precision, device=torch.device("cpu"), learning_rate=recipe["learning_rate"],
                     master=master, clip_gradient_norm=recipe.get("clip_gradient_norm", 1.0),
                     clip_mode=recipe.get("clip_mode", "per_tensor"))
    batch, frames_per_video, strategy = recipe["batch_size"], recipe["num_frames"], recipe["frame_selection"]
    started, curve, losses, done = time.perf_counter(), [], [], 0
    for epoch in range(recipe["epochs"]):
        order = rng.permutation(len(train_split.codes))
        for start in range(0, len(order) - batch + 1, batch):  # drop the last partial batch
            frames, mask, labels = make_batch(train_split, order[start : start + batch], strategy, frames_per_video,
                                              rng)
            losses.append(float(step(frames, mask, labels)))
            done += 1
            if on_step is not None:
                on_step(done, model)
        if batch_norm_layers(model):
            order = rng.permutation(len(train_split.codes))

            def forward(rows):
                f, m, _ = make_batch(train_split, rows, strategy, frames_per_video, rng)
                model(f, m)

            recompute_batch_norm(model, [order[i * batch : (i + 1) * batch] for i in range(20)], forward)
        with torch.no_grad():
            fp32 = model if master is None else _fp32_copy(model, step)
        curve.append(validate(fp32, val_split))
    return {**curve[-1], "curve": [c["gap"] for c in curve], "seconds": round(time.perf_counter() - started, 1),
            "steps": done, "final_loss": float(np.mean(losses[-10:])), "model": model}


def _fp32_copy(model, step):
    import copy

    clone = copy.deepcopy(model).float()
    clone.load_state_dict(step.state_dict_fp32())
    return clone
