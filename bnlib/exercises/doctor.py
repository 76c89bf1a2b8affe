"""Checkers for the exercises of chapter 08 (when batch norm goes wrong): the momentum for k
updates per step, a recalibration by hand, and the mode truth table as a function."""

from __future__ import annotations

import torch
from torch import nn

from bnlib.exercises import distributed as per_update
from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = ["MODE_MISTAKES", "MOMENTUM_MISTAKES", "RECALIBRATION_MISTAKES",
           "check_mode_table", "check_momentum_for_updates", "check_recalibration"]


# --------------------------------------------------------------------------- the momentum


def _after_updates(momentum: float, updates: int, x: torch.Tensor) -> torch.Tensor:
    """``running_mean`` of a ``torch.nn.BatchNorm1d`` (starting at 0) after ``updates``
    training-mode forwards of the same batch ``x`` with ``momentum``, then one more batch
    ``x + 1`` seen ``updates`` times: what a checkpointed layer stores."""
    bn = nn.BatchNorm1d(x.shape[1], momentum=float(momentum), dtype=torch.float64).train()
    with torch.no_grad():
        for batch in (x, x + 1.0):
            for _ in range(updates):
                bn(batch)
    return bn.running_mean.clone()


def _effect(answer):
    """The reader's momentum, judged by what torch stores with it: k updates per batch."""
    def stored(momentum, updates, x):
        return _after_updates(answer(momentum, updates), updates, x)
    stored.__name__ = getattr(answer, "__name__", "answer")
    return stored


#: Typical mistakes for ``my_momentum(momentum, updates)``: chapter 07's
#: (:data:`bnlib.exercises.distributed.MOMENTUM_MISTAKES`), judged by what torch stores.
MOMENTUM_MISTAKES = tuple(Mistake(mistake.name, _effect(mistake.answer))
                          for mistake in per_update.MOMENTUM_MISTAKES)


def check_momentum_for_updates(answer) -> Verdict:
    """Check ``answer(momentum, updates) -> float``, the momentum that makes ``updates`` (k)
    updates per step from the same batch (gradient checkpointing: k = 2) store what one update
    of ``momentum`` stores, by running ``torch.nn.BatchNorm1d`` with it: k updates per batch
    against one."""
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 2
    cases = [Case(f"m={m}, k={k}", (m, k, x), f"momentum {m}, {k} updates per step")
             for m, k in ((0.1, 2), (0.3, 3), (0.5, 4))]
    return check_answers("check_momentum_for_updates", _effect(answer), cases,
                         expected=lambda m, k, v: _after_updates(m, 1, v),
                         outputs=("running_mean",), tolerance=1e-9, mistakes=MOMENTUM_MISTAKES,
                         reference_name="torch.nn.BatchNorm1d, one update per batch")


# --------------------------------------------------------------------------- recalibration


def _pooled(batches):
    x = torch.cat(list(batches)).double()
    axes = [0, *range(2, x.dim())]
    return x.mean(axes), x.var(axes, unbiased=True)


#: Typical mistakes for ``my_recalibration(batches) -> (mean, var)``.
RECALIBRATION_MISTAKES = (
    Mistake("the biased variance (divided by M, not M - 1)",
            lambda b: (_pooled(b)[0], torch.cat(list(b)).double().var(
                [0, *range(2, b[0].dim())], unbiased=False))),
    Mistake("the mean of the batches' variances (update_bn's rule, without the spread "
            "between batches)",
            lambda b: (_pooled(b)[0], torch.stack([v.double().var(
                [0, *range(2, v.dim())], unbiased=True) for v in b]).mean(0))),
    Mistake("batch means averaged with equal weight although the batches differ in size",
            lambda b: (torch.stack([v.double().mean([0, *range(2, v.dim())]) for v in b]).mean(0),
                       _pooled(b)[1])),
)


def check_recalibration(answer) -> Verdict:
    """Check ``answer(batches) -> (mean, var)``: the population statistics one BN layer's inputs
    have over a list of batches (N_i, C, H, W) of different sizes, per channel: the mean and the
    unbiased variance over every value, as ``bnlib.inference.recalibrate`` stores them, against
    torch on the concatenated batches."""
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(n, 3, 2, 2, generator=g, dtype=torch.float64) * s + c
               for n, s, c in ((2, 1.0, 3.0), (6, 2.0, -1.0), (3, 0.5, 0.0))]
    cases = [Case("three batches (2, 6, 3 images)", (batches,), "batches of 2, 6 and 3"),
             Case("(N, C) batches", ([b.flatten(2).mean(2) for b in batches],),
                  "fully connected inputs")]
    return check_answers("check_recalibration", answer, cases, expected=_pooled,
                         outputs=("mean", "var"), tolerance=1e-9,
                         mistakes=RECALIBRATION_MISTAKES,
                         reference_name="torch.cat(batches).mean / .var(unbiased=True)")


# --------------------------------------------------------------------------- the mode table


def _torch_mode(training: bool, track_running_stats: bool, buffers: bool):
    """What ``torch.nn.BatchNorm2d`` does, measured: (1 if it normalises with batch statistics,
    1 if a forward pass changes its buffers)."""
    bn = nn.BatchNorm2d(2, affine=False, track_running_stats=buffers, dtype=torch.float64)
    if buffers:
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(2.0)
    bn.track_running_stats = track_running_stats
    bn.train(training)
    x = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64) * 3 + 1
    before = None if not buffers else bn.running_mean.clone()
    with torch.no_grad():
        out = bn(x)
    batch = nn.functional.batch_norm(x, None, None, training=True)
    updates = buffers and not torch.equal(before, bn.running_mean)
    return float(torch.allclose(out, batch)), float(updates)


def _as_numbers(answer):
    def numbers(training, track, buffers):
        uses_batch, updates = answer(training, track, buffers)
        return float(bool(uses_batch)), float(bool(updates))
    numbers.__name__ = getattr(answer, "__name__", "answer")
    return numbers


#: Typical mistakes for ``my_mode(training, track_running_stats, buffers)``.
MODE_MISTAKES = (
    Mistake("eval mode always uses running statistics (even without buffers)",
            _as_numbers(lambda t, k, b: (t, t and k and b))),
    Mistake("track_running_stats=False makes train mode use the stored statistics",
            _as_numbers(lambda t, k, b: (t and k or not b, t and k and b))),
    Mistake("train mode updates whenever buffers exist, whatever track_running_stats says",
            _as_numbers(lambda t, k, b: (t or not b, t and b))),
)


def check_mode_table(answer) -> Verdict:
    """Check ``answer(training, track_running_stats, buffers) -> (uses_batch_statistics,
    updates)`` (two booleans) against ``torch.nn.BatchNorm2d`` measured in each of the eight
    settings (``buffers``: built with ``track_running_stats=True``; the flag set afterwards)."""
    cases = [Case(f"{'train' if t else 'eval'}, track={k}, buffers={b}", (t, k, b))
             for t in (True, False) for k in (True, False) for b in (True, False)]
    return check_answers("check_mode_table", _as_numbers(answer), cases, expected=_torch_mode,
                         outputs=("uses_batch_statistics", "updates"), tolerance=0.0,
                         mistakes=MODE_MISTAKES, reference_name="torch.nn.BatchNorm2d, measured")
