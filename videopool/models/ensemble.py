"""Several trained classifiers folded into one module: the averaged-probabilities ensemble of Miech, Laptev & Sivic
2017, "Learnable pooling with Context Gating for video classification" (arXiv 1706.06905) §8, as one checkpoint.

::

    frames {m: [B, N, D_m]}, mask [B, N]
      │  member j sees its own modalities, and with num_frames K_j a deterministic uniform subsample of
      │  K_j frames of each video (slot i takes real frame floor(i · T / K_j), T = the video's real frames)
      │  p_j = member_j(frames_j, mask_j)                               [B, V]
      ▼  p = Σ_j w_j p_j / Σ_j w_j                                       [B, V]

The weights ``w_j`` are those of the greedy selection (``videopool ensemble select``): the number of times a
model was picked, since selection with replacement adds a model again to raise its share of the average.

Members with different frame counts: the ensemble's checkpoint records the largest ``K_j`` as its training
``num_frames`` (so ``--sampling uniform|random`` loaders fetch that many), and every member subsamples its own
``K_j`` from whatever the loader gave, per video, independently of the batch (a video's result does not depend on
which videos share its batch). Under the default ``--sampling all`` a member with ``K_j`` therefore scores a video
exactly as ``videopool evaluate RUN --sampling uniform --num-frames K_j`` scores it alone. A member with
``num_frames`` null sees every frame given (as ``--sampling all`` alone); ``videopool ensemble build`` gives every
member null unless asked for ``--member-frames trained`` (on the demo data every frame scored higher than each
run's training count, docs/results.md "Greedy ensembles").

The eval-mode forward returns the probabilities tensor and is a plain traceable module (``torch.export``, ONNX):
the subsampling is index arithmetic and a gather, with no data-dependent Python branch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn as nn
from torch import Tensor

from videopool.core.schema import ConfigError, parse_dataclass
from videopool.models.classifier import VideoClassifier
from videopool.models.config import ModelConfig
from videopool.models.losses import binary_cross_entropy_on_probabilities
from videopool.models.mixture import MixtureClassifier
from videopool.models.output import ModelOutput, probabilities_of

__all__ = ["ENSEMBLE_KIND", "EnsembleClassifier", "EnsembleConfig", "EnsembleMember", "is_ensemble_config",
           "uniform_subsample"]

ENSEMBLE_KIND = "ensemble"  # the ``kind`` key that tells an ensemble's stored config from a ModelConfig


@dataclass
class EnsembleMember:
    """One member: its model configuration, its weight in the average (> 0), the frames it sees per video
    (``num_frames``: a uniform subsample of that many, or null for every frame given) and where it came from."""

    model: ModelConfig
    weight: float = 1.0
    num_frames: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ConfigError(f"an ensemble member's weight must be a positive number, got {self.weight!r}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ConfigError(f"an ensemble member's num_frames must be positive or null, got {self.num_frames!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "weight": self.weight, "num_frames": self.num_frames,
                "source": self.source}


@dataclass
class EnsembleConfig:
    """An :class:`EnsembleClassifier` as data. ``num_classes`` and ``modalities`` (the union of the members', in
    first-seen order) are derived from the members; when given (a stored config) they must agree with them."""

    members: list[Any] = field(default_factory=list)
    kind: str = ENSEMBLE_KIND
    num_classes: int | None = None
    modalities: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind != ENSEMBLE_KIND:
            raise ConfigError(f"an ensemble config has kind {ENSEMBLE_KIND!r}, got {self.kind!r}")
        if not self.members:
            raise ConfigError("an ensemble needs at least one member")
        self.members = [_member(item, i) for i, item in enumerate(self.members)]
        classes = {m.model.num_classes for m in self.members}
        if len(classes) != 1:
            raise ConfigError(f"ensemble members predict different numbers of classes {sorted(classes)}; "
                              "only models of one label space can be averaged")
        if self.num_classes is not None and self.num_classes not in classes:
            raise ConfigError(f"ensemble num_classes {self.num_classes} differs from its members' {classes.pop()}")
        self.num_classes = classes.pop()
        union: dict[str, int] = {}
        for member in self.members:
            for name, size in member.model.modalities.items():
                if union.setdefault(name, size) != size:
                    raise ConfigError(f"ensemble members disagree on the size of modality {name!r} "
                                      f"({union[name]} and {size})")
        if self.modalities and dict(self.modalities) != union:
            raise ConfigError(f"ensemble modalities {dict(self.modalities)} differ from its members' {union}")
        self.modalities = union

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "num_classes": self.num_classes, "modalities": dict(self.modalities),
                "members": [member.to_dict() for member in self.members]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "ensemble config") -> "EnsembleConfig":
        return parse_dataclass(cls, data, source)


def _member(item: Any, index: int) -> EnsembleMember:
    if isinstance(item, EnsembleMember):
        return item
    if not isinstance(item, Mapping):
        raise ConfigError(f"ensemble config: members[{index}] must be a mapping, got {type(item).__name__}")
    return parse_dataclass(EnsembleMember, item, "ensemble config", f"members[{index}]")


def is_ensemble_config(data: Any) -> bool:
    """Whether a stored model config describes an ensemble (rather than a :class:`ModelConfig`)."""
    return isinstance(data, Mapping) and data.get("kind") == ENSEMBLE_KIND


def uniform_subsample(frames: Mapping[str, Tensor], mask: Tensor | None,
                      count: int) -> tuple[dict[str, Tensor], Tensor]:
    """``count`` frames per video, slot ``i`` taking real frame ``floor(i · T / count)`` of the ``T`` real frames
    (in their order): the loader's ``"uniform"`` strategy (:mod:`videopool.data.sampling`), applied to a batch.
    Frames ``{m: [B, N, D_m]}``, mask ``[B, N]`` (None: every frame real) -> frames ``{m: [B, count, D_m]}``,
    mask ``[B, count]`` (all False for a video without frames). Real frames need not be a prefix."""
    first = next(iter(frames.values()))
    batch, length = first.shape[:2]
    if mask is None:
        mask = torch.ones(batch, length, dtype=torch.bool, device=first.device)
    mask = mask.to(torch.bool)
    # Slot i wants the real frame of rank floor(i · T / count); a frame's rank is the number of real frames before
    # it. Matching ranks (compare + argmax + gather) keeps the graph free of sort/searchsorted, which ONNX lacks.
    # One padding column that never matches keeps argmax defined for N = 0; an empty video is masked out.
    real = mask.sum(dim=1, keepdim=True)                                                    # [B, 1]
    wanted = (torch.arange(count, device=first.device).unsqueeze(0) * real) // count        # [B, count]
    rank = torch.cumsum(mask.to(torch.int64), dim=1) - 1                                    # [B, N]
    rank = torch.where(mask, rank, torch.full_like(rank, -1))
    rank = nn.functional.pad(rank, (0, 1), value=-1)                                        # [B, N + 1]
    rows = (rank.unsqueeze(1) == wanted.unsqueeze(2)).to(torch.int8).argmax(dim=2)          # [B, count]
    picked = {}
    for name, x in frames.items():
        padded = nn.functional.pad(x, (0, 0, 0, 1))
        picked[name] = padded.gather(1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return picked, (real > 0).expand(-1, count)


class EnsembleClassifier(nn.Module):
    """The members of an :class:`EnsembleConfig`, each a :class:`VideoClassifier` (or a
    :class:`MixtureClassifier`), whose probabilities it averages with the members' weights (module docstring).

    ``forward(frames, mask)`` returns probabilities ``[B, V]`` in eval mode. In training mode it returns a
    :class:`ModelOutput` whose ``aux["member_probabilities"]`` is ``[B, M, V]`` and :meth:`loss` is the sum of
    the members' own label losses on them (each member learns as if trained alone; a mixture member's
    distillation term is not part of it). Parameters: the members', under ``members.<j>.*``.
    """

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__()
        self.config = config
        self.modalities = dict(config.modalities)
        self.members = nn.ModuleList(_build(member.model) for member in config.members)
        total = sum(member.weight for member in config.members)
        self.weights = [member.weight / total for member in config.members]  # constants of the traced graph
        self.frame_counts = [member.num_frames for member in config.members]
        self.output_size = config.num_classes

    def forward(self, frames: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor | ModelOutput:
        outputs = []
        for model, count in zip(self.members, self.frame_counts):
            own = {name: frames[name] for name in model.modalities if name in frames}
            if len(own) < len(model.modalities):
                missing = [name for name in model.modalities if name not in frames]
                raise KeyError(f"ensemble member expects frame features {list(model.modalities)} but {missing} "
                               f"are missing (got {list(frames)})")
            own_mask = mask
            if count is not None:
                own, own_mask = uniform_subsample(own, mask, count)
            outputs.append(probabilities_of(model(own, own_mask)))
        mixed = sum(weight * p for weight, p in zip(self.weights, outputs))
        if not self.training:
            return mixed
        return ModelOutput(mixed, {"member_probabilities": torch.stack(outputs, dim=1)})

    def loss(self, output: ModelOutput, labels: Tensor, reduction: str) -> Tensor:
        members = output.aux["member_probabilities"].float()
        return sum(binary_cross_entropy_on_probabilities(members[:, j], labels, reduction)
                   for j in range(members.shape[1]))

    def regularization_loss(self) -> Tensor:
        return sum(model.regularization_loss() for model in self.members)


def _build(config: ModelConfig) -> nn.Module:
    # The choice create_model makes (videopool.models.registry), which imports this module.
    return MixtureClassifier(config) if config.mixture.branches > 1 else VideoClassifier(config)


def trained_frame_count(info: Mapping[str, Any]) -> int | None:
    """The frames per video a checkpoint's run sampled in training (``train_config.num_frames``), or None when
    it trained on every frame (``frame_selection: all``) or does not say."""
    train = info.get("train_config") or {}
    if train.get("frame_selection", "random") == "all" or train.get("num_frames") is None:
        return None
    return int(train["num_frames"])


def ensemble_from_checkpoints(paths: list[str], weights: list[float] | None = None,
                              frame_counts: list[int | None] | str = "all") -> tuple[EnsembleClassifier, list[dict]]:
    """``(EnsembleClassifier in eval mode with the members' trained weights, the members' checkpoint infos)``.

    ``paths``: run directories or checkpoints (one per member); ``weights``: default 1 each; ``frame_counts``:
    one per member, ``"all"`` (every member sees every frame) or ``"trained"`` (each run's own training count,
    :func:`trained_frame_count`)."""
    from videopool.core.errors import UserError
    from videopool.models.checkpoint import load_model

    loaded = [load_model(path) for path in paths]
    for (model, info), path in zip(loaded, paths):
        if isinstance(model, EnsembleClassifier):
            raise UserError(f"{path!r} is an ensemble already; give the runs it was built from as members")
    weights = [1.0] * len(paths) if weights is None else list(weights)
    if frame_counts == "all":
        frame_counts = [None] * len(paths)
    elif frame_counts == "trained":
        frame_counts = [trained_frame_count(info) for _, info in loaded]
    members = [EnsembleMember(model.config, float(w), count, info["path"])
               for (model, info), w, count in zip(loaded, weights, frame_counts)]
    ensemble = EnsembleClassifier(EnsembleConfig(members))
    for target, (model, _) in zip(ensemble.members, loaded):
        target.load_state_dict(model.state_dict(), strict=True)
    return ensemble.eval(), [info for _, info in loaded]
