"""Chapter 02's checkers (the BN equations) and the comparisons its measurements use.

For the reader's exercises::

    from bnlib.exercises import check_batch_norm_forward, check_batch_norm_backward

    check_batch_norm_forward(my_forward)    # my_forward(x, gamma, beta, eps) -> y
    check_batch_norm_backward(my_backward)  # my_backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta)

Each returns a :class:`~bnlib.exercises.checking.Verdict` that prints PASS or FAIL, the relative
error of each quantity, what it was compared with, and the typical mistake the answer matches
(:data:`FORWARD_MISTAKES`, :data:`BACKWARD_MISTAKES`); it is truthy when the check passed.

The chapter's own measurements use the same machinery:

* :func:`compare_with_torch`: :mod:`bnlib.reference` against PyTorch's autograd, and
  :func:`compare_with_finite_differences` against central differences (relative errors);
* :func:`compare_modules`: a ``bnlib.nn`` layer against its ``torch.nn`` namesake on one input in
  training mode (largest absolute differences of output, gradients and buffers), and
  :func:`module_differences`, the largest of them in one number;
* :func:`gradient_sums`: the two constraints on BN's input gradient (zero sum, orthogonal to
  ``x_hat``, per channel);
* :func:`scale_invariance`: BN after a layer whose weights are scaled by ``a``: same output,
  gradient scaled by ``1/a``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnlib import reference
from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = [
    "BACKWARD_MISTAKES",
    "FORWARD_MISTAKES",
    "STAGED_MISTAKES",
    "STAGES",
    "check_batch_norm_backward",
    "check_batch_norm_forward",
    "check_staged_backward",
    "compare_modules",
    "compare_with_finite_differences",
    "compare_with_torch",
    "finite_difference_gradients",
    "gradient_sums",
    "input_gradient",
    "module_differences",
    "scale_invariance",
]

#: Shapes the checkers try: a fully connected batch (N, C), a convolutional one (N, C, H, W),
#: and a batch of 4 whose variances are of the order of eps (so a missing eps shows).
CHECK_SHAPES = ((6, 3), (4, 3, 3, 2))
SMALL_BATCH, SMALL_SCALE = (4, 3), 1e-2


def _test_batch(shape: Sequence[int], seed: int, scale: float = 2.0) -> tuple[np.ndarray, ...]:
    """float64 ``x`` (off-centre, spread ``scale``), ``gamma``, ``beta`` and ``dy`` for a check."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = rng.normal(loc=1.5, scale=scale, size=shape)
    gamma = rng.uniform(0.5, 2.0, size=channels)
    beta = rng.normal(size=channels)
    dy = rng.normal(size=shape)
    return x, gamma, beta, dy


def _batches(seed: int) -> list[tuple[str, tuple[np.ndarray, ...]]]:
    """``(label, (x, gamma, beta, dy))`` for the checks' three batches."""
    batches = [(str(shape), _test_batch(shape, seed)) for shape in CHECK_SHAPES]
    small = _test_batch(SMALL_BATCH, seed + 1, SMALL_SCALE)
    return [*batches, (f"{SMALL_BATCH} var~eps", small)]


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _per_channel(p: np.ndarray, ndim: int) -> np.ndarray:
    return p.reshape((1, -1) + (1,) * (ndim - 2))


def _normalise(x, gamma, beta, eps, *, axes=None, ddof=0, eps_inside=True, shift=True):
    """BN's forward pass with the knobs the typical mistakes turn."""
    axes = _axes(x) if axes is None else axes
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    std = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
    y = _per_channel(gamma, x.ndim) * (x - mean) / std
    return y + _per_channel(beta, x.ndim) if shift else y


#: The forward pass's typical mistakes, each as the code that makes it.
FORWARD_MISTAKES = (
    Mistake("the unbiased variance (ddof=1) in the normalisation",
            lambda x, g, b, e: _normalise(x, g, b, e, ddof=1)),
    Mistake("eps left out (x_hat = (x - mean) / sqrt(var))",
            lambda x, g, b, e: _normalise(x, g, b, 0.0)),
    Mistake("eps added outside the square root (sqrt(var) + eps)",
            lambda x, g, b, e: _normalise(x, g, b, e, eps_inside=False)),
    Mistake("the statistics over the batch axis only, not over N, H and W",
            lambda x, g, b, e: _normalise(x, g, b, e, axes=(0,))),
    Mistake("the statistics over every axis, the channels included",
            lambda x, g, b, e: _normalise(x, g, b, e, axes=tuple(range(x.ndim)))),
    Mistake("beta left out (y = gamma * x_hat)",
            lambda x, g, b, e: _normalise(x, g, b, e, shift=False)),
)


def _backward(dy, x, gamma, eps, *, mean_path=True, var_path=True, ddof=0):
    """BN's input gradient, eq-bn-dx, with the paths the typical mistakes drop."""
    axes = _axes(x)
    inv_std = 1 / np.sqrt(x.var(axis=axes, keepdims=True, ddof=ddof) + eps)
    x_hat = (x - x.mean(axis=axes, keepdims=True)) * inv_std
    g = dy * _per_channel(gamma, x.ndim)
    dx = input_gradient(g, x_hat, inv_std, axes, mean_path=mean_path, var_path=var_path)
    return dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


def input_gradient(g: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray,
                   axes: tuple[int, ...], *, mean_path: bool = True,
                   var_path: bool = True) -> np.ndarray:
    """eq-bn-dx for any normalisation over ``axes``: ``inv_std / m * (m g - sum g
    - x_hat sum(g x_hat))``, ``g`` the gradient of ``x_hat``, ``inv_std`` broadcastable;
    ``mean_path``/``var_path`` False drop the term of the path through the mean/variance
    (the mistakes' code)."""
    m = int(np.prod([g.shape[a] for a in axes]))
    dx = m * g
    if mean_path:
        dx = dx - g.sum(axis=axes, keepdims=True)
    if var_path:
        dx = dx - x_hat * (g * x_hat).sum(axis=axes, keepdims=True)
    return inv_std / m * dx


#: The backward pass's typical mistakes, each as the code that makes it.
BACKWARD_MISTAKES = (
    Mistake("the statistics treated as constants (dx = gamma * dy / sigma)",
            lambda dy, x, g, e: _backward(dy, x, g, e, mean_path=False, var_path=False)),
    Mistake("the path through the mean left out (the mean a constant)",
            lambda dy, x, g, e: _backward(dy, x, g, e, mean_path=False)),
    Mistake("the path through the variance left out (the variance a constant)",
            lambda dy, x, g, e: _backward(dy, x, g, e, var_path=False)),
    Mistake("the unbiased variance (ddof=1) in the normalisation",
            lambda dy, x, g, e: _backward(dy, x, g, e, ddof=1)),
    Mistake("eps left out", lambda dy, x, g, e: _backward(dy, x, g, 0.0)),
    Mistake("dgamma and dbeta swapped",
            lambda dy, x, g, e: _swap(_backward(dy, x, g, e))),
    Mistake("a transposed gradient (dx.T)",
            lambda dy, x, g, e: _transposed(_backward(dy, x, g, e))),
)


def _transposed(grads: tuple) -> tuple:
    dx, dgamma, dbeta = grads
    return dx.T, dgamma, dbeta


def _swap(grads: tuple) -> tuple:
    dx, dgamma, dbeta = grads
    return dx, dbeta, dgamma


def check_batch_norm_forward(
    forward: Callable, *, eps: float = 1e-5, tolerance: float = 1e-10, seed: int = 0
) -> Verdict:
    """Check ``forward(x, gamma, beta, eps) -> y`` (or ``(y, cache)``) against PyTorch.

    Training-mode batch norm on float64 inputs of shape (6, 3) and (4, 3, 3, 2), and a batch
    of 4 whose variances are of the order of ``eps``; the reference is
    ``torch.nn.functional.batch_norm(..., training=True)``. A FAIL names the mistake of
    :data:`FORWARD_MISTAKES` the answer matches, if any.
    """
    cases = [Case(label, (x, gamma, beta, eps), f"x of shape {x.shape}")
             for label, (x, gamma, beta, _) in _batches(seed)]

    def expected(x, gamma, beta, eps):
        return F.batch_norm(torch.from_numpy(x), None, None, torch.from_numpy(gamma),
                            torch.from_numpy(beta), training=True, eps=eps)

    return check_answers("check_batch_norm_forward", forward, cases, expected, ("y",),
                         tolerance=tolerance, mistakes=FORWARD_MISTAKES,
                         reference_name="torch.nn.functional.batch_norm (training mode)")


def check_batch_norm_backward(
    backward: Callable, *, eps: float = 1e-5, tolerance: float = 1e-6, seed: int = 0
) -> Verdict:
    """Check ``backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta)`` against finite differences.

    The reference gradients are central differences (:func:`bnlib.reference.numerical_gradient`)
    of ``sum(y * dy)`` with ``y`` the training-mode forward pass, with respect to ``x``, ``gamma``
    and ``beta``, on float64 inputs of shape (6, 3) and (4, 3, 3, 2) and a batch of 4 whose
    variances are of the order of ``eps``. A FAIL names the mistake of
    :data:`BACKWARD_MISTAKES` the answer matches, if any.
    """
    cases = [Case(label, (dy, x, gamma, eps), f"x of shape {x.shape}")
             for label, (x, gamma, _, dy) in _batches(seed)]

    def expected(dy, x, gamma, eps):
        grads = finite_difference_gradients(x, gamma, np.zeros_like(gamma), dy, eps)
        return tuple(grads.values())

    return check_answers("check_batch_norm_backward", backward, cases, expected,
                         ("dx", "dgamma", "dbeta"), tolerance=tolerance,
                         mistakes=BACKWARD_MISTAKES,
                         reference_name="finite differences (central, h = 1e-6)")


#: The intermediates of the staged backward pass, in the order of eq-bn-chain.
STAGES = ("dx_hat", "dvar", "dmean", "dx", "dgamma", "dbeta")


def _staged(dy, x, gamma, eps, *, ddof=0, gamma_in=True, half=True, mean_path=True,
            stats_paths=True):
    """BN's backward pass through every intermediate of eq-bn-chain, (N, C) inputs, with the
    knobs the typical mistakes turn."""
    m = x.shape[0]
    mean = x.mean(axis=0)
    var = x.var(axis=0, ddof=ddof)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    dx_hat = dy * gamma if gamma_in else dy
    dvar = (dx_hat * (x - mean)).sum(axis=0) * (-0.5 if half else -1.0) * inv_std ** 3
    dmean = -(dx_hat * inv_std).sum(axis=0) + dvar * -2 * (x - mean).sum(axis=0) / (m - ddof)
    dx = dx_hat * inv_std
    if stats_paths:
        dx = dx + dvar * 2 * (x - mean) / (m - ddof) + (dmean / m if mean_path else 0)
    return {"dx_hat": dx_hat, "dvar": dvar, "dmean": dmean, "dx": dx,
            "dgamma": (dy * x_hat).sum(axis=0), "dbeta": dy.sum(axis=0)}


#: The staged backward pass's typical mistakes, each as the code that makes it.
STAGED_MISTAKES = (
    Mistake("the unbiased variance (Bessel's correction) in the forward pass",
            lambda dy, x, g, e: _staged(dy, x, g, e, ddof=1)),
    Mistake("dx_hat not multiplied by gamma",
            lambda dy, x, g, e: _staged(dy, x, g, e, gamma_in=False)),
    Mistake("the factor -1/2 of dvar written as -1",
            lambda dy, x, g, e: _staged(dy, x, g, e, half=False)),
    Mistake("the path through the mean left out of dx",
            lambda dy, x, g, e: _staged(dy, x, g, e, mean_path=False)),
    Mistake("the statistics treated as constants in dx (dx = dx_hat / sigma)",
            lambda dy, x, g, e: _staged(dy, x, g, e, stats_paths=False)),
)


def check_staged_backward(
    staged: Callable, *, eps: float = 1e-5, tolerance: float = 1e-10, seed: int = 0
) -> Verdict:
    """Check ``staged(dy, x, gamma, eps) -> dict`` with every intermediate gradient of
    eq-bn-chain (:data:`STAGES`: ``dx_hat``, ``dvar``, ``dmean``, ``dx``, ``dgamma``,
    ``dbeta``) for ``x`` (N, C), each against torch autograd through the same graph
    (``mean``, ``var = mean((x - mean)**2)``, ``x_hat``, ``y``, with ``retain_grad``), on
    batches of (6, 3) and of 4 with variances of the order of ``eps``."""
    cases = [Case(label, (dy, x, gamma, eps), f"x of shape {x.shape}")
             for label, (x, gamma, _, dy) in _batches(seed) if x.ndim == 2]

    def expected(dy, x, gamma, eps):
        xt = torch.tensor(x, requires_grad=True)
        mean = xt.mean(dim=0)
        var = ((xt - mean) ** 2).mean(dim=0)
        x_hat = (xt - mean) / torch.sqrt(var + eps)
        gt, bt = torch.tensor(gamma, requires_grad=True), torch.zeros(len(gamma),
                                                                      dtype=torch.float64,
                                                                      requires_grad=True)
        for t in (mean, var, x_hat):
            t.retain_grad()
        (gt * x_hat + bt).backward(torch.tensor(dy))
        grads = (x_hat.grad, var.grad, mean.grad, xt.grad, gt.grad, bt.grad)
        return dict(zip(STAGES, grads))

    return check_answers("check_staged_backward", staged, cases, expected, STAGES,
                         tolerance=tolerance, mistakes=STAGED_MISTAKES,
                         reference_name="torch autograd, retain_grad on each intermediate")


def finite_difference_gradients(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray, eps: float = 1e-5
) -> dict[str, np.ndarray]:
    """``dx``, ``dgamma``, ``dbeta`` of ``sum(y * dy)`` by central differences
    (:func:`bnlib.reference.numerical_gradient`), ``y`` the training-mode forward pass of
    :func:`bnlib.reference.batch_norm_forward`. Two forward passes per input: keep ``x`` small.
    """
    def forward(v: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        return reference.batch_norm_forward(v, g, b, eps)[0]

    return {
        "dx": reference.numerical_gradient(lambda v: forward(v, gamma, beta), x, dy),
        "dgamma": reference.numerical_gradient(lambda g: forward(x, g, beta), gamma, dy),
        "dbeta": reference.numerical_gradient(lambda b: forward(x, gamma, b), beta, dy),
    }


def compare_with_finite_differences(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray, eps: float = 1e-5
) -> dict[str, float]:
    """Relative errors of :mod:`bnlib.reference`'s backward pass against
    :func:`finite_difference_gradients`: ``{"dx": ..., "dgamma": ..., "dbeta": ...}``."""
    _, cache = reference.batch_norm_forward(x, gamma, beta, eps)
    analytic = dict(zip(("dx", "dgamma", "dbeta"), reference.batch_norm_backward(dy, cache)))
    numeric = finite_difference_gradients(x, gamma, beta, dy, eps)
    return {k: reference.relative_error(analytic[k], numeric[k]) for k in numeric}


def compare_with_torch(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray, eps: float = 1e-5
) -> dict[str, float]:
    """Relative errors of :mod:`bnlib.reference` BN (forward and backward) against torch autograd.

    All in float64. Returns ``{"y": ..., "dx": ..., "dgamma": ..., "dbeta": ...}``.
    """
    y, cache = reference.batch_norm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = reference.batch_norm_backward(dy, cache)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    yt.backward(torch.as_tensor(dy, dtype=torch.float64))
    ours = {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    theirs = {"y": yt, "dx": xt.grad, "dgamma": gt.grad, "dbeta": bt.grad}
    return {k: reference.relative_error(ours[k], theirs[k].detach().numpy()) for k in ours}


def compare_modules(
    ours: nn.Module, theirs: nn.Module, x: torch.Tensor, *, steps: int = 3,
    noise: float = 0.1, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Largest absolute differences between two layers given the same input, in training mode.

    ``theirs``'s state is copied into ``ours`` first. Each of ``steps`` forward passes sees
    ``x`` plus seeded noise of standard deviation ``noise`` (so running statistics move), and
    back-propagates ``sum(y * r)`` with a fixed random ``r``. Returns, for the last step's
    ``"output"``, ``"input gradient"`` and each parameter's gradient (``"weight gradient"``,
    ...), and for each buffer after all steps (``"running mean"``, ``"running var"``, ...),
    ``{"difference": max|ours - theirs|, "scale": max|theirs|}`` (floats), so a difference can
    be read against the size of the values compared.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: compare at least one step")
    ours.load_state_dict(theirs.state_dict())
    ours.train()
    theirs.train()
    generator = torch.Generator().manual_seed(seed)
    r = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    for _ in range(steps):
        batch = x + noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        mine, reference_values = (_training_step(layer, batch, r) for layer in (ours, theirs))
    for values, layer in ((mine, ours), (reference_values, theirs)):
        values.update({n.replace("_", " "): b for n, b in layer.named_buffers()})
    return {name: _max_abs(mine[name], reference_values[name]) for name in reference_values}


def module_differences(ours: nn.Module, theirs: nn.Module, x: torch.Tensor,
                       seed: int = 0) -> float:
    """The largest of :func:`compare_modules`'s differences after one step on ``x`` itself
    (no noise): outputs, input and parameter gradients, and buffers, in one number."""
    diffs = compare_modules(ours, theirs, x, steps=1, noise=0.0, seed=seed)
    return max(d["difference"] for d in diffs.values())


def _training_step(layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> dict:
    """Output, input gradient and parameter gradients of ``layer`` for the loss sum(y * r)."""
    layer.zero_grad()
    xi = x.clone().requires_grad_(True)
    y = layer(xi)
    (y * r).sum().backward()
    grads = {f"{name} gradient": p.grad for name, p in layer.named_parameters()}
    return {"output": y, "input gradient": xi.grad, **grads}


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """``max|a - b|`` and the scale ``max|b|`` of the reference ``b``."""
    a, b = a.detach().double(), b.detach().double()
    return {"difference": float((a - b).abs().max()), "scale": float(b.abs().max())}


def gradient_sums(dx: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """How far BN's input gradient is from its two constraints, per channel (axis 1).

    Returns the largest over channels of ``|sum dx|`` and ``|sum dx * x_hat|`` (sums over every
    axis but the channel axis), each divided by that channel's ``sum |dx|``: about 1e-16 when
    the constraint holds up to float64 round-off, of order ``1/sqrt(m)`` for an unconstrained
    array of ``m`` random values per channel.
    """
    axes = (0, *range(2, dx.ndim))
    scale = np.abs(dx).sum(axis=axes)
    return {
        "sum": float(np.max(np.abs(dx.sum(axis=axes)) / scale)),
        "sum times x_hat": float(np.max(np.abs((dx * x_hat).sum(axis=axes)) / scale)),
    }


def scale_invariance(
    layer: nn.Module, norm: nn.Module, x: torch.Tensor, scales: Sequence[float], *, seed: int = 0
) -> list[dict[str, float]]:
    """BN after ``layer`` with its parameters multiplied by ``a``, for each ``a`` in ``scales``.

    The loss is ``sum(norm(layer_a(x)) * r)`` with a fixed random ``r``; ``norm`` is in training
    mode. For each ``a`` returns ``{"scale": a, "output": max|y_a - y_1| / max|y_1|,
    "gradient": relative error of a * dL/dW_a against dL/dW_1, "weight norm": |W_a|,
    "cosine": cos(W_a, dL/dW_a)}``. Scale invariance predicts ``output``, ``gradient`` and
    ``cosine`` all near 0 (exactly 0 for eps = 0): the gradient is orthogonal to the weights
    (``cosine`` covers the weight only, so use a layer without bias, which BN makes redundant).
    """
    generator = torch.Generator().manual_seed(seed)

    def run(a: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        scaled = copy.deepcopy(layer)
        with torch.no_grad():
            for p in scaled.parameters():
                p.mul_(a)
        bn = copy.deepcopy(norm).train()
        y = bn(scaled(x))
        (y * r).sum().backward()
        return y.detach(), scaled.weight.grad.detach(), scaled.weight.detach()

    with torch.no_grad():
        r = torch.randn(layer(x).shape, generator=generator, dtype=x.dtype)
    y1, g1, _ = run(1.0)
    rows = []
    for a in scales:
        ya, ga, wa = run(float(a))
        rows.append({
            "scale": float(a),
            "output": float((ya - y1).abs().max() / y1.abs().max()),
            "gradient": reference.relative_error((a * ga).numpy(), g1.numpy()),
            "weight norm": float(wa.norm()),
            "cosine": float((wa * ga).sum() / (wa.norm() * ga.norm())),
        })
    return rows
