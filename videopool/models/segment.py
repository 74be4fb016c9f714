"""Segment classifiers for temporal localisation (YouTube-8M Segments, 2019): seed paper 004 §4.2 and CESHINE
(spec §7.4, §10).

Contract (relied on by ``videopool.inference.localize`` and the ``localize`` / ``evaluate-segments`` commands)::

    model.needs_video_context: bool          a class attribute
    model(frames: dict[str, Tensor [B, N, D]], mask: Tensor [B, N],
          video_frames: dict[str, Tensor [B, T, D]] | None = None, video_mask: Tensor [B, T] | None = None,
          *, context: Tensor [B, C] | None = None)
        -> probabilities [B, V] in eval mode (a ModelOutput in training mode, for the model's ``loss``)
    model.encode_context(video_frames: dict[str, Tensor [U, T, D]], video_mask: Tensor [U, T]) -> Tensor [U, C]
    model.context_size: int                  C (both only on a model with ``needs_video_context``)

* ``frames``/``mask`` are one segment per row: its 5 frames, optionally widened by ``t`` context frames on each
  side (padding rows False in the mask). ``N`` is free.
* ``video_frames``/``video_mask`` are the whole video each segment comes from, row for row. Only a model with
  ``needs_video_context = True`` reads them (and then requires them); the others ignore them, so a caller may
  always pass them, or pass them only when ``needs_video_context`` is True.
* ``context`` is the same information precomputed: ``encode_context`` of the unique videos, gathered so that
  row ``i`` is the context of segment ``i``'s video. Given it, ``video_frames`` is not read, and the output
  equals that of passing the videos row for row (to float32 rounding; the video encoder is frozen and in eval
  mode, so a row's context does not depend on the batch). Callers that score many segments of one video
  (``localize``, ``evaluate-segments``) encode each video once per batch this way; training passes
  ``video_frames`` and the model calls ``encode_context`` itself, so both go through the same code.
* ``V`` is the label space of the video-level model the segment model was initialised from (3862 for the real
  data, the demo vocabulary's size for the demo); the 1,000-class whitelist is applied by the caller.
* ``SegmentClassifier`` (context-ignoring, ``needs_video_context = False``): a video-level model applied to the
  segment's frames. ``ContextAwareSegmentClassifier`` (``True``): frozen video encoder on the whole video +
  segment encoder on the segment -> concat -> FC + ReLU (+ gating) -> MoE. ``AveragedSegmentClassifier``: the
  mean of its members' probabilities (``needs_video_context`` = any member's).
* Saved with :func:`videopool.models.checkpoint.save_weights` like every model (their ``config.to_dict()`` is
  stored), so ``videopool.models.load_model(RUN)`` returns them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from videopool.core.schema import ConfigError, check_choice, parse_dataclass
from videopool.layers.gating import GATINGS, make_gating
from videopool.layers.heads import make_head
from videopool.layers.norm import MaskedBatchNorm1d
from videopool.models.classifier import VideoClassifier
from videopool.models.config import ModelConfig
from videopool.models.output import ModelOutput, probabilities_of

__all__ = [
    "SEGMENT_MODELS", "AveragedSegmentClassifier", "ContextAwareSegmentClassifier", "SegmentClassifier",
    "SegmentModelConfig", "encode_member_contexts", "is_segment_config", "member_context_inputs", "rated_pair_loss",
    "segment_model_from_config",
]  # fmt: skip

SEGMENT_MODELS = ("context_ignoring", "context_aware", "average")
EPSILON = 1e-5  # inside the logs, as the video-level loss (videopool.models.losses)


@dataclass
class SegmentModelConfig:
    """A segment model as data (stored in its checkpoints; strict parser). ``segment_model`` names the kind;
    ``video`` is the video-level model's ``ModelConfig`` dict (its architecture; the weights come from the
    video run). The remaining keys are the context-aware classifier's: BN (``input_batch_norm``) and dropout on
    the concatenated embeddings, ``Linear(2H, fc_size)`` + ReLU, optional ``gating``, MoE with
    ``num_mixtures`` experts; ``segment_lr_scale`` multiplies the learning rate of the segment encoder (the
    paper: half). ``members``: the configs an ``average`` model averages."""

    segment_model: str = "context_ignoring"
    video: dict[str, Any] = field(default_factory=dict)
    fc_size: int = 2048
    input_batch_norm: bool = True
    dropout: float = 0.5
    gating: str = "none"
    num_mixtures: int = 4
    segment_lr_scale: float = 0.5
    members: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("segment_model", self.segment_model, SEGMENT_MODELS)
        check_choice("gating", self.gating, GATINGS)
        for name in ("fc_size", "num_mixtures"):
            value = getattr(self, name)
            if isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0 <= self.segment_lr_scale < float("inf"):
            raise ConfigError(f"segment_lr_scale must be >= 0 (0 freezes the segment encoder), got "
                              f"{self.segment_lr_scale!r}")
        if self.segment_model == "average":
            if len(self.members) < 2:
                raise ConfigError(f"an average segment model needs at least 2 members, got {len(self.members)}")
            parsed = [SegmentModelConfig.from_dict(m, f"members[{i}]") for i, m in enumerate(self.members)]
            if len({p.num_classes for p in parsed}) > 1:
                raise ConfigError("the members of an average segment model have different numbers of classes")
        elif not self.video:
            raise ConfigError(f"a {self.segment_model} segment model needs the video-level model config (video)")
        else:
            self.video_config  # parsed now, so a bad video config fails here

    @property
    def video_config(self) -> ModelConfig:
        if self.segment_model == "average":
            return SegmentModelConfig.from_dict(self.members[0], "members[0]").video_config
        return ModelConfig.from_dict(self.video, "segment model config: video")

    @property
    def modalities(self) -> dict[str, int]:
        return dict(self.video_config.modalities)

    @property
    def num_classes(self) -> int:
        return self.video_config.num_classes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "segment model config") -> "SegmentModelConfig":
        return parse_dataclass(cls, data, source)


def rated_pair_loss(probabilities: Tensor, labels: Tensor, reduction: str = "bce_mean") -> Tensor:
    """``Σ w·BCE(p, y) / n + Σ m·BCE(p, 0) / n_m`` over packed ``labels [B, 3, V]``: targets ``y``, rated-pair
    weights ``w`` and mined-negative weights ``m`` (:meth:`videopool.data.segments.SegmentBatch.packed_labels`).

    ``w`` weights the rated pairs, ``m`` the mined negatives; a pair with ``w = m = 0`` (unrated) contributes
    nothing, not even a gradient. ``n`` is the number of rated pairs (``bce_mean``: the mean over rated pairs, as
    G-TF2 and CESHINE) or the number of segments (``bce_sum``: the sum over each segment's rated classes, averaged
    over segments, as the TF1 video-level loss); ``n_m`` likewise for the mined pairs. Float32 or wider."""
    dtype = torch.promote_types(probabilities.dtype, torch.float32)
    p, labels = probabilities.to(dtype), labels.to(dtype)
    targets, weights, mined = labels[:, 0], labels[:, 1], labels[:, 2]
    rated, negative = weights > 0, mined > 0
    # where() rather than a product so an unrated pair's gradient is exactly zero even if its BCE is not finite
    positive_term = -(targets * torch.log(p + EPSILON) + (1 - targets) * torch.log(1 - p + EPSILON))
    rated_loss = torch.where(rated, weights * positive_term, torch.zeros_like(p)).sum()
    mined_loss = torch.where(negative, -mined * torch.log(1 - p + EPSILON), torch.zeros_like(p)).sum()
    if reduction == "bce_sum":
        segments = max(p.shape[0], 1)
        return rated_loss / segments + mined_loss / segments
    return rated_loss / rated.sum().clamp_min(1) + mined_loss / negative.sum().clamp_min(1)


class _SegmentLoss:
    """The training interface every segment model shares: ``loss`` on the packed labels and
    ``parameter_groups`` (each with its ``lr_scale``, read by the optimiser)."""

    def loss(self, output: Tensor | ModelOutput, labels: Tensor, reduction: str = "bce_mean") -> Tensor:
        return rated_pair_loss(probabilities_of(output), labels, reduction)

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr_scale": 1.0}]


class SegmentClassifier(_SegmentLoss, nn.Module):
    """Context-ignoring segment classifier (seed 004 §4.2): the video-level model itself, applied to the
    segment's frames and fine-tuned on the rated segments. ``forward`` ignores the whole video."""

    needs_video_context = False

    def __init__(self, config: SegmentModelConfig) -> None:
        super().__init__()
        from videopool.models.registry import create_model

        self.config = config
        self.video_model = create_model(config.video_config)
        self.output_size = self.video_model.output_size

    def forward(self, frames: Mapping[str, Tensor], mask: Tensor | None = None, video_frames=None,
                video_mask=None, *, context=None) -> Tensor | ModelOutput:
        output = self.video_model(frames, mask)
        return ModelOutput(probabilities_of(output)) if self.training else probabilities_of(output)

    def load_video_weights(self, video_model: nn.Module) -> None:
        """Start from a trained video-level model (same configuration)."""
        self.video_model.load_state_dict(video_model.state_dict())

    def regularization_loss(self) -> Tensor:
        return self.video_model.regularization_loss()


def _encoder(config: ModelConfig) -> tuple[VideoClassifier, int]:
    """A video model without its head, and the size of the vector it returns."""
    if config.mixture.branches > 1:
        raise ConfigError("the context-aware segment model needs a single video classifier as its encoder, "
                          f"not a mixture of {config.mixture.branches} branches")
    encoder = VideoClassifier(config)
    size = config.hidden.size if config.hidden.size is not None else encoder.fusion.output_size
    encoder.classifier = nn.Identity()  # the head is removed: encode() is what it would have seen
    return encoder, size


class ContextAwareSegmentClassifier(_SegmentLoss, nn.Module):
    """Context-aware segment classifier (seed 004 §4.2.1; CESHINE, spec §7.4)::

        v = E_video(whole video)        frozen copy of the video model without its head   [B, H]
        s = E_segment(segment frames)   trainable copy, learning rate × segment_lr_scale   [B, H]
        h = ReLU(Dropout(BN([v, s])) W + b)                                                  [B, fc_size]
        p = MoE(gating(h))                                                                   [B, V]

    The video encoder stays in eval mode (its batch-norm statistics frozen too) and gets no gradient."""

    needs_video_context = True

    def __init__(self, config: SegmentModelConfig) -> None:
        super().__init__()
        self.config = config
        video = config.video_config
        self.video_encoder, size = _encoder(video)
        self.segment_encoder, _ = _encoder(video)
        for parameter in self.video_encoder.parameters():
            parameter.requires_grad_(False)
        self.input_norm = MaskedBatchNorm1d(2 * size) if config.input_batch_norm else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(2 * size, config.fc_size)
        self.gating = make_gating(config.gating, config.fc_size)
        self.classifier = make_head("moe", config.fc_size, video.num_classes, num_mixtures=config.num_mixtures)
        self.output_size = video.num_classes
        self.context_size = size

    def train(self, mode: bool = True) -> "ContextAwareSegmentClassifier":
        super().train(mode)
        self.video_encoder.eval()  # frozen: no batch-norm statistics move, no dropout
        return self

    def encode_context(self, video_frames: Mapping[str, Tensor], video_mask: Tensor | None) -> Tensor:
        """``v = E_video(video)`` ``[U, H]`` for ``U`` whole videos (no gradient: the encoder is frozen)."""
        with torch.no_grad():
            return self.video_encoder.encode(video_frames, video_mask)

    def forward(self, frames: Mapping[str, Tensor], mask: Tensor | None = None,
                video_frames: Mapping[str, Tensor] | None = None,
                video_mask: Tensor | None = None, *, context: Tensor | None = None) -> Tensor | ModelOutput:
        if context is None:
            if video_frames is None:
                raise ValueError("the context-aware segment model needs the whole video (video_frames, video_mask) "
                                 "or its precomputed context (encode_context)")
            context = self.encode_context(video_frames, video_mask)
        segment = self.segment_encoder.encode(frames, mask)
        hidden = torch.relu(self.fc(self.dropout(self.input_norm(torch.cat([context, segment], dim=-1)))))
        probabilities = self.classifier(self.gating(hidden))
        return ModelOutput(probabilities) if self.training else probabilities

    def load_video_weights(self, video_model: nn.Module) -> None:
        """Both encoders start as the trained video model without its head."""
        state = {k: v for k, v in video_model.state_dict().items() if not k.startswith("classifier.")}
        self.video_encoder.load_state_dict(state)
        self.segment_encoder.load_state_dict(state)

    def parameter_groups(self) -> list[dict[str, Any]]:
        segment = [p for p in self.segment_encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in segment} | {id(p) for p in self.video_encoder.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": segment, "lr_scale": self.config.segment_lr_scale}, {"params": rest, "lr_scale": 1.0}]

    def regularization_loss(self) -> Tensor:
        return self.classifier.regularization_loss()


class AveragedSegmentClassifier(_SegmentLoss, nn.Module):
    """The mean of its members' probabilities (seed 004: the final prediction averages the context-ignoring
    and the context-aware classifier). ``needs_video_context`` is True when any member needs it."""

    def __init__(self, config: SegmentModelConfig, members: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.config = config
        if members is None:
            members = [segment_model_from_config(SegmentModelConfig.from_dict(m)) for m in config.members]
        self.members = nn.ModuleList(members)
        self.needs_video_context = any(m.needs_video_context for m in members)
        self.output_size = members[0].output_size
        self.context_size = sum(m.context_size for m in members if m.needs_video_context)

    @classmethod
    def of(cls, members: list[nn.Module]) -> "AveragedSegmentClassifier":
        config = SegmentModelConfig(segment_model="average", members=[m.config.to_dict() for m in members])
        return cls(config, members)

    def encode_context(self, video_frames: Mapping[str, Tensor], video_mask: Tensor | None) -> Tensor:
        """The contexts of the members that need one, side by side: ``[U, Σ context_size]``."""
        return encode_member_contexts(self.members, video_frames, video_mask)

    def forward(self, frames: Mapping[str, Tensor], mask: Tensor | None = None, video_frames=None,
                video_mask=None, *, context: Tensor | None = None) -> Tensor | ModelOutput:
        extras = member_context_inputs(self.members, video_frames, video_mask, context)
        outputs = [probabilities_of(m(frames, mask, **extra)) for m, extra in zip(self.members, extras)]
        probabilities = torch.stack(outputs).mean(dim=0)
        return ModelOutput(probabilities) if self.training else probabilities

    def regularization_loss(self) -> Tensor:
        return sum(m.regularization_loss() for m in self.members)


def encode_member_contexts(members: Sequence[nn.Module], video_frames: Mapping[str, Tensor],
                           video_mask: Tensor | None) -> Tensor:
    """``encode_context`` of each member that needs the video, concatenated along the last axis in member order
    (the layout :func:`member_context_inputs` splits)."""
    parts = [m.encode_context(video_frames, video_mask) for m in members if getattr(m, "needs_video_context", False)]
    return torch.cat(parts, dim=-1)


def member_context_inputs(members: Sequence[nn.Module], video_frames, video_mask,
                          context: Tensor | None) -> list[dict[str, Any]]:
    """The extra forward arguments of each member: nothing for a context-ignoring one; its slice of a
    precomputed ``context`` (:func:`encode_member_contexts`) or else the whole videos for one that needs them."""
    extras, offset = [], 0
    for member in members:
        if not getattr(member, "needs_video_context", False):
            extras.append({})
        elif context is not None:
            extras.append({"context": context[:, offset:offset + member.context_size]})
            offset += member.context_size
        else:
            extras.append({"video_frames": video_frames, "video_mask": video_mask})
    if context is not None and offset != context.shape[-1]:
        raise ValueError(f"a precomputed context of width {context.shape[-1]} for members needing {offset}")
    return extras


_CLASSES: dict[str, type] = {"context_ignoring": SegmentClassifier, "context_aware": ContextAwareSegmentClassifier,
                             "average": AveragedSegmentClassifier}


def segment_model_from_config(config: SegmentModelConfig | Mapping[str, Any]) -> nn.Module:
    """The segment model a config (or its stored dict) describes, with fresh weights."""
    if not isinstance(config, SegmentModelConfig):
        config = SegmentModelConfig.from_dict(config, "checkpoint segment model config")
    return _CLASSES[config.segment_model](config)


def is_segment_config(data: Any) -> bool:
    """Whether a stored model config describes a segment model (it has the ``segment_model`` key)."""
    return isinstance(data, Mapping) and "segment_model" in data

