"""``watch(model, optimizer)``: who updates the running statistics during a block of training.

Every training-mode forward of a BN layer is an *update* of its running statistics
(``num_batches_tracked += 1``), whatever the optimiser does; an *optimiser step* is
``optimizer.step()``. The watch records both (forward pre-hooks on the BN layers, and
``optimizer.register_step_post_hook``) and reports what they say about the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections import Counter
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from bnlib.doctor.layers import affine_trained, named_batch_norms, tracks, updates_in_training
from bnlib.doctor.report import Finding, Report

__all__ = ["Watch", "watch"]


def _fingerprint(x: Tensor) -> tuple:
    """Shape, dtype and two sums of a batch: equal for a recomputation of the same batch."""
    x = x.detach()
    return (tuple(x.shape), x.dtype, float(x.float().sum()), float(x.float().abs().sum()))


@dataclasses.dataclass
class Watch:
    """What a ``watch`` block saw: ``steps`` (optimiser steps), ``updates`` (layer name ->
    list of ``(steps before it, fingerprint)``), ``non_finite`` (layer name -> the number of
    steps before the update that made its statistics NaN/inf) and, after the block, ``report``."""

    steps: int = 0
    updates: dict[str, list[tuple[int, tuple]]] = dataclasses.field(default_factory=dict)
    non_finite: dict[str, int] = dataclasses.field(default_factory=dict)
    report: Report | None = None

    def per_step(self, name: str) -> list[list[tuple]]:
        """The fingerprints of ``name``'s updates, grouped by the optimiser step they precede
        (the last group: updates after the last step)."""
        groups: list[list[tuple]] = [[] for _ in range(self.steps + 1)]
        for step, fingerprint in self.updates.get(name, []):
            groups[step].append(fingerprint)
        return groups


def _findings(record: Watch, model: nn.Module, trained: set[int],
              was_eval: set[str]) -> list[Finding]:
    found = []
    for name, bn in named_batch_norms(model):
        updates = record.updates.get(name, [])
        if not updates:
            continue
        groups = record.per_step(name)[: record.steps]  # groups that ended with a step
        if name in record.non_finite:
            found.append(Finding(
                "non-finite-statistics", name,
                f"an update before optimiser step {record.non_finite[name] + 1} made its running "
                "statistics NaN/inf (the forward overflowed); skipping that step does not undo it",
                "restore the statistics when a step is skipped (bnlib.updates."
                "restore_statistics), then recalibrate (bnlib.inference.recalibrate)", "error"))
        repeated = max((max(Counter(g).values()) for g in groups if g), default=1)
        if repeated > 1:
            found.append(Finding(
                "repeated-update", name,
                f"updated its running statistics {repeated} times from the same batch before "
                "one optimiser step (gradient checkpointing recomputes the forward, or a forward "
                f"was repeated): momentum {bn.momentum} acts as 1 - (1 - m)^{repeated}",
                f"momentum bnlib.running.momentum_for_updates({bn.momentum}, {repeated}) for this "
                "layer, or recompute without updates (bnlib.updates.checkpoint_without_updates)"))
        distinct = [len(set(g)) for g in groups[1:]]
        typical = statistics.median(distinct) if distinct else None
        if record.steps == 0:
            found.append(Finding(
                "updates-without-step", name,
                f"{len(updates)} updates of its running statistics and no optimiser step: "
                "train-mode passes outside training (evaluation without model.eval(), warm-up)",
                "model.eval() around every pass that is not a training step"))
        elif typical is not None and len(set(groups[0])) > typical:
            found.append(Finding(
                "updates-before-first-step", name,
                f"{len(set(groups[0]))} updates before the first optimiser step, {typical:g} "
                "before each later one: warm-up or sanity passes in train mode moved the "
                "running statistics",
                "run warm-up and sanity passes in eval mode (or under bnlib.updates.no_updates)"))
        if typical is not None and typical > 1:
            found.append(Finding(
                "several-updates-per-step", name,
                f"{typical:g} updates from different batches per optimiser step (gradient "
                "accumulation, several views, a GAN's real and fake batches): the running "
                "statistics move k times as fast as one update per step would",
                f"if one update per step is meant, momentum bnlib.running.momentum_for_updates("
                f"{bn.momentum}, {int(typical)})", "info"))
        if name in was_eval or (bn.weight is not None and not affine_trained(bn, trained)):
            found.append(Finding(
                "frozen-but-updating", name,
                "the optimiser does not train this layer (or it was in eval mode, in a model in "
                "train mode, when the watch began) but its running statistics were updated "
                f"{len(updates)} times",
                "bnlib.inference.freeze_batch_norm(model), which model.train() cannot undo"))
    return found


@contextlib.contextmanager
def watch(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[Watch]:
    """Record, during the ``with`` block, every update of ``model``'s BN running statistics and
    every ``optimizer.step()``; on exit, ``record.report`` holds the findings:
    ``repeated-update`` (the same batch twice before one step), ``updates-before-first-step``,
    ``updates-without-step``, ``several-updates-per-step`` (information),
    ``frozen-but-updating`` and ``non-finite-statistics``. The hooks only read; they are
    removed on exit.
    """
    record = Watch()
    layers = [(n, m) for n, m in named_batch_norms(model) if tracks(m)]
    # layers put in eval mode inside a model in train mode: meant to be frozen
    was_eval = {n for n, m in layers if not m.training and model.training}
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}

    def before(name):
        def hook(module, args):
            if updates_in_training(module):
                record.updates.setdefault(name, []).append((record.steps, _fingerprint(args[0])))
        return hook

    def after(name):
        def hook(module, args, output):
            if name not in record.non_finite and updates_in_training(module) and not bool(
                    torch.isfinite(module.running_mean).all() and torch.isfinite(
                        module.running_var).all()):
                record.non_finite[name] = record.steps
        return hook

    def stepped(opt, args, kwargs):
        record.steps += 1

    handles = [m.register_forward_pre_hook(before(n)) for n, m in layers]
    handles += [m.register_forward_hook(after(n)) for n, m in layers]
    handles.append(optimizer.register_step_post_hook(stepped))
    try:
        yield record
    finally:
        for h in handles:
            h.remove()
    record.report = Report(_findings(record, model, trained, was_eval))
