"""The rules and words that turn chapter 6's measurements into verdicts and sentences.

Every claim gets one of :data:`VERDICTS`: "holds", "holds with a condition" or "does not hold
here". The thresholds are named constants; each function is tested branch by branch with
synthetic outcomes (``tests/test_benefits.py``). :mod:`bnlib.experiments.benefits` applies them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from bnlib.prose import comparison

__all__ = [
    "COST_SHARE", "CONDITION", "GRADIENT_ORDERS", "HOLDS", "NOT_HERE", "SPEEDUP_MARGIN",
    "TRAINS_ACCURACY", "VERDICTS", "confirmation_text", "convergence_verdict", "cost_verdict",
    "deepest_trainable",
    "depth_verdict",
    "dropout_verdict", "gradient_verdict", "init_verdict", "largest_trainable",
    "learning_rate_verdict", "regularisation_verdict", "steps_to", "trains",
    "divergence_text", "rate_text", "rates_text", "speed_words", "steps_text",
]

VERDICTS = ("holds", "holds with a condition", "does not hold here")
HOLDS, CONDITION, NOT_HERE = VERDICTS
#: A run "trains" if its final test accuracy reaches this (five times chance, 10 classes).
TRAINS_ACCURACY = 0.5
#: BN counts as faster if the other network needs at least this many times its steps.
SPEEDUP_MARGIN = 1.25
#: A gradient-norm spread is "narrower" by at least this many orders of magnitude to hold.
GRADIENT_ORDERS = 1.0
#: BN's share of a time counts as a real cost from this fraction on (well above the timing
#: noise of a shared machine, which moves a median by a few percent).
COST_SHARE = 0.10


def trains(accuracies: Sequence[float]) -> bool:
    """True if every seed's final test accuracy reaches :data:`TRAINS_ACCURACY`."""
    return all(a >= TRAINS_ACCURACY for a in accuracies)


def largest_trainable(by_rate: Mapping[float, Sequence[float]]) -> tuple[float | None,
                                                                         float | None]:
    """(largest rate at which every seed trains, smallest larger rate at which some seed does
    not), from rate -> final test accuracies; ``None`` where there is no such rate."""
    good = [lr for lr, accuracies in by_rate.items() if trains(accuracies)]
    if not good:
        return None, None
    largest = max(good)
    above = [lr for lr in by_rate if lr > largest and not trains(by_rate[lr])]
    return largest, min(above) if above else None


def steps_to(steps: Sequence[int], accuracy: Sequence[float], target: float) -> int | None:
    """The first step at which ``accuracy`` (measured at ``steps``) reaches ``target``."""
    return next((s for s, a in zip(steps, accuracy) if a >= target), None)


def learning_rate_verdict(bn: Mapping[float, Sequence[float]],
                          plain: Mapping[float, Sequence[float]]) -> str:
    """"Higher learning rates without risk of divergence", from rate -> final test accuracies
    per seed of each network: BN's largest rate that trains (:func:`trains`) is larger than the
    plain network's; holds if BN also trains at every rate of the sweep, with a condition if it
    fails to train at some rate (any rate, below or above its largest)."""
    largest_bn, largest_plain = largest_trainable(bn)[0], largest_trainable(plain)[0]
    if largest_bn is None or (largest_plain is not None and largest_bn <= largest_plain):
        return NOT_HERE
    return HOLDS if all(trains(accuracies) for accuracies in bn.values()) else CONDITION


def _faster(bn_steps: float, plain_steps: float) -> bool:
    return math.isfinite(bn_steps) and plain_steps >= SPEEDUP_MARGIN * bn_steps


def convergence_verdict(tuned_bn: float, tuned_plain: float, article_bn: float,
                        article_plain: float) -> str:
    """Steps to the target (``inf``: not reached). Holds if BN is faster by
    :data:`SPEEDUP_MARGIN` with both networks at their best rates; with a condition if only at
    the article's rate."""
    if _faster(tuned_bn, tuned_plain):
        return HOLDS
    return CONDITION if _faster(article_bn, article_plain) else NOT_HERE


def init_verdict(trained_bn: int, trained_plain: int, scales: int) -> str:
    """Counts of initial-weight scales at which each network trains: holds if BN trains at
    more of them and at all; with a condition if at more but not all."""
    if trained_bn <= trained_plain:
        return NOT_HERE
    return HOLDS if trained_bn == scales else CONDITION


def deepest_trainable(by_depth: Mapping[int, Sequence[float]]) -> int | None:
    """The largest depth at which every seed trains (``None``: none), from depth -> final test
    accuracies per seed (each depth at its best rate)."""
    good = [depth for depth, accuracies in by_depth.items() if trains(accuracies)]
    return max(good) if good else None


def depth_verdict(bn: Mapping[int, Sequence[float]], plain: Mapping[int, Sequence[float]]) -> str:
    """"Makes deeper networks trainable", from depth -> final test accuracies per seed of each
    network: BN's deepest stack that trains is deeper than the plain one's; holds if BN trains
    at every depth tried, with a condition if it fails at some depth."""
    deepest_bn, deepest_plain = deepest_trainable(bn), deepest_trainable(plain)
    if deepest_bn is None or (deepest_plain is not None and deepest_bn <= deepest_plain):
        return NOT_HERE
    return HOLDS if all(trains(accuracies) for accuracies in bn.values()) else CONDITION


def gradient_verdict(orders_bn: float, orders_plain: float) -> str:
    """Spread of per-layer gradient norms (orders of magnitude, max/min) at initialisation:
    holds if BN's is narrower by :data:`GRADIENT_ORDERS` or more; with a condition if
    narrower by less."""
    if orders_bn + GRADIENT_ORDERS <= orders_plain:
        return HOLDS
    return CONDITION if orders_bn < orders_plain else NOT_HERE


def regularisation_verdict(gap_bn: float, gap_plain: float, test_bn: float,
                           test_dropout: float, seed_spread: float = 0.0) -> str:
    """"Regularises, can reduce the need for dropout": BN's train/test gap is smaller than the
    plain network's by more than ``seed_spread`` (the seeds' standard deviation of the gaps);
    holds if BN alone also tests at least as well as dropout alone, else with a condition."""
    if gap_plain - gap_bn <= seed_spread:
        return NOT_HERE
    return HOLDS if test_bn >= test_dropout else CONDITION


def dropout_verdict(shift_before: float, shift_after: float, test_before: float,
                    test_after: float) -> str:
    """Li et al.'s claim that dropout before BN harms it: the variance shift behind dropout
    exceeds the one with dropout after BN (holds if it also costs test accuracy; else with a
    condition)."""
    if shift_before <= shift_after:
        return NOT_HERE
    return HOLDS if test_before < test_after else CONDITION


def cost_verdict(train_share: float, folded_share: float) -> str:
    """"BN costs computation": BN's share of a training step reaches :data:`COST_SHARE` (holds
    if folded inference still pays that much; with a condition if folding removes it)."""
    if train_share < COST_SHARE:
        return NOT_HERE
    return HOLDS if folded_share >= COST_SHARE else CONDITION


# --------------------------------------------------------------------------- words


def confirmation_text(original: str, fresh: str) -> str:
    """How a rule's verdict on data it has not seen compares with its first verdict."""
    if original == fresh:
        return "gives the same verdict"
    return f"gives a different verdict, *{fresh}*"


def rate_text(lr: float | None, none: str) -> str:
    """A learning rate as the text shows it (``0.1``), or ``none`` for no rate."""
    return none if lr is None else f"{lr:g}"


def rates_text(rates: Sequence[float]) -> str:
    """"rate 0.1" or "the better of the rates 0.03 and 0.3" (the best of three or more)."""
    if len(rates) == 1:
        return f"rate {rates[0]:g}"
    words = ", ".join(f"{r:g}" for r in rates[:-1]) + f" and {rates[-1]:g}"
    return f"the {'better' if len(rates) == 2 else 'best'} of the rates {words}"


def divergence_text(largest: float | None, fails: float | None) -> str:
    """Where training stops working, worded to follow "the network"."""
    if largest is None:
        return "trains at no rate of the sweep"
    if fails is None:
        return "still trains at the largest rate of the sweep"
    return f"first fails at rate {fails:g}"


def speed_words(bn_steps: float, plain_steps: float) -> str:
    """Completes "BN ... the plain network" from mean steps to the target (``inf``: missed in
    some seed; ``nan``: not measured)."""
    if math.isnan(bn_steps) or math.isnan(plain_steps):
        return "is not compared at this rate with"
    if math.isinf(bn_steps) and math.isinf(plain_steps):
        return "does not reach the target in every seed, and neither does"
    return "needs " + comparison(bn_steps, plain_steps, "fewer steps than",
                                       "more steps than", "as many steps as")


def steps_text(steps: Sequence[int | None]) -> tuple[float, str]:
    """Mean steps over seeds (``inf`` if a seed never reached the target) and its wording."""
    missed = sum(s is None for s in steps)
    if missed:
        return math.inf, f"not reached in {missed} of {len(steps)} seeds"
    mean = statistics.fmean(steps)
    return mean, f"{mean:,.0f}"
