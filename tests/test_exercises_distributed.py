"""Chapter 07's checkers: independently written solutions PASS, each typical mistake FAILs and is
named."""

from __future__ import annotations

import numpy as np
import pytest

from bnlib.exercises import (
    MERGE_MISTAKES,
    MOMENTUM_MISTAKES,
    check_merge_moments,
    check_per_update_momentum,
)


def merge(counts, means, m2s):
    """Pairwise merging, one shard at a time (Chan et al.'s update), a different route from the
    all-at-once formula."""
    n, mean, m2 = 0.0, np.zeros(means.shape[1]), np.zeros(means.shape[1])
    for nb, mb, qb in zip(counts, means, m2s):
        if nb == 0:
            continue
        delta = mb - mean
        total = n + nb
        mean = mean + delta * nb / total
        m2 = m2 + qb + delta ** 2 * n * nb / total
        n = total
    return n, mean, m2


def momentum(m, k):
    return 1 - np.exp(np.log1p(-m) / k)


@pytest.mark.parametrize("check,solution", [(check_merge_moments, merge),
                                            (check_per_update_momentum, momentum)])
def test_a_correct_solution_passes(check, solution):
    verdict = check(solution)
    assert verdict.passed, verdict
    assert str(verdict).startswith("PASS")


@pytest.mark.parametrize("check,mistake", [
    *[(check_merge_moments, m) for m in MERGE_MISTAKES],
    *[(check_per_update_momentum, m) for m in MOMENTUM_MISTAKES]],
    ids=lambda v: getattr(v, "name", getattr(v, "__name__", "")))
def test_each_mistake_fails_and_is_named(check, mistake):
    verdict = check(mistake.answer)
    assert not verdict.passed
    assert verdict.mistake == mistake.name, verdict
    assert str(verdict).startswith("FAIL")


def test_an_unfinished_template_fails_with_a_hint():
    def my_merge(counts, means, m2s):
        raise NotImplementedError

    verdict = check_merge_moments(my_merge)
    assert not verdict.passed and "fill in" in verdict.problem
