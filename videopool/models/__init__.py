"""Models: the :class:`VideoClassifier`, its configuration dataclasses and the named-config registry.

    from videopool.models import create_model, list_models
    model = create_model("gated_netvlad_256_small", num_classes=20)
"""

from videopool._lazy import lazy_exports

_EXPORTS = {
    "VideoClassifier": "classifier",
    "HiddenLayer": "classifier",
    "ModelConfig": "config",
    "PoolingConfig": "config",
    "FusionConfig": "config",
    "HiddenConfig": "config",
    "GatingConfig": "config",
    "ClassifierConfig": "config",
    "Recipe": "config",
    "ConfigError": "config",
    "apply_overrides": "overrides",
    "create_model": "registry",
    "list_models": "registry",
    "get_model_config": "registry",
    "get_named_config": "registry",
    "get_recipe": "registry",
    "load_config_file": "registry",
    "model_from_config_dict": "registry",
    "register_config": "registry",
    "resolve_config": "registry",
    "count_parameters": "registry",
    "NamedConfig": "registry",
    "UnknownModelError": "registry",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
