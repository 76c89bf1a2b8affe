"""Checkers for the exercises of chapter 05 (the Hindi-digits experiment).

* :func:`check_parameter_counts`: ``counts() -> (without_bn, with_bn)``, the trainable
  parameters of the article's two networks;
* :func:`check_oscillation`: ``oscillation(accuracies) -> float``, the mean absolute change of
  the test accuracy from one epoch to the next.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers
from bnlib.models import three_conv_net

__all__ = ["COUNT_MISTAKES", "OSCILLATION_MISTAKES", "check_oscillation",
           "check_parameter_counts"]


def _counts(*, running=False, conv_bias=True, pooled=True) -> tuple[int, int]:
    """Hand counts of the two networks, with the knobs the mistakes turn."""
    convs = 1 * 16 * 9 + 2 * 16 * 16 * 9 + (3 * 16 if conv_bias else 0)
    linear = (16 * 16 * 16 if pooled else 16 * 32 * 32) * 10 + 10
    bn = 3 * 2 * 16 + (3 * (2 * 16 + 1) if running else 0)
    return convs + linear, convs + linear + bn


#: The counts' typical mistakes, each as the code that makes it.
COUNT_MISTAKES = (
    Mistake("the running statistics counted as parameters",
            lambda: _counts(running=True)),
    Mistake("the convolutions' biases left out", lambda: _counts(conv_bias=False)),
    Mistake("the Linear layer's input taken before the pooling (16 x 32 x 32)",
            lambda: _counts(pooled=False)),
)


def check_parameter_counts(counts: Callable, *, tolerance: float = 1e-12) -> Verdict:
    """Check ``counts() -> (without_bn, with_bn)``, the numbers of trainable parameters of
    the article's network without and with BN, against ``sum(p.numel())`` over
    :func:`bnlib.models.three_conv_net`'s parameters (a relative error of 1e-12 is
    far below one parameter's 2e-5)."""
    def expected():
        return tuple(sum(p.numel() for p in three_conv_net(batch_norm=bn).parameters())
                     for bn in (False, True))

    return check_answers("check_parameter_counts", counts, [Case("", ())], expected,
                         ("without BN", "with BN"), tolerance=tolerance,
                         mistakes=COUNT_MISTAKES,
                         reference_name="sum of p.numel() over the networks' parameters")


#: The oscillation's typical mistakes, each as the code that makes it.
OSCILLATION_MISTAKES = (
    Mistake("the standard deviation of the accuracies", lambda a: float(np.std(a))),
    Mistake("the mean signed change (drops cancel rises)",
            lambda a: float(np.mean(np.diff(a)))),
    Mistake("the sum of the changes divided by the number of epochs",
            lambda a: float(np.abs(np.diff(a)).sum() / len(a))),
)


def check_oscillation(oscillation: Callable, *, tolerance: float = 1e-12) -> Verdict:
    """Check ``oscillation(accuracies) -> float``: the mean of ``|a[k] - a[k-1]|`` over the
    epochs k = 1, 2, ... of a list of per-epoch test accuracies, against ``torch.diff``,
    on a rising curve with drops (12 epochs) and a short one (4 epochs)."""
    rng = np.random.default_rng(5)
    curves = [list(0.9 + 0.08 * np.tanh(np.arange(12) / 3) + rng.normal(0, 0.01, 12)),
              [0.91, 0.95, 0.93, 0.97]]
    cases = [Case(f"{len(c)} epochs", (c,)) for c in curves]

    def expected(accuracies):
        return torch.diff(torch.tensor(accuracies, dtype=torch.float64)).abs().mean()

    return check_answers("check_oscillation", oscillation, cases, expected, ("oscillation",),
                         tolerance=tolerance, mistakes=OSCILLATION_MISTAKES,
                         reference_name="torch.diff(...).abs().mean()")
