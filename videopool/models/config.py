"""Model configuration as data: dataclasses that round-trip through plain dicts and YAML.

A :class:`ModelConfig` describes a :class:`~videopool.models.classifier.VideoClassifier` completely; its
``to_dict()`` is what checkpoints store and ``from_dict()`` rebuilds it. Parsing is strict (the one parser,
:func:`videopool.core.schema.parse_dataclass`): an unknown or misspelled key anywhere is an error that names
the closest valid key, values are type-checked, and each choice list is read from the module that implements
it. See ``docs/models.md`` for the schema.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from videopool.core.schema import ConfigError, check_choice, closest_hint, parse_dataclass
from videopool.data.vocabulary import MAX_CLASSES
from videopool.layers.activations import ACTIVATIONS
from videopool.layers.fusion import FUSION_STAGES, FUSIONS, MFB_NORMALIZATIONS
from videopool.layers.gating import GATINGS
from videopool.layers.heads import HEADS
from videopool.layers.registry import list_poolings

__all__ = [
    "HIDDEN_INITS", "ClassifierConfig", "ConfigError", "FusionConfig", "GatingConfig", "HiddenConfig",
    "MixtureConfig", "ModelConfig", "PoolingConfig", "module_key",
]  # fmt: skip

HIDDEN_INITS = ("xavier", "willow")  # implemented by VideoClassifier._hidden_init_std (videopool.models.classifier)


def module_key(name: str) -> str:
    """The submodule (and state-dict) key of a feature name: the name itself unless it holds '.', which torch
    reserves for paths, written ``%2E`` (``mfcc.v1`` -> ``mfcc%2Ev1``); names without '.' keep their keys, so
    every existing checkpoint loads unchanged."""
    return name.replace(".", "%2E")


class SettingsError(ConfigError, TypeError):
    """A layer rejected the settings its configuration gives it (an option it does not take, a value of the wrong
    type): a mistake in the configuration, found when the model is built. A ``TypeError`` too, as before."""


def _check_size(path: str, value: Any, optional: bool = True) -> None:
    """``value`` is a positive integer (or None when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path} must be a positive integer{' or null' if optional else ''}, got {value!r}")


def _check_fraction(path: str, value: float) -> None:
    if not 0 <= value < 1:  # NaN fails too
        raise ConfigError(f"{path} must be in [0, 1), got {value!r}")


@dataclass
class PoolingConfig:
    """Frame pooling. ``type`` is a name from :func:`videopool.layers.list_poolings`.

    ``cluster_size``/``hidden_size``/``num_layers``/``add_batch_norm`` are passed to the layer only when
    set (not None); ``options`` holds any further layer keyword arguments. In late fusion each modality
    gets its own layer: ``cluster_size_divisor[m]`` divides the cluster count for modality ``m``
    (WILLOW: audio K/2 for NetVLAD/NetFV, K/8 for the DBoF family), and ``per_modality[m]`` overrides any
    of the other keys for that modality (e.g. a different ``type``).
    """

    type: str = "netvlad"
    cluster_size: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    add_batch_norm: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cluster_size_divisor: dict[str, int] = field(default_factory=dict)
    per_modality: dict[str, dict[str, Any]] = field(default_factory=dict)

    LAYER_KEYS: typing.ClassVar[tuple[str, ...]] = (
        "type", "cluster_size", "hidden_size", "num_layers", "add_batch_norm", "options"
    )

    def __post_init__(self) -> None:
        for modality, overrides in self.per_modality.items():
            if not isinstance(overrides, Mapping):
                raise ConfigError(f"pooling.per_modality.{modality} must be a mapping, got {overrides!r}")
            for key in overrides:
                if key not in self.LAYER_KEYS:
                    raise ConfigError(
                        f"unknown key pooling.per_modality.{modality}.{key}{closest_hint(key, self.LAYER_KEYS)} "
                        f"(valid: {', '.join(self.LAYER_KEYS)})"
                    )
        for modality, divisor in self.cluster_size_divisor.items():
            if divisor < 1:
                raise ConfigError(f"pooling.cluster_size_divisor.{modality} must be >= 1, got {divisor}")
        _check_layer_settings("pooling", {key: getattr(self, key) for key in self.LAYER_KEYS})
        for modality, overrides in self.per_modality.items():
            _check_layer_settings(f"pooling.per_modality.{modality}", overrides)

    def for_modality(self, modality: str) -> dict[str, Any]:
        """The layer settings of one modality: divisor applied first, explicit overrides last."""
        settings = {key: getattr(self, key) for key in self.LAYER_KEYS}
        settings["options"] = dict(self.options)
        divisor = self.cluster_size_divisor.get(modality, 1)
        if settings["cluster_size"] is not None:
            settings["cluster_size"] = max(1, settings["cluster_size"] // divisor)
        overrides = dict(self.per_modality.get(modality, {}))
        settings["options"].update(overrides.pop("options", None) or {})
        settings.update(overrides)
        return settings


def _check_layer_settings(prefix: str, settings: Mapping[str, Any]) -> None:
    """The pooling keys of ``settings`` (all of them, or one modality's overrides): a registered type, positive
    sizes, a boolean ``add_batch_norm`` and a mapping of ``options``."""
    if "type" in settings:
        if not isinstance(settings["type"], str):
            raise ConfigError(f"{prefix}.type must be a pooling name, got {settings['type']!r}")
        check_choice(f"{prefix}.type", settings["type"], list_poolings())
    for key in ("cluster_size", "hidden_size", "num_layers"):
        if key in settings:
            _check_size(f"{prefix}.{key}", settings[key])
    if settings.get("add_batch_norm") is not None and not isinstance(settings["add_batch_norm"], bool):
        raise ConfigError(f"{prefix}.add_batch_norm must be true, false or null, got {settings['add_batch_norm']!r}")
    if "options" in settings and not isinstance(settings["options"] or {}, Mapping):
        raise ConfigError(f"{prefix}.options must be a mapping of layer arguments, got {settings['options']!r}")


@dataclass
class FusionConfig:
    """How modalities meet. ``stage``: ``late`` pools each modality separately then fuses the pooled
    vectors with ``type`` (``concat``, ``fc_concat``, ``mfb``); ``early`` concatenates the frames and pools
    once (``type`` must be ``concat``). ``factor``/``output_size``/``dropout``/``normalization`` are MFB's
    ``k``, ``o``, dropout and ``relu``/``signed_sqrt``; ``projection_size`` (default ``factor·output_size``)
    and ``activation`` belong to ``fc_concat``."""

    stage: str = "late"
    type: str = "concat"
    factor: int = 5
    output_size: int = 1000
    dropout: float = 0.1
    normalization: str = "relu"
    projection_size: int | None = None
    activation: str = "none"

    def __post_init__(self) -> None:
        check_choice("fusion.stage", self.stage, FUSION_STAGES)
        check_choice("fusion.type", self.type, FUSIONS)
        check_choice("fusion.normalization", self.normalization, MFB_NORMALIZATIONS)
        check_choice("fusion.activation", self.activation, ACTIVATIONS)
        if self.stage == "early" and self.type != "concat":
            raise ConfigError(
                f"fusion.stage 'early' concatenates frames, so fusion.type must be 'concat', not {self.type!r}"
            )
        _check_size("fusion.factor", self.factor, optional=False)
        _check_size("fusion.output_size", self.output_size, optional=False)
        _check_size("fusion.projection_size", self.projection_size)
        _check_fraction("fusion.dropout", self.dropout)


@dataclass
class HiddenConfig:
    """The fully-connected layer after fusion: ``act(BN(x W + b))``; ``size: null`` removes it.

    ``init``: ``xavier`` (Glorot uniform) or ``willow`` (N(0, 1/K) with K the pooling cluster size,
    WILLOW's choice, with a bias and no BN or activation in its commands). ``dropout`` is applied to the layer's input."""

    size: int | None = None
    bias: bool = True
    batch_norm: bool = False
    activation: str = "none"
    init: str = "xavier"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choice("hidden.activation", self.activation, ACTIVATIONS)
        check_choice("hidden.init", self.init, HIDDEN_INITS)
        _check_size("hidden.size", self.size)
        _check_fraction("hidden.dropout", self.dropout)


@dataclass
class GatingConfig:
    """Gate on the video vector before the classifier: ``none``, ``context`` (Context Gating), ``glu`` or ``se``
    (SE Context Gating of NeXtVLAD, bottleneck ``H / reduction``; ``add_batch_norm`` and ``remove_diagonal`` do
    not apply to it)."""

    type: str = "none"
    add_batch_norm: bool = True
    remove_diagonal: bool = False
    reduction: int = 8

    def __post_init__(self) -> None:
        check_choice("gating.type", self.type, GATINGS)
        if self.reduction < 1:
            raise ConfigError(f"gating.reduction must be >= 1, got {self.reduction}")


@dataclass
class ClassifierConfig:
    """Video-level classifier: ``moe`` or ``logistic``; ``prob_gating`` adds Context Gating on the output
    probabilities; ``l2_penalty`` is the slim λ of ``regularization_loss()``."""

    type: str = "moe"
    num_mixtures: int = 2
    l2_penalty: float = 1e-8
    prob_gating: bool = False

    def __post_init__(self) -> None:
        check_choice("classifier.type", self.type, HEADS)
        _check_size("classifier.num_mixtures", self.num_mixtures, optional=False)
        if not self.l2_penalty >= 0:
            raise ConfigError(f"classifier.l2_penalty must be >= 0, got {self.l2_penalty!r}")


@dataclass
class MixtureConfig:
    """A mixture of ``branches`` copies of the model (Lin et al. 2018, ``MixNeXtVladModel``); 1 = no mixture.

    A gate on the mean frame, ``w = softmax(BN(x̄) W + b)``, mixes the branches' logits, ``z = Σ_b w_b z_b``, and
    the model predicts ``σ(z)`` (:class:`~videopool.models.mixture.MixtureClassifier`). Training adds every
    branch's BCE and ``distillation_weight · mean_batch Σ_b KL(p ‖ p_b)`` with ``p = softmax_c(z / temperature)``
    over the classes. ``x̄`` averages the real frames; ``padded_frames_in_gate`` divides by the padded length
    instead, as the reference does (its input is always padded to 300 frames)."""

    branches: int = 1
    temperature: float = 2.0
    distillation_weight: float = 1.0
    padded_frames_in_gate: bool = False

    def __post_init__(self) -> None:
        if self.branches < 1:
            raise ConfigError(f"mixture.branches must be >= 1 (1 = no mixture), got {self.branches}")
        if not self.temperature > 0:
            raise ConfigError(f"mixture.temperature must be > 0, got {self.temperature}")
        if not self.distillation_weight >= 0:
            raise ConfigError(f"mixture.distillation_weight must be >= 0, got {self.distillation_weight}")


@dataclass
class ModelConfig:
    """Everything needed to build a :class:`~videopool.models.classifier.VideoClassifier`.

    ``modalities`` is an ordered mapping ``name -> feature size``; its order is the concatenation order.
    ``l2_normalize_frames`` divides every frame by the L2 norm of its concatenated modalities (jointly, as the TF1 code bases do);
    ``input_batch_norm`` adds a masked batch norm per modality before pooling. ``mixture.branches > 1`` builds a
    :class:`~videopool.models.mixture.MixtureClassifier` of that many such models instead.
    """

    num_classes: int = 3862
    modalities: dict[str, int] = field(default_factory=lambda: {"rgb": 1024, "audio": 128})
    l2_normalize_frames: bool = True
    input_batch_norm: bool = True
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    hidden: HiddenConfig = field(default_factory=HiddenConfig)
    gating: GatingConfig = field(default_factory=GatingConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ConfigError("modalities must name at least one feature, e.g. {rgb: 1024, audio: 128}")
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be positive, got {self.num_classes}")
        if self.num_classes > MAX_CLASSES:
            raise ConfigError(f"num_classes {self.num_classes:,} is more than {MAX_CLASSES:,}: the classifier would "
                              "not fit in memory (is it the right --num-classes or vocabulary?)")
        keys: dict[str, str] = {}
        for modality, size in self.modalities.items():
            if not isinstance(modality, str) or not modality:
                raise ConfigError(f"modalities has an empty or non-string feature name {modality!r}")
            _check_size(f"modalities.{modality}", size, optional=False)
            clash = keys.setdefault(module_key(modality), modality)
            if clash != modality:
                raise ConfigError(f"modalities {clash!r} and {modality!r} map to the same module key "
                                  f"{module_key(modality)!r}; rename one")
        if self.hidden.init == "willow" and self.pooling.cluster_size is None:
            raise ConfigError("hidden.init 'willow' draws N(0, 1/K) from pooling.cluster_size, which is not set: "
                              "set pooling.cluster_size or use hidden.init xavier")
        for section, mapping in (
            ("pooling.cluster_size_divisor", self.pooling.cluster_size_divisor),
            ("pooling.per_modality", self.pooling.per_modality),
        ):
            for modality in mapping:
                if modality not in self.modalities:
                    raise ConfigError(
                        f"{section} names modality {modality!r}, which is not in modalities "
                        f"{list(self.modalities)}{closest_hint(modality, self.modalities)}"
                    )
        if self.fusion.type == "mfb" and len(self.modalities) < 2:
            raise ConfigError(f"fusion.type 'mfb' needs two modalities, got {list(self.modalities)}")
        if self.mixture.branches > 1 and (self.classifier.type != "logistic" or self.classifier.prob_gating):
            raise ConfigError(
                f"mixture.branches {self.mixture.branches} mixes the branches' logits, so it needs "
                f"classifier.type 'logistic' without classifier.prob_gating, got {self.classifier.type!r}"
                f"{' with prob_gating' if self.classifier.prob_gating else ''}"
            )

    @property
    def feature_names(self) -> list[str]:
        """The modality names in concatenation order (the TFRecord feature keys)."""
        return list(self.modalities)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model config") -> "ModelConfig":
        return parse_dataclass(cls, data, source)

