"""What a model's training forward may return, for a model that defines its own training loss.

The contract (docs/architecture.md, "Models"): in eval mode every model's ``forward(frames, mask)`` returns
probabilities ``[B, V]``. A model may also define ``loss(output, labels, reduction) -> Tensor`` (a scalar, the
label loss of the batch, before ``regularization_loss()``); :class:`videopool.training.step.TrainStep` then
hands it whatever the training-mode ``forward`` returned, and such a forward may return a :class:`ModelOutput`:
the probabilities plus the tensors the loss needs (branch logits, segment scores, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ModelOutput", "probabilities_of"]


@dataclass
class ModelOutput:
    """``probabilities [B, V]`` (what the eval-mode forward returns) and ``aux``: named tensors for the model's
    ``loss``. A dataclass, so ``DistributedDataParallel`` finds the tensors inside it."""

    probabilities: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


def probabilities_of(output: torch.Tensor | ModelOutput) -> torch.Tensor:
    """The probabilities ``[B, V]`` of a forward's result, whichever of the two forms it has."""
    return output.probabilities if isinstance(output, ModelOutput) else output
