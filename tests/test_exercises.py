"""bnlib.exercises: the checkers pass correct implementations and catch the usual mistakes.

The implementations below are written independently of bnlib.reference (plain NumPy, or torch
autograd), so a checker that passes them and fails the broken ones is checked for real.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlib import exercises

AXES = {2: (0,), 4: (0, 2, 3)}


def _view(p, ndim):
    return p.reshape((1, -1) + (1,) * (ndim - 2))


def forward_plain(x, gamma, beta, eps):
    axes = AXES[x.ndim]
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return _view(gamma, x.ndim) * (x - mean) / np.sqrt(var + eps) + _view(beta, x.ndim)


def forward_unbiased(x, gamma, beta, eps):
    axes = AXES[x.ndim]
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=1)
    return _view(gamma, x.ndim) * (x - mean) / np.sqrt(var + eps) + _view(beta, x.ndim)


def forward_no_beta(x, gamma, beta, eps):
    return forward_plain(x, gamma, np.zeros_like(beta), eps)


def backward_autograd(dy, x, gamma, eps):
    """The gradients by torch autograd through a plain torch forward pass."""
    axes = AXES[x.ndim]
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.zeros(len(gamma), dtype=torch.float64, requires_grad=True)
    mean = xt.mean(dim=axes, keepdim=True)
    var = ((xt - mean) ** 2).mean(dim=axes, keepdim=True)
    y = _view(gt, x.ndim) * (xt - mean) / torch.sqrt(var + eps) + _view(bt, x.ndim)
    y.backward(torch.tensor(dy))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def backward_without_mean_path(dy, x, gamma, eps):
    """A common mistake: treating the mean as a constant (drops the -sum(dx_hat) term)."""
    axes = AXES[x.ndim]
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    dx_hat = dy * _view(gamma, x.ndim)
    dx = inv_std / m * (m * dx_hat - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True))
    return dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


def backward_only_direct_path(dy, x, gamma, eps):
    """Another mistake: the gradient of x_hat as if mean and variance were constants."""
    axes = AXES[x.ndim]
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    return dy * _view(gamma, x.ndim) * inv_std, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


def test_forward_checker_passes_a_correct_forward():
    verdict = exercises.check_batch_norm_forward(forward_plain)
    assert verdict.passed and bool(verdict)
    assert repr(verdict).startswith("PASS check_batch_norm_forward")
    assert max(verdict.errors.values()) < 1e-12


def test_forward_checker_returning_cache_tuple_is_accepted():
    verdict = exercises.check_batch_norm_forward(lambda *a: (forward_plain(*a), "cache"))
    assert verdict.passed


@pytest.mark.parametrize("wrong", [forward_unbiased, forward_no_beta])
def test_forward_checker_catches_mistakes(wrong):
    verdict = exercises.check_batch_norm_forward(wrong)
    assert not verdict.passed
    assert repr(verdict).startswith("FAIL check_batch_norm_forward")
    assert max(verdict.errors.values()) > 1e-4


def test_forward_checker_reports_shape_and_exceptions():
    flat = exercises.check_batch_norm_forward(lambda x, g, b, e: forward_plain(x, g, b, e).ravel())
    assert not flat and "has shape (18,), expected (6, 3)" in repr(flat)

    def todo(x, gamma, beta, eps):
        raise NotImplementedError

    assert "fill in its body" in repr(exercises.check_batch_norm_forward(todo))
    broken = exercises.check_batch_norm_forward(lambda x, g, b, e: x @ x)
    assert not broken and "raised ValueError" in repr(broken)


def test_backward_checker_passes_autograd_gradients():
    verdict = exercises.check_batch_norm_backward(backward_autograd)
    assert verdict.passed, repr(verdict)
    assert repr(verdict).startswith("PASS check_batch_norm_backward")
    assert set(verdict.errors) >= {"dx (6, 3)", "dgamma (4, 3, 3, 2)", "dbeta (6, 3)"}


@pytest.mark.parametrize("wrong", [backward_without_mean_path, backward_only_direct_path])
def test_backward_checker_catches_missing_paths(wrong):
    verdict = exercises.check_batch_norm_backward(wrong)
    assert not verdict.passed
    assert "FAIL check_batch_norm_backward: dx" in repr(verdict)
    assert all(len(line) <= 79 for line in repr(verdict).splitlines())
    assert verdict.errors["dgamma (6, 3)"] < 1e-6  # the parameter gradients were right


def test_backward_checker_reports_bad_return_values():
    two = exercises.check_batch_norm_backward(lambda dy, x, g, e: backward_autograd(dy, x, g, e)[:2])
    assert not two and "must return a tuple (dx, dgamma, dbeta)" in repr(two)
    wrong_shape = exercises.check_batch_norm_backward(
        lambda dy, x, g, e: (dy, np.zeros(2), np.zeros(3))
    )
    assert not wrong_shape and "dgamma for x of shape (6, 3) has shape (2,), expected (3,)" in repr(
        wrong_shape
    )


def test_compare_with_torch_agrees_to_round_off():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(5, 4, 3, 3))
    errors = exercises.compare_with_torch(x, rng.uniform(0.5, 2, 4), rng.normal(size=4),
                                          rng.normal(size=x.shape))
    assert set(errors) == {"y", "dx", "dgamma", "dbeta"}
    assert max(errors.values()) < 1e-12


def test_compare_modules_sees_equal_and_different_layers():
    x = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    same = exercises.compare_modules(nn.BatchNorm2d(3), nn.BatchNorm2d(3), x)
    assert set(same) == {"output", "input gradient", "weight gradient", "bias gradient",
                         "running mean", "running var", "num batches tracked"}
    assert same["num batches tracked"]["scale"] == 3  # three training steps
    assert all(d["difference"] == 0.0 for d in same.values())
    assert same["running var"]["scale"] > 0.5  # about the variance of x
    other_momentum = exercises.compare_modules(nn.BatchNorm2d(3, momentum=0.5), nn.BatchNorm2d(3), x)
    assert other_momentum["running mean"]["difference"] > 1e-3
    assert other_momentum["output"]["difference"] == 0.0
    other_eps = exercises.compare_modules(nn.BatchNorm2d(3, eps=0.5), nn.BatchNorm2d(3), x)
    assert other_eps["output"]["difference"] > 1e-2


def test_module_differences_is_zero_for_twins_and_sees_any_part_that_differs():
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    twins = (nn.GroupNorm(3, 3).double(), nn.GroupNorm(3, 3).double())
    assert exercises.module_differences(*twins, x) == 0.0
    # Only the running statistics differ (momentum 0.5 against 0.1): their gap is
    # |0.5 - 0.1| * |batch mean| for the running mean, far above round-off.
    ours, theirs = nn.BatchNorm2d(3, momentum=0.5).double(), nn.BatchNorm2d(3).double()
    gap = 0.4 * float(x.mean(dim=(0, 2, 3)).abs().max())
    assert exercises.module_differences(ours, theirs, x) >= gap * 0.999
    with pytest.raises(ValueError, match="at least one step"):
        exercises.compare_modules(*twins, x, steps=0)


def test_gradient_sums_zero_for_bn_gradients_not_for_others():
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(8, 3, 5, 5, generator=gen, dtype=torch.float64) * 2 + 1).requires_grad_(True)
    dy = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    F.batch_norm(x, None, None, training=True, eps=1e-30).backward(dy)
    mean = x.detach().mean(dim=(0, 2, 3), keepdim=True)
    x_hat = (x.detach() - mean) / x.detach().var(dim=(0, 2, 3), unbiased=False, keepdim=True).sqrt()
    sums = exercises.gradient_sums(x.grad.numpy(), x_hat.numpy())
    assert max(sums.values()) < 1e-12
    unconstrained = exercises.gradient_sums(dy.numpy(), x_hat.numpy())
    assert min(unconstrained.values()) > 1e-3


def test_scale_invariance_holds_for_bn_and_fails_without_it():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 2, 6, 6, generator=gen, dtype=torch.float64)
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3, bias=False).double()
    rows = exercises.scale_invariance(conv, nn.BatchNorm2d(3, eps=1e-30).double(), x, [0.5, 3.0])
    assert [r["scale"] for r in rows] == [0.5, 3.0]
    for row in rows:
        assert row["output"] < 1e-12 and row["gradient"] < 1e-12 and abs(row["cosine"]) < 1e-12
    assert rows[1]["weight norm"] == pytest.approx(6 * rows[0]["weight norm"])
    # Without normalisation y_a = a y and dL/dW_a = dL/dW_1, so the output moves by (a - 1) and
    # the relative error of a * dL/dW_a is |a - 1| / (|a| + 1) exactly: 2 and 0.5 at a = 3.
    plain = exercises.scale_invariance(conv, nn.Identity(), x, [3.0])[0]
    assert plain["output"] == pytest.approx(2.0, rel=1e-9)
    assert plain["gradient"] == pytest.approx(0.5, rel=1e-9)


def test_finite_difference_gradients_match_the_closed_forms_of_dgamma_and_dbeta():
    rng = np.random.default_rng(4)
    x, dy = rng.normal(1.0, 2.0, size=(6, 3)), rng.normal(size=(6, 3))
    gamma, beta = rng.uniform(0.5, 2, 3), rng.normal(size=3)
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)   # biased variance
    numeric = exercises.finite_difference_gradients(x, gamma, beta, dy)
    assert np.allclose(numeric["dbeta"], dy.sum(axis=0), rtol=1e-7, atol=1e-9)
    assert np.allclose(numeric["dgamma"], (dy * x_hat).sum(axis=0), rtol=1e-7, atol=1e-9)
    errors = exercises.compare_with_finite_differences(x, gamma, beta, dy)
    assert set(errors) == {"dx", "dgamma", "dbeta"} and max(errors.values()) < 1e-7


@pytest.mark.parametrize("mistake", exercises.FORWARD_MISTAKES, ids=lambda m: m.name)
def test_forward_checker_names_each_typical_mistake(mistake):
    verdict = exercises.check_batch_norm_forward(mistake.answer)
    assert not verdict and verdict.mistake == mistake.name
    assert f"mistake: {mistake.name}" in repr(verdict)
    assert max(verdict.errors.values()) > 1e3 * verdict.tolerance


@pytest.mark.parametrize("mistake", exercises.BACKWARD_MISTAKES, ids=lambda m: m.name)
def test_backward_checker_names_each_typical_mistake(mistake):
    verdict = exercises.check_batch_norm_backward(mistake.answer)
    assert not verdict and verdict.mistake == mistake.name
    if verdict.problem:  # the transposed gradient: its shape is wrong, and it is named
        assert "dx for x of shape (6, 3) has shape (3, 6)" in verdict.problem
        return
    assert max(verdict.errors.values()) > 1e3 * verdict.tolerance
    assert all(len(line) <= 79 for line in repr(verdict).splitlines())


def test_an_independently_transposed_gradient_is_named():
    verdict = exercises.check_batch_norm_backward(
        lambda dy, x, g, e: (backward_autograd(dy, x, g, e)[0].T,
                             *backward_autograd(dy, x, g, e)[1:]))
    assert verdict.mistake == "a transposed gradient (dx.T)"


def test_independent_mistakes_are_named_and_unknown_ones_are_not():
    """The test file's own wrong implementations, written apart from the checker's."""
    assert exercises.check_batch_norm_forward(forward_unbiased).mistake.startswith(
        "the unbiased variance")
    assert "mean left out" in exercises.check_batch_norm_backward(
        backward_without_mean_path).mistake
    assert "treated as constants" in exercises.check_batch_norm_backward(
        backward_only_direct_path).mistake
    doubled = exercises.check_batch_norm_forward(lambda *a: 2 * forward_plain(*a))
    assert not doubled and doubled.mistake == "" and "mistake:" not in repr(doubled)
    assert exercises.check_batch_norm_forward(forward_plain).mistake == ""
