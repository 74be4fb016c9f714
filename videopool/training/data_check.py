"""The training side of the data checks (docs/reliability.md, section 2): which ``--set`` options make the run's
model read a shard of another kind, verified by building the model configuration they describe."""

from __future__ import annotations

from videopool.core.schema import ConfigError
from videopool.data.preflight import modalities_text
from videopool.training.config import TrainConfig

# Model keys that name modalities: when the modalities change they must be emptied (or re-keyed) too.
_KEYED_BY_MODALITY = ("pooling.cluster_size_divisor", "pooling.per_modality")


def override_for_features(config: TrainConfig, num_classes: int, features: dict[str, int]) -> str:
    """``"this model reads it with --set 'modalities={...}' ..."``: the overrides with which ``config.model`` reads
    files holding ``features`` (``{name: size}``), each checked by building the model config; or, when no
    override of this model can, what kind of model does."""
    from videopool.models import resolve_config

    from videopool.data.layouts import features_text

    wanted = modalities_text(features)
    options: dict = {"modalities": dict(features)}
    flags = [f"--features {features_text(features)}"]  # per-modality settings follow (models.overrides)
    while True:
        try:
            resolve_config(config.model, num_classes=num_classes, **{**config.model_overrides, **options})
            return f"this model reads it with {' '.join(flags)}"
        except ConfigError as err:
            keyed = next((key for key in _KEYED_BY_MODALITY if key in str(err) and key not in options), None)
            if keyed is None:
                return f"a model with modalities {wanted} reads it, but not {config.model!r} ({err})"
            options[keyed] = {}
            flags.append(f"--set '{keyed}={{}}'")
