"""Building a :class:`TrainConfig` the way ``videopool train`` does, for scripts and tests."""

from __future__ import annotations

import os
from typing import Any

from videopool.core.errors import UserError
from videopool.core.urls import is_url
from videopool.training.config import TrainConfig, load_yaml_config, resolve_train_config, saved_run_config


def build_config(
    model: str | None,
    config_file: str | None,
    overrides: dict[str, Any],
    out: str,
    resume: bool = False,
) -> TrainConfig:
    """Recipe of ``model`` → ``config_file`` → ``overrides`` (see :mod:`videopool.training.config`).

    With ``resume`` the run's saved ``config.yaml`` replaces the recipe and file layers;
    ``overrides`` still apply (e.g. a larger ``max_steps``). The recipe is validated by
    :class:`TrainConfig` (a key or value it does not accept is a bug in the recipe), and the model
    overrides by building the :class:`~videopool.models.ModelConfig` they describe, so every mistake
    surfaces here, before any data is read.
    """
    from videopool.models import get_recipe, resolve_config

    command_line = ("command line", {**overrides, "out": out})
    _check_run_directory(out)
    if resume:
        saved_path, saved = saved_run_config(out)
        saved_model = saved.pop("model")
        if model and model != saved_model:
            raise UserError(f"--model {model!r} differs from the run's model {saved_model!r} in {saved_path}")
        config = resolve_train_config(saved_model, [(saved_path, saved), command_line])
    else:
        from videopool.training.resume import has_checkpoint

        if has_checkpoint(out):  # even a run killed during its first checkpoint: --resume continues it
            raise UserError(
                f"{out!r} already holds a training run; pass --resume to continue it, or choose another --out"
            )
        file_values = load_yaml_config(config_file) if config_file else {}
        init_layers = _init_from_layers(overrides.get("init_from") or file_values.get("init_from"), model)
        model = model or file_values.pop("model", None) or (init_layers[0][1]["model"] if init_layers else None)
        file_values.pop("model", None)
        if not model:
            raise UserError("no model given: pass --model NAME (see `videopool models`) or put `model:` in --config")
        if not isinstance(model, str):
            raise UserError(f"--config {config_file}: model must be a model name (see `videopool models`), "
                             f"got {model!r}")
        recipe_source = f"recipe of {model!r}"
        recipe = dict(get_recipe(model))
        TrainConfig.from_dict(recipe, recipe_source)  # strict: a recipe holds TrainConfig fields only
        layers = [(recipe_source, recipe), *[(s, {k: v for k, v in layer.items() if k != "model"})
                                             for s, layer in init_layers],
                  (f"--config {config_file}", file_values), command_line]
        config = resolve_train_config(model, layers)
    resolve_config(config.model, num_classes=config.num_classes, **config.model_overrides)
    from videopool.core.precision import resolve_device

    resolve_device(config.device)  # --device cuda on a CPU-only torch is an error now, not at the first step
    return config


def _init_from_layers(init_from: str | None, model: str | None) -> list[tuple[str, dict[str, Any]]]:
    """``train --init-from RUN``: the model name and model settings stored in RUN's checkpoint, as a config layer
    (``[]`` without ``--init-from``), so that the new run builds the same model and the weights load."""
    if not init_from:
        return []
    from videopool.models.checkpoint import find_checkpoint, read_info

    stored = read_info(find_checkpoint(init_from)).get("train_config") or {}
    if not stored.get("model"):
        raise UserError(f"--init-from {init_from!r}: its checkpoint records no model name; pass --model and the "
                        "same --set model keys it was built with")
    if model and model != stored["model"]:
        raise UserError(f"--model {model!r} differs from the model {stored['model']!r} of --init-from {init_from}")
    return [(f"model of --init-from {init_from}",
             {"model": stored["model"], "model_overrides": dict(stored.get("model_overrides") or {})})]


def _check_run_directory(out: str) -> None:
    """``--out`` must name a directory, new or existing; a UserError for a file or a path through a file."""
    if not out:
        raise UserError("no --out given: pass the run directory, e.g. --out runs/my-run")
    if is_url(out):  # checkpoints, the resume state and the run lock rely on local renames and file locks
        raise UserError(f"--out {out!r} is a URL: a training run directory must be local (its checkpoints and resume "
                        "state are replaced atomically and it is locked against a second trainer); train into a "
                        "local --out and copy the run to the bucket afterwards")
    path = os.path.abspath(out)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        which = "is an existing file" if path == os.path.abspath(out) else f"is inside {path!r}, which is a file"
        raise UserError(f"--out {out!r} {which}; the run directory must be a new or existing directory")


def num_classes_for(config: TrainConfig) -> int:
    """V from ``--num-classes`` or the vocabulary file (they must agree when both are given)."""
    from_vocabulary = None
    if config.vocabulary:
        from videopool.data import read_vocabulary

        from_vocabulary = read_vocabulary(config.vocabulary).num_classes  # max id + 1
    if config.num_classes is not None and from_vocabulary is not None and config.num_classes != from_vocabulary:
        raise UserError(f"--num-classes {config.num_classes} disagrees with {config.vocabulary!r}, "
                         f"whose class ids need V = {from_vocabulary}")
    value = config.num_classes if config.num_classes is not None else from_vocabulary
    if value is None:
        raise UserError("give --num-classes V or --vocabulary vocabulary.csv")
    return int(value)


def train_named_model(model: str, out: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train ``model`` (a registered name) into a fresh ``out`` with ``overrides`` on its recipe and
    return the run summary plus wall time, training throughput and the trainable parameter count.
    What ``videopool demo`` and ``benchmarks/ablations.py`` run for each model they compare."""
    import shutil
    import time

    from videopool.models import count_parameters, create_model
    from videopool.training.loop import train

    shutil.rmtree(out, ignore_errors=True)
    config = build_config(model, None, overrides, out)
    num_classes = num_classes_for(config)
    started = time.perf_counter()
    summary = train(config, num_classes)
    seconds = time.perf_counter() - started
    meta = create_model(model, num_classes=num_classes, device="meta", **config.model_overrides)
    return {**summary, "model": model, "seconds": seconds, "videos_per_s": summary["examples_seen"] / seconds,
            "parameters": count_parameters(meta), "learning_rate": config.learning_rate}
