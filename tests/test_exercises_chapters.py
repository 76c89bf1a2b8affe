"""The chapters' checkers (bnlib.exercises.ics, equations, inference, variants, hindi_digits,
benefits): a correct solution, written here independently of the checkers' own code, PASSes;
each typical mistake FAILs with its name and an error far above the tolerance; a function that
is not written yet gets the "fill in its body" message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnlib.exercises import benefits, equations, hindi_digits, ics, inference, variants


def percentiles(values):
    return np.quantile(values, [0.15, 0.5, 0.85], axis=0)


def noisy(x, gamma, beta, eps, noise_mean, noise_std, z):
    y = F.batch_norm(torch.from_numpy(x), None, None, torch.from_numpy(gamma),
                     torch.from_numpy(beta), training=True, eps=eps).numpy()
    return y + noise_mean + noise_std * z


def staged(dy, x, gamma, eps):
    """Karpathy-style: every intermediate by autograd of a plain torch graph."""
    xt = torch.tensor(x, requires_grad=True)
    mu = xt.sum(0) / len(x)
    var = ((xt - mu) ** 2).sum(0) / len(x)
    x_hat = (xt - mu) * (var + eps) ** -0.5
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.zeros_like(g, requires_grad=True)
    for t in (mu, var, x_hat):
        t.retain_grad()
    (g * x_hat + b).backward(torch.tensor(dy))
    return {"dx_hat": x_hat.grad, "dvar": var.grad, "dmean": mu.grad, "dx": xt.grad,
            "dgamma": g.grad, "dbeta": b.grad}


def running(batches, momentum):
    mean, var = np.zeros(batches[0].shape[1]), np.ones(batches[0].shape[1])
    for count, batch in enumerate(batches, start=1):
        w = 1 / count if momentum is None else momentum
        mean = mean + w * (batch.mean(0) - mean)
        var = var + w * (batch.var(0, ddof=1) - var)
    return mean, var


def population(batches):
    values = np.vstack(batches)
    return values.mean(0), values.var(0, ddof=1)


def fold(weight, bias, gamma, beta, mean, var, eps):
    s = gamma / np.sqrt(var + eps)
    return weight * s[:, None, None, None], beta + (bias - mean) * s


def fold_transposed(weight, bias, gamma, beta, mean, var, eps):
    s = gamma / np.sqrt(var + eps)
    return weight * s[None, :, None, None], beta + (bias - mean) * s


def group_norm(x, groups, eps):
    n = x.shape[0]
    r = x.reshape(n, groups, -1)
    return ((r - r.mean(-1, keepdims=True)) / np.sqrt(r.var(-1, keepdims=True) + eps)
            ).reshape(x.shape)


def group_norm_backward(dy, x, groups, eps):
    xt = torch.tensor(x, requires_grad=True)
    r = xt.reshape(x.shape[0], groups, -1)
    y = (r - r.mean(-1, keepdim=True)) / torch.sqrt(r.var(-1, unbiased=False, keepdim=True)
                                                     + eps)
    y.reshape(x.shape).backward(torch.tensor(dy))
    return xt.grad.numpy()


def counts():
    import torch.nn as nn

    def net(bn):
        layers, c = [], 1
        for _ in range(3):
            layers += [nn.Conv2d(c, 16, 3, padding=1)] + ([nn.BatchNorm2d(16)] if bn else [])
            c = 16
        layers += [nn.Linear(4096, 10)]
        return sum(p.numel() for layer in layers for p in layer.parameters())

    return net(False), net(True)


def oscillation(accuracies):
    a = list(accuracies)
    return sum(abs(b - c) for b, c in zip(a[1:], a[:-1])) / (len(a) - 1)


def variance_shift(mean, var, p):
    train = (var + mean ** 2) / (1 - p) - mean ** 2   # E[y^2] - E[y]^2, y = mask * x
    return train / var


def ghost(x, size, eps):
    return np.concatenate([(c - c.mean(0)) / np.sqrt(c.var(0) + eps)
                           for c in np.split(x, len(x) // size)])


CHECKERS = [
    (ics.check_percentiles, percentiles, ics.PERCENTILE_MISTAKES),
    (ics.check_noisy_batch_norm, noisy, ics.NOISY_MISTAKES),
    (equations.check_staged_backward, staged, equations.STAGED_MISTAKES),
    (inference.check_running_statistics, running, inference.RUNNING_MISTAKES),
    (inference.check_population_statistics, population, inference.POPULATION_MISTAKES),
    (inference.check_fold_batch_norm, fold, inference.FOLD_MISTAKES[False]),
    (lambda f: inference.check_fold_batch_norm(f, transposed=True), fold_transposed,
     inference.FOLD_MISTAKES[True]),
    (variants.check_group_norm, group_norm, variants.GROUP_MISTAKES),
    (variants.check_group_norm_backward, group_norm_backward,
     variants.GROUP_BACKWARD_MISTAKES),
    (hindi_digits.check_parameter_counts, counts, hindi_digits.COUNT_MISTAKES),
    (hindi_digits.check_oscillation, oscillation, hindi_digits.OSCILLATION_MISTAKES),
    (benefits.check_variance_shift, variance_shift, benefits.SHIFT_MISTAKES),
    (benefits.check_ghost_batch_norm, ghost, benefits.GHOST_MISTAKES),
]
IDS = [solution.__name__ for _, solution, _ in CHECKERS]
MISTAKE_CASES = [(check, m) for check, _, mistakes in CHECKERS for m in mistakes]


@pytest.mark.parametrize("check, solution, mistakes", CHECKERS, ids=IDS)
def test_a_correct_solution_passes(check, solution, mistakes):
    verdict = check(solution)
    assert verdict.passed, repr(verdict)
    assert repr(verdict).startswith("PASS") and verdict.mistake == ""
    assert all(len(line) <= 79 for line in repr(verdict).splitlines())


@pytest.mark.parametrize("check, mistake", MISTAKE_CASES, ids=[m.name for _, m in MISTAKE_CASES])
def test_each_typical_mistake_fails_with_its_name(check, mistake):
    verdict = check(mistake.answer)
    assert not verdict.passed and verdict.mistake == mistake.name
    assert f"mistake: {mistake.name}" in repr(verdict)
    if not verdict.problem:  # a problem (a wrong shape) is one line of its own length
        assert max(verdict.errors.values()) > 1e3 * max(verdict.tolerance, 1e-12)
        assert all(len(line) <= 79 for line in repr(verdict).splitlines())


@pytest.mark.parametrize("check, solution, mistakes", CHECKERS, ids=IDS)
def test_an_unwritten_solution_is_told_to_fill_in_its_body(check, solution, mistakes):
    def my_answer(*args):
        raise NotImplementedError

    verdict = check(my_answer)
    assert not verdict and "fill in its body" in repr(verdict) and verdict.mistake == ""


@pytest.mark.parametrize("check, solution, mistakes", CHECKERS, ids=IDS)
def test_a_wrong_answer_of_no_known_kind_is_not_named(check, solution, mistakes):
    def scaled(*args):
        result = solution(*args)
        if isinstance(result, dict):
            return {k: 1.5 * np.asarray(v) for k, v in result.items()}
        if isinstance(result, tuple):
            return tuple(1.5 * np.asarray(v) for v in result)
        return 1.5 * np.asarray(result)

    verdict = check(scaled)
    assert not verdict and verdict.mistake == "" and "mistake:" not in repr(verdict)


def test_a_transposed_percentile_table_is_named_despite_its_shape():
    verdict = ics.check_percentiles(lambda v: np.percentile(v, [15, 50, 85], axis=1))
    assert "has shape (3, 40), expected (3, 3)" in verdict.problem
    assert verdict.mistake.startswith("the percentiles over the units")


def test_a_staged_answer_missing_a_key_is_told_which():
    verdict = equations.check_staged_backward(lambda *a: {"dx": staged(*a)["dx"]})
    assert "dx_hat" in verdict.problem and "missing" in verdict.problem
