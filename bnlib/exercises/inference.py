"""Checkers for the exercises of chapter 03 (inference-time statistics).

* :func:`check_running_statistics`: ``running(batches, momentum) -> (mean, var)``, PyTorch's
  running averages after a sequence of batches, momentum a number or ``None``;
* :func:`check_population_statistics`: ``population(batches) -> (mean, var)``, precise BN's
  exact statistics over batches of unequal sizes;
* :func:`check_fold_batch_norm`: ``fold(weight, bias, gamma, beta, mean, var, eps) ->
  (weight, bias)``, an eval-mode BN folded into the convolution (or transposed convolution)
  before it, checked by the outputs of the folded layer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = ["FOLD_MISTAKES", "POPULATION_MISTAKES", "RUNNING_MISTAKES",
           "check_fold_batch_norm", "check_population_statistics", "check_running_statistics"]


def _batches(sizes: tuple[int, ...], channels: int, seed: int) -> list[np.ndarray]:
    """Batches (n, C) whose means drift from batch to batch (so averaging rules differ)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=0.5 * k + rng.normal(size=channels), scale=rng.uniform(0.5, 2),
                       size=(n, channels)) for k, n in enumerate(sizes)]


def _running(batches, momentum, *, ddof=1, keras=False, start="init", count_init=False):
    """Running mean and variance after ``batches``, with the knobs the mistakes turn."""
    channels = batches[0].shape[1]
    mean, var = np.zeros(channels), np.ones(channels)
    for k, batch in enumerate(batches, start=1):
        m, v = batch.mean(axis=0), batch.var(axis=0, ddof=ddof)
        if momentum is None:
            weight = 1 / (k + 1) if count_init else 1 / k
        elif start == "first" and k == 1:
            weight = 1.0
        else:
            weight = 1 - momentum if keras else momentum
        mean, var = (1 - weight) * mean + weight * m, (1 - weight) * var + weight * v
    return mean, var


#: The running averages' typical mistakes, each as the code that makes it.
RUNNING_MISTAKES = (
    Mistake("the biased batch variance fed to the running variance",
            lambda b, mom: _running(b, mom, ddof=0)),
    Mistake("Keras's convention: momentum weighs the old average",
            lambda b, mom: _running(b, mom, keras=True)),
    Mistake("the averages started at the first batch, not at zeros and ones",
            lambda b, mom: _running(b, mom, start="first")),
    Mistake("momentum=None averaging the initial zeros and ones in",
            lambda b, mom: _running(b, mom, count_init=True)),
)


def check_running_statistics(running: Callable, *, tolerance: float = 1e-10) -> Verdict:
    """Check ``running(batches, momentum) -> (running_mean, running_var)``: PyTorch's running
    averages after training-mode passes over ``batches`` (a list of (4, 3) arrays), for
    ``momentum`` 0.1 and ``None`` (the cumulative average), against
    ``torch.nn.BatchNorm1d``'s buffers (float64)."""
    cases = [Case(f"momentum={mom}", (_batches((4,) * 5, 3, seed), mom))
             for seed, mom in enumerate((0.1, None))]

    def expected(batches, momentum):
        bn = nn.BatchNorm1d(3, momentum=momentum).double().train()
        with torch.no_grad():
            for batch in batches:
                bn(torch.from_numpy(batch))
        return bn.running_mean, bn.running_var

    return check_answers("check_running_statistics", running, cases, expected,
                         ("running mean", "running var"), tolerance=tolerance,
                         mistakes=RUNNING_MISTAKES,
                         reference_name="torch.nn.BatchNorm1d's running_mean, running_var")


#: Precise BN's typical mistakes, each as the code that makes it.
POPULATION_MISTAKES = (
    Mistake("the mean of the batches' variances (their means' spread left out)",
            lambda b: (np.concatenate(b).mean(axis=0),
                       np.mean([x.var(axis=0, ddof=1) for x in b], axis=0))),
    Mistake("the biased variance",
            lambda b: (np.concatenate(b).mean(axis=0), np.concatenate(b).var(axis=0))),
    Mistake("the unweighted mean of the batch means (the batches differ in size)",
            lambda b: (np.mean([x.mean(axis=0) for x in b], axis=0),
                       np.concatenate(b).var(axis=0, ddof=1))),
)


def check_population_statistics(population: Callable, *, tolerance: float = 1e-10) -> Verdict:
    """Check ``population(batches) -> (mean, var)``: the mean and the unbiased variance per
    channel of every value of ``batches`` (a list of (n_i, C) arrays of unequal sizes, as a
    data set split into batches), as precise BN computes them, against ``torch.cat`` of the
    batches and torch's ``mean`` and ``var``."""
    cases = [Case(str(sizes), (_batches(sizes, 3, seed),))
             for seed, sizes in enumerate(((4, 4, 4, 2), (8, 3, 5)))]

    def expected(batches):
        values = torch.cat([torch.from_numpy(b) for b in batches])
        return values.mean(dim=0), values.var(dim=0)

    return check_answers("check_population_statistics", population, cases, expected,
                         ("mean", "var"), tolerance=tolerance, mistakes=POPULATION_MISTAKES,
                         reference_name="torch.cat(batches).mean(0), .var(0)")


def _fold(weight, bias, gamma, beta, mean, var, eps, *, axis, shift=True, eps_in=True,
          scale_mean=True):
    """Folded (weight, bias) with the knobs the mistakes turn; ``axis`` is the weight's axis
    of output channels (0 for Conv2d, 1 for ConvTranspose2d)."""
    scale = gamma / np.sqrt(var + (eps if eps_in else 0.0))
    shape = [1] * weight.ndim
    shape[axis] = -1
    centred = (bias - mean) if shift else bias
    new_bias = scale * centred + beta if scale_mean else scale * bias - mean + beta
    return weight * scale.reshape(shape), new_bias


def _fold_mistakes(out_axis: int) -> tuple[Mistake, ...]:
    other = 1 - out_axis
    return (
        Mistake("the scale applied along the weight's input channels",
                lambda *a: _fold(*a, axis=other)),
        Mistake("the running mean left out of the bias",
                lambda *a: _fold(*a, axis=out_axis, shift=False)),
        Mistake("eps left out of the scale",
                lambda *a: _fold(*a, axis=out_axis, eps_in=False)),
        Mistake("the mean subtracted after scaling (s * b - mean + beta)",
                lambda *a: _fold(*a, axis=out_axis, scale_mean=False)),
    )


#: The folding's typical mistakes, for Conv2d (``False``) and ConvTranspose2d (``True``).
FOLD_MISTAKES = {False: _fold_mistakes(0), True: _fold_mistakes(1)}


def check_fold_batch_norm(fold: Callable, *, transposed: bool = False,
                          tolerance: float = 1e-10) -> Verdict:
    """Check ``fold(weight, bias, gamma, beta, mean, var, eps) -> (weight, bias)``: the
    parameters of one convolution equal to a ``Conv2d`` (``transposed=False``; weight
    (C_out, C_in, k, k)) or ``ConvTranspose2d`` (weight (C_in, C_out, k, k)), padding 1,
    followed by an eval-mode BN with running ``mean``, ``var``. The reference is the output
    of torch's convolution and ``BatchNorm2d`` in eval mode on a batch of 4 images; the
    answer is the output of the same convolution with the folded parameters. One case has
    running variances of the order of ``eps``."""
    rng = np.random.default_rng(3)
    conv = F.conv_transpose2d if transposed else F.conv2d
    cases = []
    for label, var_scale in (("var ~ 1", 1.0), ("var ~ eps", 1e-5)):
        weight = rng.normal(size=(3, 3, 3, 3))
        params = (weight, rng.normal(size=3), rng.uniform(0.5, 2, 3), rng.normal(size=3),
                  rng.normal(size=3), var_scale * rng.uniform(0.5, 3, 3), 1e-5)
        cases.append(Case(label, (rng.normal(size=(4, 3, 5, 5)), *params)))

    def run_conv(x, weight, bias):
        return conv(torch.from_numpy(x), torch.as_tensor(np.asarray(weight, dtype=float)),
                    torch.as_tensor(np.asarray(bias, dtype=float)), padding=1)

    def expected(x, weight, bias, gamma, beta, mean, var, eps):
        bn = nn.BatchNorm2d(3, eps=eps).double().eval()
        with torch.no_grad():
            for name, value in (("weight", gamma), ("bias", beta), ("running_mean", mean),
                                ("running_var", var)):
                getattr(bn, name).copy_(torch.from_numpy(value))
            return bn(run_conv(x, weight, bias))

    def folded_output(answer: Callable) -> Callable:
        def output(x, *params):
            return run_conv(x, *answer(*params))
        output.__name__ = getattr(answer, "__name__", "fold")
        return output

    mistakes = [Mistake(m.name, folded_output(m.answer)) for m in FOLD_MISTAKES[transposed]]
    layer = "ConvTranspose2d" if transposed else "Conv2d"
    return check_answers("check_fold_batch_norm", folded_output(fold), cases, expected,
                         ("output",), tolerance=tolerance, mistakes=mistakes,
                         reference_name=f"torch {layer} then BatchNorm2d in eval mode")
