"""Chapter 08's exercise checkers: independent solutions PASS, each typical mistake FAILs
naming itself."""

from __future__ import annotations

import math

import pytest
import torch

from bnlib.exercises import (check_mode_table, check_momentum_for_updates,
                             check_recalibration)
from bnlib.exercises.doctor import MODE_MISTAKES, MOMENTUM_MISTAKES, RECALIBRATION_MISTAKES


def momentum_solution(momentum, updates):
    return 1.0 - math.exp(math.log1p(-momentum) / updates)


def recalibration_solution(batches):
    total = sum(b.numel() / b.shape[1] for b in batches)
    sums = sum(b.transpose(0, 1).reshape(b.shape[1], -1).sum(1) for b in batches)
    mean = sums / total
    squares = sum(((b.transpose(0, 1).reshape(b.shape[1], -1) - mean[:, None]) ** 2).sum(1)
                  for b in batches)
    return mean, squares / (total - 1)


def mode_solution(training, track_running_stats, buffers):
    if not buffers:
        return True, False
    return training, training and track_running_stats


@pytest.mark.parametrize("check, solution", [
    (check_momentum_for_updates, momentum_solution),
    (check_recalibration, recalibration_solution),
    (check_mode_table, mode_solution)])
def test_a_correct_solution_passes(check, solution):
    verdict = check(solution)
    assert verdict.passed, str(verdict)




MOMENTUM_ANSWERS = {  # written out here, named as the checker names them
    "the momentum divided by k": lambda m, k: m / k,
    "the momentum left as it is": lambda m, k: m,
    "the k-th root of the momentum": lambda m, k: m ** (1 / k),
    "the k-th root of what is kept, not of what is taken": lambda m, k: (1 - m) ** (1 / k),
    "the decay raised to the power k instead of 1/k": lambda m, k: 1 - (1 - m) ** k,
}


def test_chapters_07_and_08_name_the_same_momentum_mistakes():
    from bnlib.exercises.distributed import MOMENTUM_MISTAKES as CHAPTER_07

    assert [m.name for m in MOMENTUM_MISTAKES] == [m.name for m in CHAPTER_07]
    assert set(MOMENTUM_ANSWERS) == {m.name for m in MOMENTUM_MISTAKES}
MODE_ANSWERS = {
    MODE_MISTAKES[0].name: lambda t, k, b: (t, t and k and b),
    MODE_MISTAKES[1].name: lambda t, k, b: (t and k or not b, t and k and b),
    MODE_MISTAKES[2].name: lambda t, k, b: (t or not b, t and b),
}


@pytest.mark.parametrize("name", list(MOMENTUM_ANSWERS))
def test_each_momentum_mistake_fails_by_name(name):
    verdict = check_momentum_for_updates(MOMENTUM_ANSWERS[name])
    assert not verdict.passed and verdict.mistake == name


@pytest.mark.parametrize("mistake", RECALIBRATION_MISTAKES, ids=lambda m: m.name[:30])
def test_each_recalibration_mistake_fails_by_name(mistake):
    verdict = check_recalibration(mistake.answer)
    assert not verdict.passed and verdict.mistake == mistake.name


@pytest.mark.parametrize("name", list(MODE_ANSWERS))
def test_each_mode_mistake_fails_by_name(name):
    verdict = check_mode_table(MODE_ANSWERS[name])
    assert not verdict.passed and verdict.mistake == name


def test_an_answer_matching_no_mistake_fails_without_a_name():
    verdict = check_recalibration(lambda b: (torch.zeros(b[0].shape[1]),
                                             torch.ones(b[0].shape[1])))
    assert not verdict.passed and verdict.mistake == ""
