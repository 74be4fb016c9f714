"""The video classifier every named configuration builds: frames -> pooled -> fused -> hidden -> gated -> scores.

::

    frames {rgb [B,N,1024], audio [B,N,128]}, mask [B,N]        padded frames zeroed at the entrance
      │  r = 1 / ‖frame‖ over the concatenated modalities          (l2_normalize_frames)
      ├─ late:  per modality ModalityPooling (input BN + pooling)  ─► fusion (concat | fc_concat | mfb)
      └─ early: concatenated frames ─► one ModalityPooling
      │  hidden FC  x W + b, optional BN / activation               (hidden.size; W [dim, H], TF layout)
      │  gating (context | glu | se | none)
      ▼  classifier head (moe | logistic), optional output Context Gating  ─► probabilities [B, V]
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn as nn

from videopool.layers.fusion import make_fusion
from videopool.layers.gating import make_gating
from videopool.layers.heads import make_head
from videopool.layers.hidden import HiddenLayer
from videopool.layers.masking import zero_padding
from videopool.layers.modality import ModalityPooling
from videopool.layers.registry import create_pooling
from videopool.models.config import ModelConfig, SettingsError, module_key


class VideoClassifier(nn.Module):
    """Multi-label video classifier assembled from a :class:`~videopool.models.config.ModelConfig`.

    ``forward(frames: dict[str, Tensor [B, N, D_m]], mask: Tensor [B, N] | None) -> [B, V]`` returns
    probabilities. Modalities in ``frames`` that the config does not name are ignored; padded frames
    (mask False) never change the result, whatever they hold. ``encode`` returns the video vector the head sees,
    ``logits`` the logistic head's scores before the sigmoid. ``regularization_loss()`` is the head's slim L2
    term. ``config`` holds the (validated) configuration; ``config.to_dict()`` rebuilds the model.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.modalities = dict(config.modalities)
        self.l2_normalize_frames = config.l2_normalize_frames
        self.early_fusion = config.fusion.stage == "early"
        pooled_inputs = {"_".join(self.modalities): sum(self.modalities.values())} if self.early_fusion else self.modalities
        # module keys: a feature name may hold '.', which a module name may not (module_key escapes it)
        self.poolings = nn.ModuleDict({module_key(name): ModalityPooling(self._pooling(name, size),
                                                                         config.input_batch_norm)
                                       for name, size in pooled_inputs.items()})
        fusion = config.fusion
        self.fusion = make_fusion(fusion.type, {name: p.output_size for name, p in self.poolings.items()},
                                  factor=fusion.factor, output_size=fusion.output_size, dropout=fusion.dropout,
                                  normalization=fusion.normalization, projection_size=fusion.projection_size,
                                  activation=fusion.activation)
        size = self.fusion.output_size
        hidden = config.hidden
        self.hidden = nn.Identity()
        if hidden.size is not None:
            self.hidden = HiddenLayer(size, hidden.size, bias=hidden.bias, batch_norm=hidden.batch_norm,
                                      activation=hidden.activation, dropout=hidden.dropout,
                                      init_std=self._hidden_init_std())
            size = hidden.size
        gating = config.gating
        self.gating = make_gating(gating.type, size, add_batch_norm=gating.add_batch_norm,
                                  remove_diagonal=gating.remove_diagonal, reduction=gating.reduction)
        head = config.classifier
        self.classifier = make_head(head.type, size, config.num_classes, num_mixtures=head.num_mixtures,
                                    l2_penalty=head.l2_penalty, prob_gating=head.prob_gating)
        self.output_size = config.num_classes
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    def forward(self, frames: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.encode(frames, mask))

    def encode(self, frames: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """The video vector ``[B, H]`` the classifier head sees (everything of ``forward`` but the head)."""
        frames, mask = self._checked_inputs(frames, mask)
        scale = joint_inverse_norm(frames) if self.l2_normalize_frames else None
        if self.early_fusion:
            frames = {"_".join(frames): torch.cat(list(frames.values()), dim=-1)}
        pooled = {module_key(name): self.poolings[module_key(name)](x, mask, scale) for name, x in frames.items()}
        video = self.fusion(pooled)
        video = self.hidden(video)
        return self.gating(video)

    def logits(self, frames: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """The head's logits ``[B, V]`` (``forward`` is their sigmoid): logistic heads without output gating only,
        the ones whose probabilities are ``σ(logits)``."""
        head = self.classifier
        if not hasattr(head, "logits") or getattr(head, "prob_gating", None) is not None:
            raise TypeError(f"{type(head).__name__}{' with prob_gating' if hasattr(head, 'logits') else ''} has "
                            "no logits: only a logistic head without classifier.prob_gating computes σ(logits)")
        return head.logits(self.encode(frames, mask))

    def _checked_inputs(self, frames: Mapping[str, torch.Tensor],
                        mask: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The configured modalities with their padded frames zeroed, so no padding value (inf, NaN, 1e20)
        reaches any path; and the mask as bool."""
        missing = [name for name in self.modalities if name not in frames]
        if missing:
            raise KeyError(
                f"model expects frame features {list(self.modalities)} but {missing} are missing (got {list(frames)})"
            )
        for name, size in self.modalities.items():
            if frames[name].dim() != 3 or frames[name].shape[-1] != size:
                raise ValueError(f"frames[{name!r}] must be [B, N, {size}], got {tuple(frames[name].shape)}")
        mask = None if mask is None else mask.to(torch.bool)
        return {name: zero_padding(frames[name], mask) for name in self.modalities}, mask

    def _pooling(self, name: str, feature_size: int) -> nn.Module:
        settings = self.config.pooling.for_modality(name)
        kwargs = {key: settings[key] for key in ("cluster_size", "hidden_size", "num_layers", "add_batch_norm")}
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
        try:
            return create_pooling(settings["type"], feature_size=feature_size, **kwargs, **settings["options"])
        except TypeError as err:
            given = kwargs | settings["options"]
            raise SettingsError(
                f"pooling {settings['type']!r} for {name!r} rejected its settings {given}: {err}"
            ) from err

    def _hidden_init_std(self) -> float | None:
        if self.config.hidden.init == "xavier":
            return None
        cluster_size = self.config.pooling.cluster_size
        if cluster_size is None:
            raise ValueError("hidden.init 'willow' draws N(0, 1/K) from pooling.cluster_size, which is not set")
        return 1.0 / math.sqrt(cluster_size)

    def regularization_loss(self) -> torch.Tensor:
        """The slim L2 terms of the head, to be scaled by the recipe's ``regularization_penalty``."""
        return self.classifier.regularization_loss()


def joint_inverse_norm(frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``1 / ‖[x_rgb, x_audio, …]‖`` per frame, ``[B, N, 1]``: the L2 norm of the concatenated modalities.

    A zero (padded) frame gets 1e6, which multiplies zeros only. ``vector_norm`` reads each frame once; a
    ``pow().sum()`` would first write a full-size temporary."""
    squared = sum(torch.linalg.vector_norm(x, dim=-1, keepdim=True).square() for x in frames.values())
    return torch.rsqrt(squared.clamp_min(1e-12))


def _rename_legacy_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints of videopool 0.1 kept ``input_norms.<m>.*`` beside ``poolings.<m>.*``; map them onto
    ``poolings.<m>.input_norm.*`` / ``poolings.<m>.pooling.*`` (early fusion: the per-modality norms joined)."""
    poolings, norms = prefix + "poolings.", prefix + "input_norms."
    for key in [k for k in state_dict if k.startswith(poolings)]:
        name, rest = key[len(poolings):].split(".", 1)
        if not rest.startswith(("pooling.", "input_norm.")):
            state_dict[f"{poolings}{name}.pooling.{rest}"] = state_dict.pop(key)
    legacy: dict[str, dict[str, torch.Tensor]] = {}
    for key in [k for k in state_dict if k.startswith(norms)]:
        name, field = key[len(norms):].split(".", 1)
        legacy.setdefault(field, {})[name] = state_dict.pop(key)
    for field, per_modality in legacy.items():
        if module.early_fusion:
            values = [per_modality[name] for name in module.modalities]
            joined = values[0] if field == "num_batches_tracked" else torch.cat(values)
            state_dict[f"{poolings}{'_'.join(module.modalities)}.input_norm.{field}"] = joined
        else:
            for name, value in per_modality.items():
                state_dict[f"{poolings}{name}.input_norm.{field}"] = value
