"""Segment fine-tuning (``videopool train-segments``): the :class:`~videopool.training.loop.Trainer` with segment
batches, a loss on the rated pairs only, and segment mAP as the validation metric.

A run starts from a trained video-level run (``from_run``), builds the segment model a named configuration
describes (``videopool/configs/segments/NAME.yaml``: ``model:`` keys of
:class:`~videopool.models.segment.SegmentModelConfig`, ``recipe:`` keys of :class:`SegmentTrainConfig`) and
trains it with the same loop, checkpoints and ``--resume`` as ``videopool train``. Resolution order (later wins):
:class:`SegmentTrainConfig` defaults → the named recipe → ``--set``/flags; a ``--set`` key that is a segment
model key (``fc_size``, ``segment_lr_scale``, ...) overrides the named ``model:`` section.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, Mapping

import yaml

from videopool.core.errors import UserError
from videopool.core.schema import ConfigError, closest_hint, parse_dataclass
from videopool.data.loader import expand_patterns
from videopool.data.segments import SegmentLoader
from videopool.inference.segment_eval import score_rated_segments, segment_metrics
from videopool.models import load_model
from videopool.models.segment import SegmentModelConfig, is_segment_config, segment_model_from_config
from videopool.training.config import TrainConfig, saved_run_config
from videopool.training.loop import Trainer

__all__ = ["SEGMENT_CONFIGS", "SegmentTrainConfig", "SegmentTrainer", "build_segment_config", "list_segment_configs",
           "named_segment_config", "train_segments"]

CONFIG_FOLDER = "segments"  # under videopool/configs; not */*.yaml, so the video-model registry ignores them
_MODEL_KEYS = [f.name for f in fields(SegmentModelConfig) if f.name not in ("video", "members")]


@dataclass
class SegmentTrainConfig(TrainConfig):
    """:class:`TrainConfig` plus what segment fine-tuning needs. ``model`` is the named segment configuration.

    ``context``: frames added on each side of the 5 rated frames (seed 004 and CESHINE: 3). ``video_frames``:
    frames of the whole video the context-aware model sees (evenly spaced). Loss weights: ``positive_weight`` /
    ``negative_weight`` for rated positives / negatives; with ``mined_negatives`` every class in neither the
    video's labels nor a positive rating of it is a negative of weight ``mined_weight`` (CESHINE, spec §7.4);
    without it, unrated pairs never enter the loss."""

    from_run: str = ""
    segment_model: dict[str, Any] = field(default_factory=dict)  # the resolved model: section (+ overrides)
    context: int = 3
    video_frames: int = 300
    mined_negatives: bool = False
    positive_weight: float = 1.0
    negative_weight: float = 1.0
    mined_weight: float = 0.5
    shuffle_buffer: int = 4096
    loss: str = "bce_mean"
    batch_size: int = 128
    checkpoint_every: int = 200
    lr_decay_examples: int = 1_000_000
    bf16_scheme: str = "autocast"  # bf16 master weights do not support the per-group learning rates

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, least in (("context", 0), ("video_frames", 1), ("shuffle_buffer", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"{name} must be >= {least}, got {getattr(self, name)}")
        for name in ("positive_weight", "negative_weight", "mined_weight"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")


def list_segment_configs() -> list[str]:
    folder = resources.files("videopool") / "configs" / CONFIG_FOLDER
    return sorted(item.name[:-5] for item in folder.iterdir() if item.name.endswith(".yaml"))


SEGMENT_CONFIGS = list_segment_configs()


def named_segment_config(name: str) -> dict[str, Any]:
    """``{"description", "model", "recipe"}`` of a named segment configuration (the file strictly checked)."""
    names = list_segment_configs()
    if name not in names:
        raise UserError(f"unknown segment configuration {name!r}{closest_hint(name, names)} "
                        f"(choose one of {', '.join(names)})")
    path = resources.files("videopool") / "configs" / CONFIG_FOLDER / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(data) - {"description", "model", "recipe"})
    if unknown:
        raise ConfigError(f"segment configuration {name!r}: unknown section {unknown[0]!r}")
    for key in data.get("model", {}):
        if key not in _MODEL_KEYS:
            raise ConfigError(f"segment configuration {name!r}: unknown model key "
                              f"{key!r}{closest_hint(key, _MODEL_KEYS)}")
    parse_dataclass(SegmentTrainConfig, data.get("recipe", {}), f"segment configuration {name!r}: recipe")
    return {"description": data.get("description", ""), "model": dict(data.get("model", {})),
            "recipe": dict(data.get("recipe", {}))}


def build_segment_config(model: str | None, overrides: Mapping[str, Any], out: str, from_run: str | None = None,
                         resume: bool = False) -> SegmentTrainConfig:
    """The run's config: named recipe and model section → ``overrides`` (flags, ``--set``). With ``resume``
    the run's saved ``config.yaml`` replaces the first layer."""
    from videopool.training.resume import has_checkpoint

    if not out:
        raise UserError("no --out given: pass the run directory, e.g. --out runs/segments")
    train_keys = [f.name for f in fields(SegmentTrainConfig)]
    training, model_keys = {}, {}
    for key, value in overrides.items():
        if key in train_keys:
            training[key] = [value] if key in ("train_data", "val_data") and isinstance(value, str) else value
        elif key in _MODEL_KEYS:
            model_keys[key] = value
        else:
            raise ConfigError(f"unknown key {key!r}{closest_hint(key, train_keys + _MODEL_KEYS)} (a segment "
                              "training key or a segment model key, see docs/segments.md)")
    if resume:
        saved_path, saved = saved_run_config(out)
        if model and model != saved.get("model"):
            raise UserError(f"--model {model!r} differs from the run's model {saved.get('model')!r} in {saved_path}")
        if from_run and os.path.abspath(from_run) != os.path.abspath(saved.get("from_run", "")):
            raise UserError(f"--from {from_run!r} differs from the run's {saved.get('from_run')!r} in {saved_path}")
        saved["segment_model"] = {**saved.get("segment_model", {}), **model_keys}
        config = SegmentTrainConfig.from_dict({**saved, **training}, f"{saved_path} + command line")
    else:
        if has_checkpoint(out):
            raise UserError(f"{out!r} already holds a training run; pass --resume to continue it, "
                            "or choose another --out")
        if not from_run:
            raise UserError("no --from given: pass the video-level run to start from, e.g. --from runs/gnv")
        model = model or "paper_context_ignoring"
        named = named_segment_config(model)
        values = {**named["recipe"], **training, "model": model, "out": out, "from_run": from_run,
                  "segment_model": {**named["model"], **model_keys}}
        config = SegmentTrainConfig.from_dict(values, "segment training config")
    if config.segment_model.get("segment_model") != "average":  # its keys and values, before any run is read
        from videopool.models.config import ModelConfig

        SegmentModelConfig.from_dict({**config.segment_model, "video": ModelConfig().to_dict()}, "segment model")
    return config


def video_run_for(config: SegmentTrainConfig):
    """The video-level model and metadata of ``from_run`` (a UserError if it is a segment model's run)."""
    video_model, info = load_model(config.from_run)
    if is_segment_config(info.get("model_config")):
        raise UserError(f"--from {config.from_run!r} is a segment model's run; give the video-level run it came from")
    return video_model, info


class SegmentTrainer(Trainer):
    """The training loop of :mod:`videopool.training.loop` on rated segments (see the module docstring)."""

    selection_metric = "segment_map"

    def build_model(self):
        c = self.config
        video_model, info = video_run_for(c)
        config = SegmentModelConfig.from_dict({**c.segment_model, "video": info["model_config"]}, "segment model")
        model = segment_model_from_config(config)
        model.load_video_weights(video_model)
        return model

    def _loader(self, patterns, what: str, shuffle: bool, epoch: int) -> SegmentLoader:
        c = self.config
        return SegmentLoader(expand_patterns(patterns, what), self.num_classes,
                             batch_size=c.batch_size if shuffle else (c.eval_batch_size or c.batch_size),
                             context=c.context, with_video=self.model.needs_video_context,
                             video_frames=c.video_frames, mined_negatives=c.mined_negatives and shuffle,
                             shuffle=shuffle, seed=c.seed, epoch=epoch, shuffle_buffer=c.shuffle_buffer,
                             features=list(self.model.config.modalities), on_error=c.on_bad_record)

    def train_loader(self, epoch: int) -> SegmentLoader:
        return self._loader(self.config.train_data, "--data", True, epoch)

    def batch_labels(self, batch):
        c = self.config
        return batch.packed_labels(c.positive_weight, c.negative_weight, c.mined_weight if c.mined_negatives else 0.0)

    def batch_inputs(self, batch):
        return batch.model_inputs() if self.model.needs_video_context else None

    def validate(self) -> dict[str, Any] | None:
        c = self.config
        if not c.val_data:
            return None
        loader = self._loader(c.val_data, "--val-data", False, 0)
        model = self.eval_model() if hasattr(self, "eval_model") else self.model  # a weight average, if any
        ids, scores, targets, rated = score_rated_segments(model, loader, device=self.device)
        metrics = segment_metrics(ids, scores, targets, rated)
        metrics.pop("per_class_ap")
        return metrics


def train_segments(config: SegmentTrainConfig, num_classes: int, resume: bool = False) -> dict[str, Any]:
    """Fine-tune a segment model (single process); the summary of :meth:`Trainer.fit`."""
    trainer = SegmentTrainer(config, num_classes, resume=resume)
    try:
        with trainer._disk_full_note():
            return trainer.fit()
    finally:
        trainer.close()
