"""A model's loss and accuracy on a labelled set, in eval mode: what the training loop records
after each epoch and what the probes measure while it runs (below both, so neither imports the
other)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["accuracy", "evaluate"]


def evaluate(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 250, channels_last: bool = False
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of ``model`` in eval mode over
    ``images`` (N, ...) and ``labels`` (N,). The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    total_loss = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            if channels_last:
                x = x.contiguous(memory_format=memory_format)
            y = labels[start : start + batch_size]
            logits = model(x)
            total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return float(total_loss) / len(images), int(correct) / len(images)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 250) -> float:
    """Fraction of ``images`` (N, ...) whose arg-max logit equals ``labels`` (N,), in eval mode
    (the model's mode is restored). The one accuracy of bnlib."""
    return evaluate(model, images, labels, batch_size)[1]
