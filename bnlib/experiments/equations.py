"""Chapter 02's measurements: the BN equations checked on real activations.

The activations are those of a freshly initialised 3x3 convolution (16 channels) applied to
256 DHCD digits; the first 64 form the mini-batch. :func:`findings` measures everything the
chapter states about them (forward statistics, the constraints on the input gradient, the
checks against finite differences and PyTorch, the drop-in module, scale invariance, the
biased variance, batch noise and a batch of one) and returns the numbers by the names the
chapter glues. Each measurement is also a function the chapter can call on its own.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from bnlib import exercises, reference

__all__ = [
    "CROP",
    "batch_of_one",
    "batch_shift",
    "findings",
    "random_upstream",
    "variance_gaps",
]

#: The crop of the batch checked against finite differences: 4 digits, 3 channels, the
#: central 8 x 8 positions (two forward passes per input make the full batch too slow).
CROP = (slice(0, 4), slice(0, 3), slice(12, 20), slice(12, 20))


def random_upstream(shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """A random upstream gradient ``dy`` of ``shape`` (N, C, ...) and random per-channel
    ``gamma`` in [0.5, 2] and ``beta``, drawn in that order from ``default_rng(seed)``; the
    generator is returned as ``rng`` for further draws."""
    rng = np.random.default_rng(seed)
    dy = rng.normal(size=shape)
    gamma, beta = rng.uniform(0.5, 2.0, size=shape[1]), rng.normal(size=shape[1])
    return {"dy": dy, "gamma": gamma, "beta": beta, "rng": rng}


def variance_gaps(x: np.ndarray, eps: float = 1e-5) -> dict[str, float]:
    """Which variance ``torch.nn.BatchNorm2d`` uses, on a batch ``x`` (N, C, H, W).

    Returns the largest gap between PyTorch's training output and the normalisation with
    the ``biased`` and with the ``unbiased`` batch variance, and between its ``running``
    variance (momentum 1: this batch only) and the unbiased batch variance."""
    torch_bn = torch.nn.BatchNorm2d(x.shape[1], eps=eps, momentum=1.0).double()
    x_t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    axes = (0, 2, 3)
    y_torch = torch_bn(x_t).detach()
    centred = x_t - x_t.mean(dim=axes, keepdim=True)
    gaps = {}
    for name, unbiased in (("biased", False), ("unbiased", True)):
        var = x_t.var(dim=axes, unbiased=unbiased, keepdim=True)
        gaps[name] = float((centred / torch.sqrt(var + eps) - y_torch).abs().max())
    running = torch_bn.running_var - x_t.var(dim=axes, unbiased=True)
    gaps["running"] = float(running.abs().max())
    return gaps


def batch_shift(values: np.ndarray, m: int, eps: float = 1e-5) -> float:
    """How far the first example's normalised values move when BN uses the statistics of the
    first ``m`` examples of ``values`` (N, H, W: one channel) instead of all N: the largest
    change, in units of the channel's standard deviation."""
    def normalise(batch: np.ndarray) -> np.ndarray:
        return (values[0] - batch.mean()) / np.sqrt(batch.var() + eps)

    return float(np.abs(normalise(values[:m]) - normalise(values)).max())


def batch_of_one(x_one: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                 dy: np.ndarray) -> dict[str, float]:
    """BN in training mode on a batch (1, C): the largest ``|y - beta|`` and ``|dx|``."""
    y, cache = reference.batch_norm_forward(x_one, gamma, beta)
    dx, _, _ = reference.batch_norm_backward(dy, cache)
    return {"one_y_gap": float(np.abs(y - beta).max()), "one_dx": float(np.abs(dx).max())}


def _forward(x: np.ndarray) -> dict[str, Any]:
    n, c, h, w = x.shape
    y, _ = reference.batch_norm_forward(x, np.ones(c), np.zeros(c))
    var_c = x.var(axis=(0, 2, 3))
    return {
        "batch_m": n, "channels": c, "effective_batch": n * h * w,
        "fwd_max_mean": float(np.abs(y.mean(axis=(0, 2, 3))).max()),
        "fwd_max_var_dev": float(np.abs(y.var(axis=(0, 2, 3)) - 1).max()),
        "var_min": float(var_c.min()), "var_max": float(var_c.max()),
        "eps_ratio_max": float((1e-5 / (var_c + 1e-5)).max()),
        "torch_eps": float(torch.nn.BatchNorm2d(1).eps),
        "float32_eps": float(torch.finfo(torch.float32).eps),
        "unbiased_excess_8": 8 / 7 - 1,   # m / (m - 1) - 1 for a batch of m = 8
    }


def _gradients(x: np.ndarray, up: dict[str, np.ndarray]) -> dict[str, float]:
    dy, gamma, beta = up["dy"], up["gamma"], up["beta"]
    _, cache = reference.batch_norm_forward(x, gamma, beta)
    dx, _, _ = reference.batch_norm_backward(dy, cache)
    sums = exercises.gradient_sums(dx, cache.x_hat)
    _, cache0 = reference.batch_norm_forward(x, gamma, beta, eps=0.0)
    dx0, _, _ = reference.batch_norm_backward(dy, cache0)
    fd = exercises.compare_with_finite_differences(x[CROP], gamma[:3], beta[:3], dy[CROP])
    torch_errors = exercises.compare_with_torch(x, gamma, beta, dy)
    return {
        "sum_dx": sums["sum"], "sum_dx_xhat": sums["sum times x_hat"],
        "sum_dx_xhat_eps0": exercises.gradient_sums(dx0, cache0.x_hat)["sum times x_hat"],
        "sum_free": min(exercises.gradient_sums(dy, cache.x_hat).values()),
        "fd_max": max(fd.values()), "n_crop": int(x[CROP].size),
        "torch_max": max(torch_errors.values()), "torch_y": torch_errors["y"],
        "torch_dx": torch_errors["dx"],
    }


def _module(pool: torch.Tensor) -> dict[str, float]:
    from bnlib import nn as bnlib_nn

    diffs = exercises.compare_modules(bnlib_nn.BatchNorm2d(16), torch.nn.BatchNorm2d(16),
                                      pool[:64].float(), steps=3)
    relative = [d["difference"] / d["scale"] for d in diffs.values() if d["scale"] > 0]
    return {
        "module_rel_max": max(relative), "module_out": diffs["output"]["difference"],
        "module_wgrad": diffs["weight gradient"]["difference"],
        "module_wgrad_scale": diffs["weight gradient"]["scale"],
        "module_rv": diffs["running var"]["difference"],
    }


def _bias_and_scale(conv: nn.Conv2d, digits: torch.Tensor) -> dict[str, float]:
    from bnlib import nn as bnlib_nn

    with_bias = copy.deepcopy(conv).double()
    no_bias = nn.Conv2d(1, 16, kernel_size=3, padding=1, bias=False).double()
    with torch.no_grad():
        no_bias.weight.copy_(conv.weight)
        bn = bnlib_nn.BatchNorm2d(16).double()
        gap = float((bn(with_bias(digits)) - bn(no_bias(digits))).abs().max())
    scales = [0.1, 0.5, 2.0, 10.0]
    default, tiny = (exercises.scale_invariance(
        no_bias, bnlib_nn.BatchNorm2d(16, eps=eps).double(), digits, scales)
        for eps in (1e-5, 1e-12))
    return {
        "bias_gap": gap, "bias_norm": float(conv.bias.detach().abs().max()),
        "scale_out_default": max(r["output"] for r in default[1:]),
        "scale_out_small": default[0]["output"],
        "scale_out_tiny": max(r["output"] for r in tiny),
        "scale_grad_tiny": max(r["gradient"] for r in tiny),
        "scale_cos_tiny": max(abs(r["cosine"]) for r in tiny),
        "scale_cos_default": max(abs(r["cosine"]) for r in default),
    }


def identity_gaps(batch: np.ndarray, other: np.ndarray, eps: float = 1e-5) -> tuple[float, float]:
    """Largest |y - x| when gamma and beta are set to ``batch``'s own standard deviation and
    mean (per channel) and BN in training mode normalises (a) ``batch`` and (b) ``other``, a
    second batch of the same shape, with its own statistics. (a) is round-off: those gamma and
    beta restore that one batch; (b) is what they leave of another batch."""
    axes = (0,) + tuple(range(2, batch.ndim))
    gamma, beta = np.sqrt(batch.var(axis=axes) + eps), batch.mean(axis=axes)
    same, _ = reference.batch_norm_forward(batch, gamma, beta, eps=eps)
    moved, _ = reference.batch_norm_forward(other, gamma, beta, eps=eps)
    return float(np.abs(same - batch).max()), float(np.abs(moved - other).max())


def findings(digits: torch.Tensor, conv: nn.Conv2d, seed: int = 0) -> dict[str, Any]:
    """Every number chapter 02 states, by the names its prose glues.

    Args:
        digits: the pool of images (N, 1, 32, 32), N >= 128; the first 64 are the batch, the
            next 64 a second batch.
        conv: the Conv2d(1, 16, 3, padding=1) whose outputs are the activations.
        seed: seed of the random upstream gradient, gamma and beta (:func:`random_upstream`).
    """
    with torch.no_grad():
        pool = conv(digits).double()
    x = pool[:64].numpy()
    up = random_upstream(x.shape, seed)
    out = {**_forward(x), **_gradients(x, up), **_module(pool)}
    out.update(_bias_and_scale(conv, digits[:64].double()))
    out.update({f"gap_{k}": v for k, v in variance_gaps(x).items()})
    other = pool[64:128].numpy()
    out["identity_gap"], out["identity_gap_other"] = identity_gaps(x, other)
    out["other_max"] = float(np.abs(other).max())
    channel = int(np.argmax(x.var(axis=(0, 2, 3))))
    out["channel"] = channel
    for m in (2, 64):
        out[f"shift_m{m}"] = batch_shift(pool.numpy()[:, channel], m)
    x_one = x[:1, :, 16, 16]
    out.update(batch_of_one(x_one, up["gamma"], up["beta"],
                            up["rng"].normal(size=x_one.shape)))
    return out
