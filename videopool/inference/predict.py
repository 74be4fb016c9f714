"""The one inference path: run a model over a loader, yield scores.

``videopool evaluate``, ``videopool predict`` and the validation inside training all go
through :func:`run_inference`, so the three can never disagree on preprocessing,
frame selection or precision (WILLOW issue #29).

Evaluation is deterministic by default: every real frame of a video (up to 300) is fed
with the padding mask (``sampling="all"``). ``"uniform"`` takes evenly spaced frames;
``"random"`` reproduces the reference code's stochastic 300-frames-with-replacement
sampling at test time (``floor(u · num_frames)`` per slot, as in training; TF1 metrics are
stochastic because of it).

``precision="bf16"`` runs a bf16 *copy* of the model (weights stored in bf16, inputs cast
once), not autocast: autocast would re-cast every fp32 weight on every batch, which costs
more than the matmuls for the big hidden layer (measured on an AMX CPU: bf16 weights ran gated NetVLAD
inference ~2x faster than autocast, and the hidden layer's forward ~3x faster).

``compile=True`` runs the model through ``torch.compile`` (inductor), which fuses the memory-bound
element-wise work between the matmuls. Inductor's kernels are fast only for a fixed frame count, so
every batch is padded (with masked frames) to ``num_frames`` and only the batch size is left dynamic:
one compilation of a few seconds serves the whole run.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn

from videopool.data import read_vocabulary
from videopool.inference.formats import VideoPredictionWriter
from videopool.inference.resampling import TEST_TIME_SAMPLES, average_samples



def bf16_copy(model: nn.Module) -> nn.Module:
    """A bf16 copy of ``model`` for inference (the original is left untouched)."""
    if all(p.dtype == torch.bfloat16 for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(torch.bfloat16)


class CompileError(RuntimeError):
    """``torch.compile`` failed on this machine (for example, no working C++ compiler for inductor)."""


@torch.inference_mode()
def run_inference(
    model: nn.Module,
    loader,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    compile: bool = False,
    num_frames: int | None = None,
) -> Iterator[tuple[list[str], torch.Tensor, torch.Tensor]]:
    """Yield ``(ids, probabilities float32 [B, V] on CPU, labels [B, V])`` for every batch.

    The model runs in eval mode (BN moving statistics); its train/eval mode is restored
    afterwards. ``precision`` is ``"fp32"`` or ``"bf16"`` (a bf16 copy, see module doc).
    ``compile`` runs it through ``torch.compile`` with every batch padded to ``num_frames``
    frames (the loader's cap; the longest batch so far when not given), see module doc.

    A batch of test-time resampling (:mod:`videopool.inference.resampling`) holds R rows per video; their
    probabilities are averaged.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"inference precision must be 'fp32' or 'bf16', got {precision!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    runner = bf16_copy(model) if precision == "bf16" else model
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    runner.eval()
    if compile:
        runner = torch.compile(runner)
    reset = getattr(getattr(loader, "collate_fn", None), "reset", None)
    if reset is not None:  # test-time resampling: every pass draws the same samples
        reset()
    try:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            frames = {name: x.to(dtype) for name, x in batch.frames.items()}
            mask, samples = batch.mask, batch.extra.get(TEST_TIME_SAMPLES, 1)
            if compile:
                num_frames = max(num_frames or 0, mask.shape[1])
                frames, mask = static_frame_count(frames, mask, num_frames)
            try:
                probabilities = runner(frames, mask)[: len(batch.ids) * samples].float().cpu()
            except torch._dynamo.exc.BackendCompilerFailed as err:
                raise CompileError(f"torch.compile could not compile the model ({err}); run without compile "
                                   "(drop --compile)") from err
            probabilities = average_samples(probabilities, samples)
            check_finite_scores(batch.ids, probabilities)
            yield batch.ids, probabilities, batch.labels.cpu()
    finally:
        model.train(was_training)


class NonFiniteScoresError(ValueError):
    """The model gave NaN or infinite scores: nothing ranks or predicts from them. ``ids``: those videos."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        super().__init__(f"the model gave non-finite scores (NaN or inf) for {len(ids)} video(s) [{shown}]: a diverged "
                         "checkpoint, or non-finite features in these records; nothing was evaluated or written")


def check_finite_scores(ids: list[str], probabilities: torch.Tensor) -> None:
    """Raise :class:`NonFiniteScoresError` naming the videos whose scores are not all finite (evaluate, predict
    and validation all refuse them, here, on their one inference path)."""
    finite = torch.isfinite(probabilities).all(dim=1)
    if not bool(finite.all()):
        raise NonFiniteScoresError([ids[i] for i in (~finite).nonzero().flatten().tolist()])


def static_frame_count(frames: dict[str, torch.Tensor], mask: torch.Tensor,
                       num_frames: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pad a batch with masked frames to exactly ``num_frames`` and at least 2 videos, and mark its batch
    size dynamic, so that one compiled graph serves every batch (a size of 1 would be specialised)."""
    batch, length = mask.shape
    pad_videos, pad_frames = max(0, 2 - batch), num_frames - length
    if pad_frames < 0:
        raise ValueError(f"batch has {length} frames per video, more than num_frames={num_frames}")
    if pad_videos or pad_frames:
        frames = {name: torch.nn.functional.pad(x, (0, 0, 0, pad_frames, 0, pad_videos)) for name, x in frames.items()}
        mask = torch.nn.functional.pad(mask, (0, pad_frames, 0, pad_videos), value=False)
    for tensor in (*frames.values(), mask):
        torch._dynamo.mark_dynamic(tensor, 0)
    return frames, mask


MAX_FRAMES = 300  # YouTube-8M's extractor keeps at most 300 one-second frames
EVAL_SAMPLINGS = ("all", "uniform", "random")  # inference frame sampling: every real frame (masked) or a strategy


def inference_num_frames(sampling: str, requested: int | None, trained: int | None) -> int:
    """Frames per video at inference: an explicit request wins; ``all`` means every real frame (up to
    the YT8M cap) whatever the training run sampled; the sampling strategies reuse the training count."""
    if requested:
        return requested
    if sampling == "all":
        return MAX_FRAMES
    return int(trained or MAX_FRAMES)


def write_predictions(model: nn.Module, loader, out: str, *, top_k: int = 20, class_names: list[str] | None = None,
                      precision: str = "fp32", device: str | torch.device | None = None, compile: bool = False,
                      num_frames: int | None = None) -> int:
    """Write the Kaggle CSV (``VideoId,LabelConfidencePairs``) of ``model`` over ``loader``; returns the number
    of videos. ``class_names`` adds a ``LabelNames`` column."""
    with VideoPredictionWriter(out, top_k=top_k, class_names=class_names) as writer:
        for ids, probabilities, _ in run_inference(model, loader, precision=precision, device=device,
                                                   compile=compile, num_frames=num_frames):
            writer.write_batch(ids, probabilities)
    return writer.num_rows


def read_class_names(path: str, num_classes: int) -> list[str]:
    """The names of classes ``0..num_classes-1`` from a vocabulary CSV that must cover exactly those ids."""
    vocabulary = read_vocabulary(path)
    if vocabulary.num_classes != num_classes:
        raise ValueError(f"vocabulary {path!r} covers class ids 0..{vocabulary.num_classes - 1} but the model "
                         f"predicts {num_classes} classes; use the vocabulary the model was trained with")
    return [vocabulary.name(i) for i in range(num_classes)]
