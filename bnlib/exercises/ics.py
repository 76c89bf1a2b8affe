"""Checkers for the exercises of chapter 01 (internal covariate shift).

* :func:`check_percentiles`: ``percentiles(values) -> (3, U)``, the 15th, 50th and 85th
  percentiles of each unit's input over a batch (Ioffe & Szegedy's Figure 1);
* :func:`check_noisy_batch_norm`: ``noisy(x, gamma, beta, eps, noise_mean, noise_std, z)``,
  batch norm with Santurkar et al.'s noise added after it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = ["NOISY_MISTAKES", "PERCENTILE_MISTAKES", "check_noisy_batch_norm",
           "check_percentiles"]

LEVELS = (15, 50, 85)


def _values(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Skewed, off-centre inputs of a sigmoid: (N, U), units on different scales."""
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, size=shape) * rng.uniform(0.5, 3.0, size=shape[1]) - 1.0


#: The percentiles' typical mistakes, each as the code that makes it.
PERCENTILE_MISTAKES = (
    Mistake("the percentiles over the units (axis 1), not over the examples",
            lambda v: np.percentile(v, LEVELS, axis=1)),
    Mistake("fractions given where np.percentile takes percents (0.15, not 15)",
            lambda v: np.percentile(v, [q / 100 for q in LEVELS], axis=0)),
    Mistake("the percentiles of the sigmoid's output, not of its input",
            lambda v: np.percentile(1 / (1 + np.exp(-v)), LEVELS, axis=0)),
    Mistake("the nearest lower value instead of interpolating",
            lambda v: np.percentile(v, LEVELS, axis=0, method="lower")),
)


def check_percentiles(percentiles: Callable, *, tolerance: float = 1e-10) -> Verdict:
    """Check ``percentiles(values)``: for ``values`` (N, U) (N examples of U units' inputs),
    the (3, U) array of the 15th, 50th and 85th percentiles of each unit (linear
    interpolation), against ``torch.quantile``, on batches of (40, 3) and (7, 5)."""
    cases = [Case(str(shape), (_values(shape, seed),), f"values of shape {shape}")
             for seed, shape in enumerate(((40, 3), (7, 5)))]

    def expected(values):
        q = torch.tensor([level / 100 for level in LEVELS], dtype=torch.float64)
        return torch.quantile(torch.from_numpy(values), q, dim=0)

    return check_answers("check_percentiles", percentiles, cases, expected, ("percentiles",),
                         tolerance=tolerance, mistakes=PERCENTILE_MISTAKES,
                         reference_name="torch.quantile (linear interpolation)")


def _noisy(x, gamma, beta, eps, noise_mean, noise_std, z, *, where="after", var=False):
    """BN then noise, with the knobs the typical mistakes turn (NumPy, (N, C) inputs)."""
    noise = noise_mean + (noise_std ** 2 if var else noise_std) * z
    if where == "before":
        x = x + noise
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    if where == "inside":
        return gamma * (x_hat + noise) + beta
    y = gamma * x_hat + beta
    return y + noise if where == "after" else y


#: The noisy BN's typical mistakes, each as the code that makes it.
NOISY_MISTAKES = (
    Mistake("the noise added before BN, which normalises most of it away",
            lambda *a: _noisy(*a, where="before")),
    Mistake("the noise added to x_hat, before gamma and beta scale it",
            lambda *a: _noisy(*a, where="inside")),
    Mistake("the noise's standard deviation used as its variance",
            lambda *a: _noisy(*a, var=True)),
)


def check_noisy_batch_norm(noisy: Callable, *, eps: float = 1e-5,
                           tolerance: float = 1e-10) -> Verdict:
    """Check ``noisy(x, gamma, beta, eps, noise_mean, noise_std, z) -> out`` for ``x`` (N, C):
    training-mode BN, then per channel ``noise_mean + noise_std * z`` added (``z`` (N, C)
    standard normal draws, given so the answer is deterministic), against
    ``torch.nn.functional.batch_norm``; batches of 4 and 16, 3 channels."""
    rng = np.random.default_rng(7)
    cases = []
    for n in (4, 16):
        x = rng.normal(1.0, 2.0, size=(n, 3))
        args = (x, rng.uniform(0.5, 2, 3), rng.normal(size=3), eps,
                rng.uniform(-1, 1, 3), rng.uniform(1.5, 2.5, 3), rng.normal(size=(n, 3)))
        cases.append(Case(f"({n}, 3)", args, f"x of shape {(n, 3)}"))

    def expected(x, gamma, beta, eps, noise_mean, noise_std, z):
        t = torch.from_numpy
        y = F.batch_norm(t(x), None, None, t(gamma), t(beta), training=True, eps=eps)
        return y + t(noise_mean) + t(noise_std) * t(z)

    return check_answers("check_noisy_batch_norm", noisy, cases, expected, ("out",),
                         tolerance=tolerance, mistakes=NOISY_MISTAKES,
                         reference_name="torch.nn.functional.batch_norm, then the noise")
