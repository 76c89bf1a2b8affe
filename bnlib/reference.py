"""Normalisation layers in NumPy, written to be read next to the equations of chapter 02.

Batch, layer, instance and group normalisation are one operation, applied over different axes.
For an input ``x`` and a set of axes ``A`` holding ``m`` elements per statistic:

.. math::

    \\mu = \\frac{1}{m} \\sum_A x, \\qquad
    \\sigma^2 = \\frac{1}{m} \\sum_A (x - \\mu)^2 \\quad\\text{(biased, as in training)},

    \\hat x = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\qquad
    y = \\gamma \\hat x + \\beta.

The backward pass, with :math:`d\\hat x = \\gamma\\, dy`, has the compact three-term form

.. math::

    dx = \\frac{1}{m\\sqrt{\\sigma^2+\\epsilon}}
         \\Big(m\\, d\\hat x - \\sum_A d\\hat x - \\hat x \\sum_A d\\hat x\\, \\hat x\\Big),
    \\qquad d\\gamma = \\sum dy\\, \\hat x, \\qquad d\\beta = \\sum dy,

where the last two sums run over every axis that :math:`\\gamma` and :math:`\\beta` are shared
across. :func:`normalize_forward` and :func:`normalize_backward` are that core; the four
variants differ only in the axes ``A`` and the shape of ``gamma``:

=================  =========================  ===========================  ================
variant            input                      statistics over              ``gamma`` shape
=================  =========================  ===========================  ================
batch norm         (N, C) or (N, C, \\*S)      N and every spatial axis     (C,)
layer norm         (N, \\*D)                   every axis but N             ``x.shape[1:]``
instance norm      (N, C, \\*S)                the spatial axes             (C,)
group norm         (N, C, \\*S), G groups      each group's channels and S  (C,)
=================  =========================  ===========================  ================

Everything here is float64 NumPy, clear rather than fast; :mod:`bnlib.nn` holds the PyTorch
layers. :func:`numerical_gradient` and :func:`relative_error` are the tools chapter 02 uses to
check a backward pass against finite differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NormCache",
    "batch_norm_backward",
    "batch_norm_forward",
    "group_norm_backward",
    "group_norm_forward",
    "instance_norm_backward",
    "instance_norm_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "normalize_backward",
    "normalize_forward",
    "numerical_gradient",
    "relative_error",
]


# --- the core: one normalisation over given axes ------------------------------------------------


def normalize_forward(
    x: np.ndarray, axes: tuple[int, ...], eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """``x_hat = (x - mean) / sqrt(var + eps)``, statistics over ``axes`` (biased variance).

    Returns ``(x_hat, inv_std)``: ``x_hat`` has the shape of ``x``; ``inv_std`` =
    ``1 / sqrt(var + eps)`` keeps the reduced axes as size 1, so it broadcasts against ``x``.
    """
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)  # biased: divide by m, not m - 1
    inv_std = 1.0 / np.sqrt(var + eps)
    return (x - mean) * inv_std, inv_std


def normalize_backward(
    dx_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]
) -> np.ndarray:
    """Gradient through ``x_hat = normalize_forward(x, axes)``: ``dL/dx`` from ``dL/dx_hat``.

    The compact three-term form ``inv_std/m * (m*dx_hat - sum(dx_hat) - x_hat*sum(dx_hat*x_hat))``,
    sums over ``axes``: the first term is the direct path, the second the path through the mean,
    the third the path through the variance.
    """
    m = int(np.prod([x_hat.shape[a] for a in axes]))
    sum_dx_hat = dx_hat.sum(axis=axes, keepdims=True)
    sum_dx_hat_x_hat = (dx_hat * x_hat).sum(axis=axes, keepdims=True)
    return inv_std / m * (m * dx_hat - sum_dx_hat - x_hat * sum_dx_hat_x_hat)


@dataclass(frozen=True)
class NormCache:
    """What a forward pass keeps for its backward pass (inspect it freely).

    ``x_hat``: the normalised input, shape of ``x``. ``inv_std``: ``1/sqrt(var + eps)`` with the
    shape of the statistics (reduced axes kept as size 1) in the grouped view ``view_shape``.
    ``gamma``: the scale as passed. ``axes``: the axes of ``view_shape`` the statistics run over.
    ``param_axes``: the axes of ``x`` that ``gamma``/``beta`` are shared across (summed in
    ``dgamma``/``dbeta``). ``view_shape``: the shape ``x`` is seen in while normalising (``x.shape``
    except for group norm, which splits C into (groups, C // groups)).
    """

    x_hat: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    axes: tuple[int, ...]
    param_axes: tuple[int, ...]
    view_shape: tuple[int, ...]


def _affine_norm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    axes: tuple[int, ...],
    param_axes: tuple[int, ...],
    view_shape: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, NormCache]:
    """``y = gamma * x_hat + beta`` with ``x_hat`` normalised over ``axes`` of ``x``.

    ``x`` is seen as ``view_shape`` while normalising: ``x.shape`` by default; group norm passes
    ``(N, G, C // G, *spatial)``.
    """
    x = np.asarray(x, dtype=np.float64)
    view_shape = tuple(x.shape) if view_shape is None else tuple(view_shape)
    x_hat_view, inv_std = normalize_forward(x.reshape(view_shape), axes, eps)
    x_hat = x_hat_view.reshape(x.shape)
    gamma_b, beta_b = _broadcast_params(x, gamma, beta, param_axes)
    y = gamma_b * x_hat + beta_b
    return y, NormCache(x_hat, inv_std, np.asarray(gamma), axes, param_axes, view_shape)


def _affine_norm_backward(dy: np.ndarray, cache: NormCache) -> tuple[np.ndarray, ...]:
    """``(dx, dgamma, dbeta)`` for :func:`_affine_norm_forward`."""
    dy = np.asarray(dy, dtype=np.float64)
    gamma_b = cache.gamma.reshape(_param_view(dy.shape, cache.param_axes))
    dbeta = dy.sum(axis=cache.param_axes).reshape(cache.gamma.shape)
    dgamma = (dy * cache.x_hat).sum(axis=cache.param_axes).reshape(cache.gamma.shape)
    dx_hat = (dy * gamma_b).reshape(cache.view_shape)
    x_hat = cache.x_hat.reshape(cache.view_shape)
    dx = normalize_backward(dx_hat, x_hat, cache.inv_std, cache.axes).reshape(dy.shape)
    return dx, dgamma, dbeta


def _param_view(shape: tuple[int, ...], param_axes: tuple[int, ...]) -> tuple[int, ...]:
    """Shape that broadcasts a parameter against ``shape``: size 1 on the shared axes."""
    return tuple(1 if a in param_axes else n for a, n in enumerate(shape))


def _broadcast_params(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, param_axes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    view = _param_view(x.shape, param_axes)
    expected = tuple(n for a, n in enumerate(x.shape) if a not in param_axes)
    for name, p in (("gamma", gamma), ("beta", beta)):
        if np.size(p) != int(np.prod(expected)):
            raise ValueError(
                f"{name} has shape {np.shape(p)} but this input of shape {x.shape} needs one "
                f"value per {expected} (pass an array of that shape)"
            )
    return np.asarray(gamma, np.float64).reshape(view), np.asarray(beta, np.float64).reshape(view)


def _check_ndim(x: np.ndarray, minimum: int, what: str) -> None:
    if np.ndim(x) < minimum:
        raise ValueError(
            f"{what} needs an input with at least {minimum} dimensions, got shape {np.shape(x)}"
        )


Grads = tuple[np.ndarray, np.ndarray, np.ndarray]  # (dx, dgamma, dbeta)


# --- the four variants ----------------------------------------------------------------------------


def batch_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, NormCache]:
    """Batch norm in training mode. ``x``: (N, C) or ``(N, C, *spatial)``; ``gamma``, ``beta``: (C,).

    Statistics per channel over N and every spatial axis (biased variance). Returns ``(y, cache)``.
    """
    _check_ndim(x, 2, "batch_norm_forward")
    axes = (0, *range(2, np.ndim(x)))
    return _affine_norm_forward(x, gamma, beta, eps, axes=axes, param_axes=axes)


def batch_norm_backward(dy: np.ndarray, cache: NormCache) -> Grads:
    """``(dx, dgamma, dbeta)`` of batch norm; ``dy`` has the shape of ``y``.

    The cache records the axes of the statistics and of the parameters, so this one function is
    also the backward pass of layer, instance and group norm (:func:`layer_norm_backward`,
    :func:`instance_norm_backward` and :func:`group_norm_backward` are other names for it).
    """
    return _affine_norm_backward(dy, cache)


def layer_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, NormCache]:
    """Layer norm. ``x``: ``(N, *D)``; statistics per sample over all of D; ``gamma``, ``beta``: D."""
    _check_ndim(x, 2, "layer_norm_forward")
    axes = tuple(range(1, np.ndim(x)))
    return _affine_norm_forward(x, gamma, beta, eps, axes=axes, param_axes=(0,))


def instance_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, NormCache]:
    """Instance norm. ``x``: ``(N, C, *spatial)``; statistics per (sample, channel) over space."""
    _check_ndim(x, 3, "instance_norm_forward")
    spatial = tuple(range(2, np.ndim(x)))
    return _affine_norm_forward(x, gamma, beta, eps, axes=spatial, param_axes=(0, *spatial))


def group_norm_forward(
    x: np.ndarray, num_groups: int, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, NormCache]:
    """Group norm. ``x``: ``(N, C, *spatial)``, C divisible by ``num_groups``; ``gamma``, ``beta``: (C,)

    The channels are split into ``num_groups`` groups of ``C // num_groups``; statistics per
    (sample, group) over the group's channels and every spatial axis. ``num_groups=1`` is layer norm
    with per-channel parameters, ``num_groups=C`` is instance norm.
    """
    _check_ndim(x, 2, "group_norm_forward")
    n, c, *spatial = np.shape(x)
    if num_groups < 1 or c % num_groups != 0:
        raise ValueError(
            f"group norm needs the number of channels ({c}) to be divisible by num_groups "
            f"({num_groups}); choose a divisor of {c}"
        )
    view_shape = (n, num_groups, c // num_groups, *spatial)
    axes = tuple(range(2, len(view_shape)))
    param_axes = (0, *range(2, np.ndim(x)))
    return _affine_norm_forward(x, gamma, beta, eps, axes, param_axes, view_shape)


#: The backward passes of the other normalisations: :func:`batch_norm_backward` itself.
layer_norm_backward = instance_norm_backward = group_norm_backward = batch_norm_backward


# --- checking a backward pass ---------------------------------------------------------------------


def numerical_gradient(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dy: np.ndarray, h: float = 1e-6
) -> np.ndarray:
    """Central differences of ``sum(f(x) * dy)`` with respect to ``x`` (same shape as ``x``).

    Each element is moved by ``+h`` and ``-h`` in turn: ``(L(x + h e_i) - L(x - h e_i)) / 2h``.
    Costs two calls of ``f`` per element of ``x``: use small inputs.
    """
    x = np.array(x, dtype=np.float64)  # a copy: the caller's array is never touched
    dy = np.asarray(dy, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + h
        loss_plus = np.sum(f(x) * dy)
        x[i] = saved - h
        loss_minus = np.sum(f(x) * dy)
        x[i] = saved
        grad[i] = (loss_plus - loss_minus) / (2 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(|a| + |b|)``: 0 for equal arrays, about 1e-16 at float64 round-off.

    The denominator is floored at the smallest positive float so two zero arrays give 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare arrays of shapes {a.shape} and {b.shape}")
    scale = max(float(np.max(np.abs(a) + np.abs(b), initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale
