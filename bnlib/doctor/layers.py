"""Finding the batch norm layers of a model by name, and what a layer's state says."""

from __future__ import annotations

from torch import nn

from bnlib.inference import is_batch_norm

__all__ = ["affine_trained", "named_batch_norms", "tracks", "updates_in_training"]


def named_batch_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every batch norm layer (torch's or bnlib's), in
    registration order, with or without running statistics."""
    return [(name, m) for name, m in model.named_modules() if is_batch_norm(m)]


def tracks(bn: nn.Module) -> bool:
    """True if ``bn`` holds running statistics (its buffers are not None)."""
    return bn.running_mean is not None and bn.running_var is not None


def updates_in_training(bn: nn.Module) -> bool:
    """True if a forward pass of ``bn`` in its current mode updates its running statistics
    (a momentum of 0 moves nothing)."""
    return bn.training and bn.track_running_stats and tracks(bn) and bn.momentum != 0


def affine_trained(bn: nn.Module, trained: set[int] | None = None) -> bool:
    """True if ``bn`` has affine parameters that receive gradients (``requires_grad``) and, when
    ``trained`` (ids of the optimiser's parameters) is given, that the optimiser updates."""
    params = [p for p in (bn.weight, bn.bias) if p is not None]
    if not params:
        return False
    return any(p.requires_grad and (trained is None or id(p) in trained) for p in params)
