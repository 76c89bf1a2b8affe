"""Checkers for the exercises of chapter 06 (the claimed benefits).

* :func:`check_variance_shift`: ``shift(mean, var, p) -> ratio``, the train/eval variance ratio
  of an input after inverted dropout (the variance shift that meets BN after dropout);
* :func:`check_ghost_batch_norm`: ``ghost(x, ghost_size, eps) -> y``, batch norm over
  consecutive ghost batches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = ["GHOST_MISTAKES", "SHIFT_MISTAKES", "check_ghost_batch_norm",
           "check_variance_shift"]


#: The variance shift's typical mistakes, each as the code that makes it.
SHIFT_MISTAKES = (
    Mistake("the input's mean left out (var / (1 - p) over var)",
            lambda mean, var, p: 1 / (1 - p) + 0 * mean),
    Mistake("p taken as the keep probability",
            lambda mean, var, p: ((var + mean ** 2) / p - mean ** 2) / var),
)


def check_variance_shift(shift: Callable, *, tolerance: float = 1e-10) -> Verdict:
    """Check ``shift(mean, var, p) -> ratio`` (arrays, per unit): the variance of
    ``dropout(x)`` in training (inverted dropout: kept values divided by ``1 - p``) over its
    variance in evaluation (the identity), for an input of the given mean and variance,
    against the exact moments over the two values of the dropout mask."""
    means, variances = np.array([0.0, 1.0, 2.0, -0.5]), np.array([1.0, 0.5, 4.0, 1e-2])
    cases = [Case(f"p={p}", (means, variances, p)) for p in (0.5, 0.2)]

    def expected(mean, var, p):
        # The mask is 1/(1-p) with probability 1-p and 0 with probability p.
        mask = torch.tensor([0.0, 1 / (1 - p)], dtype=torch.float64)
        prob = torch.tensor([p, 1 - p], dtype=torch.float64)
        mean_t, second = torch.from_numpy(mean), torch.from_numpy(var + mean ** 2)
        e_y = (prob * mask).sum() * mean_t
        e_y2 = (prob * mask ** 2).sum() * second
        return (e_y2 - e_y ** 2) / torch.from_numpy(var)

    return check_answers("check_variance_shift", shift, cases, expected, ("ratio",),
                         tolerance=tolerance, mistakes=SHIFT_MISTAKES,
                         reference_name="exact moments over the dropout mask's two values")


def _ghost(x, size, eps, *, whole=False, strided=False, ddof=0):
    n = x.shape[0]
    groups = [np.arange(n)] if whole else (
        [np.arange(k, n, n // size) for k in range(n // size)] if strided
        else [np.arange(k, k + size) for k in range(0, n, size)])
    y = np.empty_like(x)
    for rows in groups:
        part = x[rows]
        y[rows] = (part - part.mean(axis=0)) / np.sqrt(part.var(axis=0, ddof=ddof) + eps)
    return y


#: Ghost batch norm's typical mistakes, each as the code that makes it.
GHOST_MISTAKES = (
    Mistake("the whole batch normalised at once", lambda x, s, e: _ghost(x, s, e, whole=True)),
    Mistake("the ghost batches taken strided (x[k::n_ghosts]), not consecutive",
            lambda x, s, e: _ghost(x, s, e, strided=True)),
    Mistake("the unbiased variance", lambda x, s, e: _ghost(x, s, e, ddof=1)),
)


def check_ghost_batch_norm(ghost: Callable, *, tolerance: float = 1e-10) -> Verdict:
    """Check ``ghost(x, ghost_size, eps) -> y`` for ``x`` (N, C): each run of ``ghost_size``
    consecutive examples normalised with its own training-mode statistics (no affine), against
    ``torch.nn.functional.batch_norm`` on each ``torch.split`` chunk; (12, 3) in ghosts of 4
    and (8, 3) in ghosts of 2."""
    rng = np.random.default_rng(9)
    cases = []
    for n, size in ((12, 4), (8, 2)):
        x = rng.normal(size=(n, 3)) + np.linspace(-2, 2, n)[:, None]  # drifts along the batch
        cases.append(Case(f"({n}, 3)/{size}", (x, size, 1e-5), f"x of shape {(n, 3)}"))

    def expected(x, size, eps):
        chunks = torch.from_numpy(x).split(size)
        return torch.cat([F.batch_norm(c, None, None, training=True, eps=eps) for c in chunks])

    return check_answers("check_ghost_batch_norm", ghost, cases, expected, ("y",),
                         tolerance=tolerance, mistakes=GHOST_MISTAKES,
                         reference_name="torch batch_norm on each torch.split chunk")
