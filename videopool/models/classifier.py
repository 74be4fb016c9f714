"""The video classifier every named configuration builds: frames -> pooled -> fused -> gated -> scores.

::

    frames {rgb [B,N,1024], audio [B,N,128]}, mask [B,N]
      │  L2 over each frame's concatenated modalities            (l2_normalize_frames, spec §2.1)
      │  masked batch norm per modality                          (input_batch_norm)
      ├─ late:  one pooling layer per modality ─► fusion (concat | fc_concat | mfb)
      └─ early: concatenate frames ─► one pooling layer
      │  hidden FC  x W + b, optional BN / activation            (hidden.size; W [dim, H], TF layout)
      │  gating (context | glu | none)
      ▼  classifier (moe | logistic), optional output Context Gating  ─► probabilities [B, V]
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn

from videopool.layers.affine import FrameAffine
from videopool.layers.heads import LogisticClassifier, MoEClassifier
from videopool.layers.fusion import ConcatFusion, FCConcatFusion, MFBFusion
from videopool.layers.gating import BN_EPS, BN_MOMENTUM, ContextGating, GatedLinearUnit
from videopool.layers.norm import MaskedBatchNorm1d
from videopool.layers.registry import create_pooling
from videopool.models.config import HiddenConfig, ModelConfig

_ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class HiddenLayer(nn.Module):
    """``y = act(BN(dropout(x) W + b))`` with ``W [in, out]`` (TF layout), bias and BN optional.

    ``init_std`` set: ``W`` ~ N(0, init_std²) and ``b`` ~ N(0, 0.01²) (WILLOW ``hidden1_weights`` /
    ``hidden1_biases``); otherwise Glorot-uniform ``W`` and zero ``b``.
    Shapes: ``[B, in] -> [B, out]``.
    """

    def __init__(self, input_size: int, config: HiddenConfig, init_std: float | None = None) -> None:
        super().__init__()
        assert config.size is not None
        self.input_size = input_size
        self.output_size = config.size
        weight = torch.empty(input_size, config.size)
        self.weight = nn.Parameter(weight.normal_(0.0, init_std) if init_std else nn.init.xavier_uniform_(weight))
        if config.bias:
            bias = torch.empty(config.size)
            self.bias = nn.Parameter(bias.normal_(0.0, 0.01) if init_std else bias.zero_())
        else:
            self.register_parameter("bias", None)
        self.batch_norm = nn.BatchNorm1d(config.size, eps=BN_EPS, momentum=BN_MOMENTUM) if config.batch_norm else None
        self.activation = _ACTIVATIONS[config.activation]()
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def extra_repr(self) -> str:
        return f"{self.input_size} -> {self.output_size}, bias={self.bias is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        x = x @ self.weight if self.bias is None else torch.addmm(self.bias, x, self.weight)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return self.activation(x)


class VideoClassifier(nn.Module):
    """Multi-label video classifier assembled from a :class:`~videopool.models.config.ModelConfig`.

    ``forward(frames: dict[str, Tensor [B, N, D_m]], mask: Tensor [B, N] | None) -> [B, V]`` returns
    probabilities. Modalities in ``frames`` that the config does not name are ignored; padded frames
    (mask False) never change the result. ``regularization_loss()`` is the classifier's slim L2 term.
    ``config`` holds the (validated) configuration; ``config.to_dict()`` rebuilds the model.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.modalities = dict(config.modalities)
        self.l2_normalize_frames = config.l2_normalize_frames
        self.late_fusion = config.fusion.stage == "late"

        self.input_norms = (
            nn.ModuleDict({name: MaskedBatchNorm1d(size) for name, size in self.modalities.items()})
            if config.input_batch_norm
            else None
        )
        if self.late_fusion:
            self.poolings = nn.ModuleDict({name: self._pooling(name, size) for name, size in self.modalities.items()})
            self.fusion = self._fusion({name: layer.output_size for name, layer in self.poolings.items()})
            size = self.fusion.output_size
        else:
            name = "_".join(self.modalities)
            self.poolings = nn.ModuleDict({name: self._pooling(name, sum(self.modalities.values()))})
            self.fusion = None
            size = self.poolings[name].output_size

        self.hidden = None
        if config.hidden.size is not None:
            self.hidden = HiddenLayer(size, config.hidden, self._hidden_init_std())
            size = self.hidden.output_size

        gating = config.gating
        self.gating = None
        if gating.type == "context":
            self.gating = ContextGating(
                size, add_batch_norm=gating.add_batch_norm, remove_diagonal=gating.remove_diagonal
            )
        elif gating.type == "glu":
            self.gating = GatedLinearUnit(size, add_batch_norm=gating.add_batch_norm)

        head = config.classifier
        if head.type == "moe":
            self.classifier = MoEClassifier(
                size, config.num_classes, head.num_mixtures, head.l2_penalty, head.prob_gating
            )
        else:
            self.classifier = LogisticClassifier(size, config.num_classes, head.l2_penalty, head.prob_gating)
        self.output_size = config.num_classes

    def _pooling(self, name: str, feature_size: int) -> nn.Module:
        settings = self.config.pooling.for_modality(name)
        kwargs = {key: settings[key] for key in ("cluster_size", "hidden_size", "num_layers", "add_batch_norm")}
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
        try:
            return create_pooling(settings["type"], feature_size=feature_size, **kwargs, **settings["options"])
        except TypeError as err:
            given = kwargs | settings["options"]
            raise TypeError(f"pooling {settings['type']!r} for {name!r} rejected its settings {given}: {err}") from err

    def _fusion(self, pooled_sizes: dict[str, int]) -> nn.Module:
        fusion = self.config.fusion
        if fusion.type == "concat":
            return ConcatFusion(pooled_sizes)
        if fusion.type == "fc_concat":
            projection = fusion.projection_size or fusion.factor * fusion.output_size
            return FCConcatFusion(pooled_sizes, projection, fusion.activation)
        return MFBFusion(pooled_sizes, fusion.factor, fusion.output_size, fusion.dropout, fusion.normalization)

    def _hidden_init_std(self) -> float | None:
        if self.config.hidden.init == "xavier":
            return None
        cluster_size = self.config.pooling.cluster_size
        if cluster_size is None:
            raise ValueError("hidden.init 'willow' draws N(0, 1/K) from pooling.cluster_size, which is not set")
        return 1.0 / math.sqrt(cluster_size)

    def forward(self, frames: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        missing = [name for name in self.modalities if name not in frames]
        if missing:
            raise KeyError(
                f"model expects frame features {list(self.modalities)} but {missing} are missing (got {list(frames)})"
            )
        x = {name: frames[name] for name in self.modalities}
        for name, size in self.modalities.items():
            if x[name].dim() != 3 or x[name].shape[-1] != size:
                raise ValueError(f"frames[{name!r}] must be [B, N, {size}], got {tuple(x[name].shape)}")
        if mask is not None:
            mask = mask.to(torch.bool)

        inverse_norm = None
        if self.l2_normalize_frames:
            # vector_norm reads each frame once; pow().sum() would write a full-size temporary first
            squared = sum(torch.linalg.vector_norm(value, dim=-1, keepdim=True).square() for value in x.values())
            inverse_norm = torch.rsqrt(squared.clamp_min(1e-12))

        if self._can_fold_input_normalization(x):
            video = self.fusion(self._pool_with_folded_normalization(x, mask, inverse_norm))
        else:
            if inverse_norm is not None:
                x = {name: value * inverse_norm for name, value in x.items()}
            if self.input_norms is not None:
                x = {name: self.input_norms[name](value.contiguous(), mask) for name, value in x.items()}
            if self.late_fusion:
                video = self.fusion({name: self.poolings[name](value, mask) for name, value in x.items()})
            else:
                (pooling,) = self.poolings.values()
                video = pooling(torch.cat(list(x.values()), dim=-1), mask)

        if self.hidden is not None:
            video = self.hidden(video)
        if self.gating is not None:
            video = self.gating(video)
        return self.classifier(video)

    def _can_fold_input_normalization(self, frames: Mapping[str, torch.Tensor] | None = None) -> bool:
        """Late fusion, poolings that take a lazily applied :class:`FrameAffine`, and input BNs that are a fixed
        affine map (eval) or whose batch statistics need no gradient (training on frames without gradients)."""
        if not self.late_fusion or (self.input_norms is None and not self.l2_normalize_frames):
            return False
        if not all(getattr(pooling, "accepts_frame_affine", False) for pooling in self.poolings.values()):
            return False
        if self.input_norms is None or all(bn.uses_running_stats() for bn in self.input_norms.values()):
            return True
        # Under torch.compile the masked BN's weighted-statistics path keeps the graph whole; stay on it.
        return (self.training and frames is not None and not torch.compiler.is_compiling()
                and not any(x.requires_grad for x in frames.values())
                and all(bn.track_running_stats for bn in self.input_norms.values()))

    def _pool_with_folded_normalization(self, x: dict[str, torch.Tensor], mask: torch.Tensor | None,
                                        inverse_norm: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Pool every modality with the per-frame L2 and input BN handed to the pooling as a :class:`FrameAffine`.

        The same function as normalising first (see ``layers/affine.py``), without writing the normalised frames.
        Padded frames are zeroed, and their scale too, so that no padding value (not even inf or NaN) reaches
        the weighted frame sums; the unfolded path gets the same guarantee from the masked BN.
        """
        if mask is not None and (torch.compiler.is_compiling() or not bool(mask.all())):
            x = {name: value.masked_fill(~mask.unsqueeze(-1), 0.0) for name, value in x.items()}
            if inverse_norm is not None:
                inverse_norm = inverse_norm.masked_fill(~mask.unsqueeze(-1), 0.0)
        pooled = {}
        for name, value in x.items():
            scale, shift = self._input_norm_affine(name, value, mask, inverse_norm)
            affine = FrameAffine(inverse_norm, scale, shift)
            pooled[name] = self.poolings[name](value, mask, affine=affine)
        return pooled

    def _input_norm_affine(self, name: str, frames: torch.Tensor, mask: torch.Tensor | None,
                           inverse_norm: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The input BN of modality ``name`` as ``(scale, shift)``, or ``(None, None)`` without input BN."""
        if self.input_norms is None:
            return None, None
        norm = self.input_norms[name]
        if norm.uses_running_stats():
            return norm.inference_affine()
        with torch.no_grad():  # the statistics are of the L2-normalised frames
            normalized = frames if inverse_norm is None else frames * inverse_norm
        return norm.batch_affine(normalized, mask)

    def regularization_loss(self) -> torch.Tensor:
        """The slim L2 terms of the classifier, to be scaled by the recipe's ``regularization_penalty``."""
        return self.classifier.regularization_loss()
