"""Training: the loop, checkpoints, optimizer recipe, precision and torchrun support.

    from videopool.training import build_config, train
    config = build_config("gated_netvlad_256_small", None, {"train_data": ["d/train-*.tfrecord"], "max_steps": 100}, "runs/x")
    train(config, num_classes=3862)
"""

from videopool._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config",
    "resolve_train_config": "config",
    "parse_set_arguments": "config",
    "build_config": "api",
    "num_classes_for": "api",
    "train_named_model": "api",
    "train": "loop",
    "evaluate": "loop",
    "Trainer": "loop",
    "NonFiniteLossError": "loop",
    "binary_cross_entropy_on_probabilities": "losses",
    "staircase_learning_rate": "optim",
    "clip_gradients": "optim",
    "create_adam": "optim",
    "BF16MasterWeights": "optim",
    "resolve_precision": "precision",
    "tune_malloc": "malloc",
    "save_weights": "checkpoint",
    "load_weights_into": "checkpoint",
    "read_info": "checkpoint",
    "atomic_path": "checkpoint",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
