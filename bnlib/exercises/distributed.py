"""Chapter 07's checkers: merging shards' statistics and the per-update momentum (ghost batch
norm by hand is chapter 06's exercise, :func:`bnlib.exercises.benefits.check_ghost_batch_norm`).

For the reader's exercises::

    from bnlib.exercises import check_merge_moments, check_per_update_momentum

    check_merge_moments(my_merge)          # my_merge(counts, means, m2s) -> (count, mean, m2)
    check_per_update_momentum(my_momentum) # my_momentum(momentum, k) -> m_k

Each returns a :class:`~bnlib.exercises.checking.Verdict` that prints PASS or FAIL, the relative
error of each quantity, what it was compared with, and the typical mistake the answer matches
(:data:`MERGE_MISTAKES`, :data:`MOMENTUM_MISTAKES`).
"""

from __future__ import annotations

import numpy as np
import torch

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = ["MERGE_MISTAKES", "MOMENTUM_MISTAKES", "check_merge_moments",
           "check_per_update_momentum"]


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


#: Typical mistakes of the per-update momentum, as answers ``(momentum, k) -> m_k``. Chapter
#: 08 asks for the same function (checkpointing: k = 2) and names the same mistakes
#: (:data:`bnlib.exercises.doctor.MOMENTUM_MISTAKES` judges them by their effect).
MOMENTUM_MISTAKES = (
    Mistake("the momentum divided by k", lambda m, k: m / k),
    Mistake("the momentum left as it is", lambda m, k: m),
    Mistake("the k-th root of the momentum", lambda m, k: m ** (1 / k)),
    Mistake("the k-th root of what is kept, not of what is taken",
            lambda m, k: (1 - m) ** (1 / k)),
    Mistake("the decay raised to the power k instead of 1/k", lambda m, k: 1 - (1 - m) ** k),
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
