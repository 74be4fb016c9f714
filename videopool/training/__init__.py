"""Training: the loop, the optimisation step, the training configuration and precise batch norm.

    from videopool.training import build_config, num_classes_for, train
    config = build_config("gated_netvlad_256_small", None, {"train_data": ["d/train-*.tfrecord"], "max_steps": 100},
                          "runs/x")
    train(config, num_classes_for(config))
"""

from videopool.training.api import build_config, num_classes_for, train_named_model
from videopool.training.batch_norm import recompute_batch_norm
from videopool.training.config import TrainConfig, parse_set_arguments
from videopool.training.loop import Trainer, train
from videopool.training.optim import BF16MasterWeights, clip_gradients, create_adam, staircase_learning_rate
from videopool.training.step import NonFiniteLossError, TrainStep

__all__ = [
    "BF16MasterWeights", "NonFiniteLossError", "TrainConfig", "TrainStep", "Trainer", "build_config",
    "clip_gradients", "create_adam", "num_classes_for", "parse_set_arguments", "recompute_batch_norm",
    "staircase_learning_rate", "train", "train_named_model",
]  # fmt: skip
