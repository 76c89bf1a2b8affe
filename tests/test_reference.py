"""bnlib.reference (NumPy) against hand-worked cases, finite differences and PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnlib import reference as ref


def _random(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(loc=0.5, scale=2.0, size=shape)


# --- hand-worked cases --------------------------------------------------------------------------


def test_batch_norm_two_samples_by_hand():
    # Two samples, one channel: mean 2, biased variance 1, so with eps = 0 x_hat = -1, +1.
    x = np.array([[1.0], [3.0]])
    y, cache = ref.batch_norm_forward(x, np.array([2.0]), np.array([0.5]), eps=0.0)
    np.testing.assert_allclose(cache.x_hat, [[-1.0], [1.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(y, [[2 * -1.0 + 0.5], [2 * 1.0 + 0.5]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(cache.inv_std.ravel(), [1.0], rtol=0, atol=1e-15)


def test_batch_norm_biased_variance_by_hand():
    # x = 0, 0, 3: mean 1, biased variance (1 + 1 + 4) / 3 = 2 (the unbiased one would be 3).
    x = np.array([[0.0], [0.0], [3.0]])
    y, _ = ref.batch_norm_forward(x, np.ones(1), np.zeros(1), eps=0.0)
    np.testing.assert_allclose(y.ravel(), np.array([-1.0, -1.0, 2.0]) / np.sqrt(2.0), rtol=1e-15)


def test_batch_norm_backward_by_hand():
    # Two samples x = (1, 3), gamma = 1, eps = 0, dy = (1, 0): x_hat = (-1, 1), m = 2,
    # sum(dy) = 1, sum(dy * x_hat) = -1, so dx = 1/2 * (2*dy - 1 - x_hat*(-1)) = (0, 0):
    # a gradient on one sample only is absorbed by the mean and the variance together.
    x = np.array([[1.0], [3.0]])
    _, cache = ref.batch_norm_forward(x, np.ones(1), np.zeros(1), eps=0.0)
    dx, dgamma, dbeta = ref.batch_norm_backward(np.array([[1.0], [0.0]]), cache)
    np.testing.assert_allclose(dx, [[0.0], [0.0]], atol=1e-15)
    np.testing.assert_allclose(dgamma, [-1.0])
    np.testing.assert_allclose(dbeta, [1.0])


def test_layer_norm_by_hand():
    x = np.array([[1.0, 2.0, 3.0, 6.0]])  # mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5
    y, _ = ref.layer_norm_forward(x, np.ones(4), np.zeros(4), eps=0.0)
    np.testing.assert_allclose(y, (x - 3.0) / np.sqrt(3.5), rtol=1e-15)


def test_group_norm_extremes_are_layer_and_instance_norm():
    x = _random((3, 4, 5))
    gamma, beta = _random(4, 1), _random(4, 2)
    y_one_group, _ = ref.group_norm_forward(x, 1, gamma, beta)
    gamma_ln, beta_ln = np.repeat(gamma[:, None], 5, 1), np.repeat(beta[:, None], 5, 1)
    y_ln, _ = ref.layer_norm_forward(x, gamma_ln, beta_ln)
    np.testing.assert_allclose(y_one_group, y_ln, rtol=1e-13, atol=1e-13)
    y_c_groups, _ = ref.group_norm_forward(x, 4, gamma, beta)
    y_in, _ = ref.instance_norm_forward(x, gamma, beta)
    np.testing.assert_allclose(y_c_groups, y_in, rtol=1e-13, atol=1e-13)


def test_relative_error_values():
    assert ref.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert ref.relative_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes"):
        ref.relative_error(np.zeros(2), np.zeros(3))


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.3, -1.2, 2.0])
    dy = np.array([1.0, 2.0, -1.0])
    grad = ref.numerical_gradient(lambda v: v**3, x, dy)
    np.testing.assert_allclose(grad, 3 * x**2 * dy, rtol=1e-8)
    assert np.array_equal(x, [0.3, -1.2, 2.0])  # the input was not modified


# --- every variant against PyTorch autograd and finite differences --------------------------------

# (name, shape, forward, backward, torch function of (x, gamma, beta))
VARIANTS = [
    ("batch (N, C)", (5, 3), ref.batch_norm_forward, ref.batch_norm_backward,
     lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True)),
    ("batch (N, C, H, W)", (2, 3, 2, 3), ref.batch_norm_forward, ref.batch_norm_backward,
     lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True)),
    ("batch (N, C, L)", (3, 2, 4), ref.batch_norm_forward, ref.batch_norm_backward,
     lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True)),
    ("layer (N, C, H, W)", (3, 2, 2, 3), ref.layer_norm_forward, ref.layer_norm_backward,
     lambda x, g, b: F.layer_norm(x, x.shape[1:], g, b)),
    ("layer (N, D)", (4, 6), ref.layer_norm_forward, ref.layer_norm_backward,
     lambda x, g, b: F.layer_norm(x, x.shape[1:], g, b)),
    ("instance (N, C, H, W)", (2, 3, 3, 2), ref.instance_norm_forward, ref.instance_norm_backward,
     lambda x, g, b: F.instance_norm(x, weight=g, bias=b)),
    ("group (N, C, H, W), G=2", (2, 4, 2, 3),
     lambda x, g, b, eps=1e-5: ref.group_norm_forward(x, 2, g, b, eps),
     ref.group_norm_backward, lambda x, g, b: F.group_norm(x, 2, g, b)),
]


ARGS, IDS = "name,shape,forward,backward,torch_fn", [v[0] for v in VARIANTS]


def _params_shape(name, shape):
    return shape[1:] if name.startswith("layer") else (shape[1],)


@pytest.mark.parametrize(ARGS, VARIANTS, ids=IDS)
def test_variant_against_torch_autograd(name, shape, forward, backward, torch_fn):
    x = _random(shape, 1)
    pshape = _params_shape(name, shape)
    gamma, beta, dy = _random(pshape, 2), _random(pshape, 3), _random(shape, 4)
    y, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dy, cache)

    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    yt = torch_fn(xt, gt, bt)
    yt.backward(torch.tensor(dy))
    assert ref.relative_error(y, yt.detach().numpy()) < 1e-12
    assert ref.relative_error(dx, xt.grad.numpy()) < 1e-10
    assert ref.relative_error(dgamma, gt.grad.numpy()) < 1e-12
    assert ref.relative_error(dbeta, bt.grad.numpy()) < 1e-12


@pytest.mark.parametrize(ARGS, VARIANTS, ids=IDS)
def test_variant_against_finite_differences(name, shape, forward, backward, torch_fn):
    x = _random(shape, 5)
    pshape = _params_shape(name, shape)
    gamma, beta, dy = _random(pshape, 6), _random(pshape, 7), _random(shape, 8)
    _, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dy, cache)
    assert ref.relative_error(
        dx, ref.numerical_gradient(lambda v: forward(v, gamma, beta)[0], x, dy)
    ) < 1e-7
    assert ref.relative_error(
        dgamma, ref.numerical_gradient(lambda g: forward(x, g, beta)[0], gamma, dy)
    ) < 1e-7
    assert ref.relative_error(
        dbeta, ref.numerical_gradient(lambda b: forward(x, gamma, b)[0], beta, dy)
    ) < 1e-7


def test_cache_is_inspectable():
    x = _random((4, 3, 2, 2))
    _, cache = ref.batch_norm_forward(x, np.ones(3), np.zeros(3))
    assert cache.axes == (0, 2, 3)
    assert cache.inv_std.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(cache.x_hat.mean(axis=(0, 2, 3)), 0.0, atol=1e-14)
    expected_inv_std = 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)
    np.testing.assert_allclose(cache.inv_std.ravel(), expected_inv_std, rtol=1e-14)


ONE3, ZERO3 = np.ones(3), np.zeros(3)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ref.batch_norm_forward(np.zeros(3), ONE3, ZERO3), "at least 2 dimensions"),
        (lambda: ref.batch_norm_forward(np.zeros((2, 3)), np.ones(4), np.zeros(4)), "gamma has"),
        (lambda: ref.group_norm_forward(np.zeros((2, 6, 2)), 4, np.ones(6), np.zeros(6)), "divis"),
        (lambda: ref.instance_norm_forward(np.zeros((2, 3)), ONE3, ZERO3), "at least 3"),
    ],
)
def test_bad_inputs_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()
