"""Data-parallel training with ``torch.nn.parallel.DistributedDataParallel``, shard by shard.

:func:`train_data_parallel` trains a model in the current ``torch.distributed`` group (or alone,
without one): every process holds a replica; each global batch of ``batch_size`` samples is cut
into contiguous shards, replica r taking samples ``r*b:(r+1)*b`` with ``b = batch_size / R``
(the last, smaller batch of an epoch gives uneven shards, possibly empty ones). Unlike
``DistributedSampler``'s interleaved, padded shards, this makes a run on R processes comparable
sample for sample with a run on one.

Each shard may be cut again into ``accumulation`` micro-batches (gradient accumulation): each
micro-batch is one forward pass, hence one *update* of the running statistics, and the optimiser
steps once per global batch. The loss of a micro-batch is its summed cross-entropy divided by the
global batch's count and multiplied by R, because DDP averages the replicas' gradients (the mean
loss of an empty shard would be NaN); the gradient is then exactly the global batch's mean loss's.
Gradients are synchronised on the last micro-batch only (``no_sync()`` before). The loop runs in
DDP's ``join(throw_on_early_termination=True)``: a replica that runs out of batches makes every
replica stop at its next step instead of waiting in a collective.

:func:`train_config_replica` does this for a :class:`bnlib.training.RunConfig` exactly as
:func:`bnlib.training.train` would alone (same data, initial weights, shuffling, optimiser), so a
run on R processes compares with the single-process run of the same configuration.

The command line runs one such training in every process of a group, started by ``torchrun``
(whose store, like any store rank 0 starts, listens on every interface)::

    torchrun --nproc-per-node 2 -m bnlib.training.data_parallel --sync --out result.json

or started by :func:`bnlib.distributed.launch`, whose store listens on 127.0.0.1 only. Rank 0
writes the result (``replicas``, ``steps``, ``test_accuracy``, ``test_loss``,
``seconds_per_step``) as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnlib import settings
from bnlib.distributed import init_from_environment, rank, world_size
from bnlib.training.config import RunConfig
from bnlib.evaluation import evaluate
from bnlib.inference import batch_norm_layers
from bnlib.training.loop import _load_data, _make_optimizer

__all__ = ["main", "shard", "shard_loss", "train_config_replica",
           "train_data_parallel"]


def shard(batch: Tensor, replica: int, replicas: int, per_replica: int) -> Tensor:
    """Replica ``replica``'s contiguous slice ``replica*b:(replica+1)*b`` of a global batch
    (``b = per_replica``; empty when the batch is too short)."""
    if not 0 <= replica < replicas:
        raise ValueError(f"replica {replica} is not in 0..{replicas - 1}")
    return batch[replica * per_replica : (replica + 1) * per_replica]


def shard_loss(logits: Tensor, targets: Tensor, global_count: int, replicas: int) -> Tensor:
    """Cross-entropy summed over a shard, divided by the global batch's ``global_count`` and
    multiplied by ``replicas``: DDP's average of these gradients is the global mean loss's."""
    total = nn.functional.cross_entropy(logits, targets, reduction="sum")
    return total * (replicas / global_count)


def train_data_parallel(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    epochs: int,
    shuffle: torch.Generator,
    accumulation: int = 1,
    broadcast_buffers: bool = True,
    steps: int | None = None,
    join: bool = True,
    channels_last: bool = False,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> dict:
    """Train ``model`` (this process's replica) on ``images`` (N, ...) and ``labels`` (N,), data
    parallel over the current group (see the module docstring); returns what this replica saw.

    Args:
        model: the replica (the same initial weights on every process; DDP broadcasts rank 0's).
            Its batch norm layers are used as they are (convert them to
            :class:`bnlib.nn.SyncBatchNorm` first to synchronise their statistics).
        optimizer: over ``model``'s parameters.
        batch_size: the global batch per optimiser step (divisible by replicas * accumulation).
        epochs: passes over the data, each in the order ``torch.randperm(N, generator=shuffle)``.
        accumulation: micro-batches per replica per optimiser step (k updates per step).
        broadcast_buffers: DDP's switch (``broadcast_buffers``, called ``forward_sync_buffers``
            since torch 2.13): rank 0's buffers are copied to every replica before each
            forward pass (torch's default, True) or each replica keeps its own.
        steps: stop after this many optimiser steps on this replica (None: all of them); uneven
            counts end every replica at the shortest one's (DDP's join).
        join: train inside DDP's ``join(throw_on_early_termination=True)`` (the default). It
            changes whose buffers DDP copies: under join, those of the highest rank still
            training, and at its end every replica gets the last rank's buffers; without, rank
            0's before each forward and nothing at the end.
        channels_last: feed the batches in the channels-last memory format.
        on_step: called as ``on_step(step, model)`` after each optimiser step (step from 1).

    Returns:
        ``{"steps", "stopped_early", "losses" (the global batch's mean loss per step, as this
        replica's share), "seconds_per_step" (list), "replicas"}``.
    """
    replicas = world_size()
    per_micro, remainder = divmod(batch_size, replicas * accumulation)
    if remainder or per_micro < 1:
        raise ValueError(f"batch_size {batch_size} is not divisible by {replicas} replicas times "
                         f"{accumulation} micro-batches")
    per_replica = per_micro * accumulation
    parallel = replicas > 1
    # torch 2.13 calls broadcast_buffers forward_sync_buffers (the old name is deprecated);
    # buffers are synchronised at construction either way (they start equal here)
    wrapped = (nn.parallel.DistributedDataParallel(model, forward_sync_buffers=broadcast_buffers)
               if parallel else model)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    joined = (wrapped.join(throw_on_early_termination=True) if parallel and join
              else contextlib.nullcontext())
    done, losses, seconds, stopped_early = 0, [], [], False
    model.train()
    try:
        with joined:
            for _ in range(epochs):
                order = torch.randperm(len(images), generator=shuffle)
                for start in range(0, len(images), batch_size):
                    if steps is not None and done >= steps:
                        break
                    batch = order[start : start + batch_size]
                    began = time.perf_counter()
                    loss = _step(wrapped, optimizer, images, labels, batch,
                                 shard(batch, rank(), replicas, per_replica), per_micro,
                                 replicas, memory_format)
                    seconds.append(time.perf_counter() - began)
                    losses.append(loss)
                    done += 1
                    if on_step is not None:
                        on_step(done, model)
    except RuntimeError as error:
        if "exhausted" not in str(error) and "early termination" not in str(error).lower():
            raise
        stopped_early = True
    return {"steps": done, "stopped_early": stopped_early, "losses": losses,
            "seconds_per_step": seconds, "replicas": replicas}


def _step(wrapped, optimizer, images, labels, batch, mine, per_micro, replicas,
          memory_format) -> float:
    """One optimiser step: this replica's micro-batches, gradients synchronised on the last."""
    optimizer.zero_grad(set_to_none=True)
    micro_batches = torch.split(mine, per_micro) if len(mine) else (mine,)
    total = torch.zeros((), dtype=torch.float64)
    for i, micro in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last or not hasattr(wrapped, "no_sync") \
            else wrapped.no_sync()
        with sync:
            inputs = images[micro].contiguous(memory_format=memory_format)
            loss = shard_loss(wrapped(inputs), labels[micro], len(batch), replicas)
            loss.backward()
        total += loss.detach().double()
    optimizer.step()
    return float(total) / replicas


def train_config_replica(
    config: RunConfig,
    *,
    sync: bool = False,
    accumulation: int = 1,
    broadcast_buffers: bool = True,
    join: bool = True,
    bn_momentum: float | None | str = "keep",
    threads: int = 1,
) -> dict:
    """Train ``config`` as :func:`bnlib.training.train` would, data parallel over the current
    group (or alone): same train subset, initial weights (``torch.manual_seed(config.seed)``),
    shuffling (seed + 2), optimiser and memory format. Runs in every process of the group.

    Args:
        config: the run; ``batch_size`` is the global batch.
        sync: convert the batch norm layers to :class:`bnlib.nn.SyncBatchNorm` first.
        accumulation, broadcast_buffers, join: as :func:`train_data_parallel`.
        bn_momentum: set every batch norm layer's momentum to this (a number or None);
            ``"keep"``: leave it.
        threads: torch threads in this process.

    Returns:
        this replica's ``{"test_loss", "test_accuracy"`` (its own buffers, eval mode),
        ``"model"`` (the trained replica, in eval mode), ``"losses", "seconds_per_step",
        "steps", "stopped_early", "replicas", "rank"}``.
    """
    from bnlib.nn import SyncBatchNorm

    with settings.torch_threads(threads):
        x_train, y_train, x_test, y_test = _load_data(config)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        x_train = x_train.contiguous(memory_format=memory_format)
        torch.manual_seed(config.seed)
        model = config.build_model().to(memory_format=memory_format)
        if sync:
            model = SyncBatchNorm.convert_sync_batchnorm(model)
        if bn_momentum != "keep":
            for layer in batch_norm_layers(model):
                layer.momentum = bn_momentum
        optimizer = _make_optimizer(config, model)
        shuffle = torch.Generator().manual_seed(config.seed + 2)
        outcome = train_data_parallel(
            model, x_train, y_train, optimizer, batch_size=config.batch_size,
            epochs=config.epochs, shuffle=shuffle, accumulation=accumulation,
            broadcast_buffers=broadcast_buffers, join=join, channels_last=config.channels_last)
        test_loss, test_accuracy = evaluate(model, x_test, y_test,
                                            channels_last=config.channels_last)
    return {**outcome, "test_loss": test_loss, "test_accuracy": test_accuracy,
            "model": model.eval(), "rank": rank()}



def main(argv: list[str] | None = None) -> dict:
    """The command line (see the module docstring): chapter 04's configuration of the
    three-convolution net with torch's BatchNorm2d (``--sync``: converted to
    :class:`bnlib.nn.SyncBatchNorm`), trained data parallel in the group torchrun describes."""
    parser = argparse.ArgumentParser(prog="python -m bnlib.training.data_parallel",
                                     description=main.__doc__)
    parser.add_argument("--sync", action="store_true", help="synchronised batch norm")
    parser.add_argument("--train-subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file rank 0 writes")
    options = parser.parse_args(argv)
    init_from_environment()
    config = RunConfig(model="three_conv_net", model_kwargs={"norm": "batch"},
                       optimizer="momentum", lr=0.01, momentum=0.9, seed=options.seed,
                       batch_size=options.batch_size, epochs=options.epochs,
                       train_subset=options.train_subset)
    result = train_config_replica(config, sync=options.sync)
    summary = {name: result[name] for name in ("replicas", "steps", "test_accuracy", "test_loss")}
    summary["seconds_per_step"] = sum(result["seconds_per_step"]) / max(1, result["steps"])
    if rank() == 0:
        text = json.dumps(summary)
        if options.out:
            with open(options.out, "w") as handle:
                handle.write(text)
        print(text)
    return summary


if __name__ == "__main__":
    main()
