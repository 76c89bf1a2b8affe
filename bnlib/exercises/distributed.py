"""Chapter 07's checkers: merging shards' statistics, the per-update momentum, ghost batch norm.

For the reader's exercises::

    from bnlib.exercises import (check_ghost_batch_norm, check_merge_moments,
                                 check_per_update_momentum)

    check_merge_moments(my_merge)          # my_merge(counts, means, m2s) -> (count, mean, m2)
    check_per_update_momentum(my_momentum) # my_momentum(momentum, k) -> m_k
    check_ghost_batch_norm(my_ghost)       # my_ghost(x, ghost_size, eps) -> y

Each returns a :class:`~bnlib.exercises.checking.Verdict` that prints PASS or FAIL, the relative
error of each quantity, what it was compared with, and the typical mistake the answer matches
(:data:`MERGE_MISTAKES`, :data:`MOMENTUM_MISTAKES`, :data:`GHOST_MISTAKES`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = ["GHOST_MISTAKES", "MERGE_MISTAKES", "MOMENTUM_MISTAKES", "check_ghost_batch_norm",
           "check_merge_moments", "check_per_update_momentum"]


# --------------------------------------------------------------------------- merging shards


def _shards(sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Shards (n_r, 3) of one batch, each with its own offset (so their means differ)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=5.0 + 3.0 * r, scale=1.0 + r, size=(n, 3))
            for r, n in enumerate(sizes)]


def _moments(shards: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each shard's count (R,), mean and sum of squared deviations (R, C); zeros when empty."""
    channels = shards[0].shape[1]
    counts = np.array([len(s) for s in shards], dtype=np.float64)
    means = np.stack([s.mean(0) if len(s) else np.zeros(channels) for s in shards])
    m2s = np.stack([((s - s.mean(0)) ** 2).sum(0) if len(s) else np.zeros(channels)
                    for s in shards])
    return counts, means, m2s


#: Shard sizes of the merge checks (an empty shard, and uneven ones).
MERGE_SIZES = ((5, 3), (7, 1, 0, 12), (2, 2, 2, 2))
#: The concatenated batch of each case, keyed by its shard sizes: what the merge must give.
_CONCATENATED = {}


def _merge_cases() -> list[Case]:
    cases = []
    for seed, sizes in enumerate(MERGE_SIZES):
        shards = _shards(sizes, seed)
        whole = torch.from_numpy(np.concatenate(shards))
        _CONCATENATED[sizes] = (float(len(whole)), whole.mean(0).numpy(),
                                (whole.var(0, unbiased=False) * len(whole)).numpy())
        cases.append(Case(f"shards {sizes}", _moments(shards), f"shards of {sizes} samples"))
    return cases


def _concatenated(counts, means, m2s):
    """The count, mean and M2 of the concatenated batch (torch, computed from the samples)."""
    return _CONCATENATED[tuple(int(n) for n in counts)]


#: Typical mistakes of a merge, each as the code that makes it.
MERGE_MISTAKES = (
    Mistake("the shards' means averaged without their counts",
            lambda c, m, q: (c.sum(), m[c > 0].mean(0),
                             (q + c[:, None] * (m - m[c > 0].mean(0)) ** 2).sum(0))),
    Mistake("the spread between the shards' means left out",
            lambda c, m, q: (c.sum(), (c[:, None] * m).sum(0) / c.sum(), q.sum(0))),
    Mistake("the spread between the means not weighted by the counts",
            lambda c, m, q: (c.sum(), (c[:, None] * m).sum(0) / c.sum(),
                             (q + (m - (c[:, None] * m).sum(0) / c.sum()) ** 2
                              * (c[:, None] > 0)).sum(0))),
)


def check_merge_moments(answer) -> Verdict:
    """Check ``answer(counts, means, m2s) -> (count, mean, m2)`` (NumPy: (R,), (R, C), (R, C);
    an empty shard has count 0 and zeros) against the statistics of the concatenated samples."""
    return check_answers("check_merge_moments", answer, _merge_cases(),
                         expected=_concatenated, outputs=("count", "mean", "m2"),
                         tolerance=1e-10, mistakes=MERGE_MISTAKES,
                         reference_name="torch mean and variance of the concatenated batch")


# --------------------------------------------------------------------------- the momentum


def _decay_matched(momentum: float, k: int) -> float:
    """The momentum whose k updates keep as much of the old value as one update of
    ``momentum``, found by bisection on the update itself (not by the closed form)."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        kept = 1.0
        for _ in range(k):
            kept *= 1.0 - middle
        low, high = (middle, high) if kept > 1.0 - momentum else (low, middle)
    return (low + high) / 2


#: Typical mistakes of the per-update momentum.
MOMENTUM_MISTAKES = (
    Mistake("the momentum divided by k", lambda m, k: m / k),
    Mistake("the momentum left as it is", lambda m, k: m),
    Mistake("the k-th root of the momentum", lambda m, k: m ** (1 / k)),
    Mistake("the k-th root of what is kept, not of what is taken",
            lambda m, k: (1 - m) ** (1 / k)),
)


def check_per_update_momentum(answer) -> Verdict:
    """Check ``answer(momentum, k) -> m_k`` (PyTorch's convention) against the momentum whose
    k updates decay the old running value as one update of ``momentum`` does."""
    cases = [Case(f"m={m}, k={k}", (m, k), f"momentum {m}, {k} updates per step")
             for m, k in ((0.1, 2), (0.1, 4), (0.5, 3), (0.01, 8))]
    return check_answers("check_per_update_momentum", answer, cases,
                         expected=_decay_matched, outputs=("m_k",), tolerance=1e-9,
                         mistakes=MOMENTUM_MISTAKES,
                         reference_name="bisection on (1 - m_k)^k = 1 - momentum")


# --------------------------------------------------------------------------- ghost batches


def _torch_ghost(x: np.ndarray, ghost_size: int, eps: float) -> np.ndarray:
    """torch.nn.functional.batch_norm (training mode) on each consecutive group alone."""
    groups = torch.split(torch.from_numpy(x), ghost_size)
    return torch.cat([F.batch_norm(g, None, None, training=True, eps=eps)
                      for g in groups]).numpy()


def _whole_batch(x, ghost_size, eps):
    return _torch_ghost(x, len(x), eps)


def _unbiased(x, ghost_size, eps):
    out = []
    for g in np.split(x, range(ghost_size, len(x), ghost_size)):
        axes = (0, *range(2, x.ndim))
        out.append((g - g.mean(axes, keepdims=True))
                   / np.sqrt(g.var(axes, ddof=1, keepdims=True) + eps))
    return np.concatenate(out)


def _interleaved(x, ghost_size, eps):
    groups = -(-len(x) // ghost_size)
    y = np.empty_like(x)
    for r in range(groups):
        y[r::groups] = _torch_ghost(x[r::groups], len(x), eps)
    return y


#: Typical mistakes of ghost batch norm.
GHOST_MISTAKES = (
    Mistake("statistics over the whole batch", _whole_batch),
    Mistake("the unbiased variance in the normalisation", _unbiased),
    Mistake("interleaved groups (samples r, r + g, ...) instead of consecutive ones",
            _interleaved),
)


def check_ghost_batch_norm(answer) -> Verdict:
    """Check ``answer(x, ghost_size, eps) -> y`` (NumPy ``x`` (N, C, H, W); no affine part):
    each consecutive group of ``ghost_size`` samples normalised with its own statistics (the
    last group may be smaller), against torch's batch norm on each group alone."""
    rng = np.random.default_rng(7)
    cases = []
    for n, ghost in ((8, 4), (6, 4), (6, 2)):
        x = rng.normal(size=(n, 3, 2, 2)) * (1 + np.arange(n)).reshape(-1, 1, 1, 1)
        x = x + 2.0 * np.arange(n).reshape(-1, 1, 1, 1)
        cases.append(Case(f"N={n}, ghost {ghost}", (x, ghost, 1e-5),
                          f"x of shape {x.shape}, ghost batches of {ghost}"))
    return check_answers("check_ghost_batch_norm", answer, cases, expected=_torch_ghost,
                         outputs=("y",), tolerance=1e-9, mistakes=GHOST_MISTAKES,
                         reference_name="torch.nn.functional.batch_norm on each group alone")
