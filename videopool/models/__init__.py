"""Models: the :class:`VideoClassifier`, its configuration, the named-config registry and checkpoints.

    from videopool.models import create_model, list_models, load_model
    model = create_model("gated_netvlad_256_small", num_classes=20)
    model, info = load_model("runs/gnv")        # a run directory or a .safetensors checkpoint
"""

from videopool.core.schema import ConfigError
from videopool.models.checkpoint import find_checkpoint, load_model, load_weights_into, read_info, save_weights
from videopool.models.classifier import VideoClassifier
from videopool.models.config import (
    ClassifierConfig,
    FusionConfig,
    GatingConfig,
    HiddenConfig,
    MixtureConfig,
    ModelConfig,
    PoolingConfig,
)
from videopool.models.losses import LOSSES, binary_cross_entropy_on_probabilities, binary_cross_entropy_per_video
from videopool.models.mixture import MixtureClassifier, distillation_loss
from videopool.models.output import ModelOutput, probabilities_of
from videopool.models.overrides import ALIASES, apply_overrides
from videopool.models.registry import (
    NamedConfig,
    UnknownModelError,
    count_parameters,
    create_model,
    get_model_config,
    get_named_config,
    get_recipe,
    list_models,
    load_config,
    model_from_config_dict,
    register_config,
    resolve_config,
)


__all__ = [
    "ALIASES", "LOSSES", "ClassifierConfig", "ConfigError", "FusionConfig", "GatingConfig", "HiddenConfig",
    "MixtureClassifier", "MixtureConfig", "ModelConfig", "ModelOutput", "NamedConfig", "PoolingConfig",
    "UnknownModelError", "VideoClassifier", "apply_overrides", "binary_cross_entropy_on_probabilities",
    "binary_cross_entropy_per_video", "count_parameters", "create_model", "distillation_loss", "find_checkpoint",
    "get_model_config", "get_named_config", "get_recipe", "list_models", "load_config", "load_model",
    "load_weights_into", "model_from_config_dict", "probabilities_of", "read_info", "register_config",
    "resolve_config", "save_weights",
]  # fmt: skip
