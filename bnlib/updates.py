"""Which forward passes update the running statistics: fixes for the loops of chapter 08.

A BN layer's running statistics are updated by every training-mode forward pass, not by the
optimiser. These helpers make a loop's updates match its optimiser steps again:

* ``no_updates``: a context in which training-mode passes normalise with batch statistics
  as usual but update nothing (``track_running_stats`` off for the duration);
* ``checkpoint_without_updates``: ``torch.utils.checkpoint`` whose recomputation does not
  update a second time (momentum 0 during the recomputation, the count put back);
* ``scale_momentum``: the per-update momentum for k updates per step
  (``bnlib.running.momentum_for_updates``) set on every BN layer of a module;
* ``snapshot_statistics`` / ``restore_statistics``: put the buffers back when a step is
  skipped (a mixed-precision step whose forward overflowed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bnlib.inference import batch_norm_layers
from bnlib.running import momentum_for_updates

__all__ = ["checkpoint_without_updates", "no_updates", "restore_statistics", "scale_momentum",
           "snapshot_statistics"]


@contextlib.contextmanager
def no_updates(module: nn.Module) -> Iterator[None]:
    """Inside the block, no BN layer of ``module`` updates its running statistics or
    ``num_batches_tracked``; train-mode layers still normalise with batch statistics and
    eval-mode layers with their running ones (``track_running_stats=False`` with the buffers
    kept does exactly that, in torch and bnlib). The flags are restored on exit."""
    layers = batch_norm_layers(module)
    flags = [bn.track_running_stats for bn in layers]
    for bn in layers:
        bn.track_running_stats = False
    try:
        yield
    finally:
        for bn, flag in zip(layers, flags):
            bn.track_running_stats = flag


@contextlib.contextmanager
def _updates_undone(module: nn.Module) -> Iterator[None]:
    """Inside the block BN layers of ``module`` keep their buffers as they were: momentum 0
    (the update ``(1 - 0) * old + 0 * batch`` leaves ``old``) and ``num_batches_tracked`` put
    back on exit. The layers still receive their buffers, so the tensors autograd saves are
    those of a normal forward (checkpointing compares them)."""
    layers = batch_norm_layers(module)
    kept = [(bn.momentum,
             None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone())
            for bn in layers]
    for bn in layers:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, (momentum, count) in zip(layers, kept):
            bn.momentum = momentum
            if count is not None:
                bn.num_batches_tracked.copy_(count)


def checkpoint_without_updates(segment: nn.Module, *args: Tensor) -> Tensor:
    """``segment(*args)`` through ``torch.utils.checkpoint`` (``use_reentrant=False``), with the
    recomputation in the backward pass leaving the running statistics and
    ``num_batches_tracked`` as they were: they are updated once per forward, as without
    checkpointing (the recomputed batch statistics, and so the gradients, are the same)."""
    return checkpoint(segment, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _updates_undone(segment)))


def scale_momentum(module: nn.Module, updates: int) -> nn.Module:
    """Set every BN layer of ``module`` to the momentum that makes ``updates`` updates per
    optimiser step move its running statistics as one update of its current momentum does
    (``bnlib.running.momentum_for_updates``; ``None`` stays ``None``). Returns ``module``."""
    for bn in batch_norm_layers(module):
        bn.momentum = momentum_for_updates(bn.momentum, updates)
    return module


def snapshot_statistics(model: nn.Module) -> list[tuple[Tensor, Tensor, Tensor | None]]:
    """Copies of every BN layer's ``running_mean``, ``running_var`` and
    ``num_batches_tracked``, for ``restore_statistics``."""
    return [(bn.running_mean.clone(), bn.running_var.clone(),
             None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone())
            for bn in batch_norm_layers(model)]


@torch.no_grad()
def restore_statistics(model: nn.Module, snapshot: list) -> None:
    """Put back the buffers ``snapshot_statistics`` copied (same model, same layers)."""
    layers = batch_norm_layers(model)
    if len(layers) != len(snapshot):
        raise ValueError(f"the snapshot has {len(snapshot)} layers, the model {len(layers)}")
    for bn, (mean, var, count) in zip(layers, snapshot):
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        if count is not None:
            bn.num_batches_tracked.copy_(count)


def step_unless_skipped(scaler, optimizer, model: nn.Module, snapshot: list) -> bool:
    """``scaler.step(optimizer)`` and ``scaler.update()``; if the scaler skipped the step (it
    found inf/NaN gradients, so its scale went down), restore the BN statistics of
    ``snapshot`` (taken before the step's forward). Returns True if the step was taken."""
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    taken = scaler.get_scale() >= scale
    if not taken:
        restore_statistics(model, snapshot)
    return taken


__all__ += ["step_unless_skipped"]
