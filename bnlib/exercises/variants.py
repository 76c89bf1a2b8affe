"""Checkers for the exercises of chapter 04 (layer, group and instance norm).

* :func:`check_group_norm`: ``group_norm(x, groups, eps) -> y`` for (N, C, H, W) inputs, no
  affine; ``groups=1`` is layer norm, ``groups=C`` instance norm;
* :func:`check_group_norm_backward`: ``backward(dy, x, groups, eps) -> dx``, its input
  gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers
from bnlib.exercises.equations import input_gradient

__all__ = ["GROUP_BACKWARD_MISTAKES", "GROUP_MISTAKES", "check_group_norm",
           "check_group_norm_backward"]


def _rows(x: np.ndarray, groups: int, strided: bool = False) -> np.ndarray:
    """(N, G, values of the group): consecutive blocks of C/G channels, or every G-th channel."""
    n, c = x.shape[:2]
    if strided:
        x = np.concatenate([x[:, g::groups] for g in range(groups)], axis=1)
    return x.reshape(n, groups, -1)


def _unrows(rows: np.ndarray, shape: tuple, groups: int, strided: bool = False) -> np.ndarray:
    x = rows.reshape(shape)
    if not strided:
        return x
    out, per = np.empty_like(x), shape[1] // groups
    for g in range(groups):
        out[:, g::groups] = x[:, g * per:(g + 1) * per]
    return out


def _group_norm(x, groups, eps, *, strided=False, ddof=0, axes=(2,)):
    rows = _rows(x, groups, strided)
    if axes == "batch":  # each group's statistics over the whole batch too
        mean = rows.mean(axis=(0, 2), keepdims=True)
        var = rows.var(axis=(0, 2), keepdims=True, ddof=ddof)
    elif axes == "channels":  # over the group's channels only, per position
        per = x.reshape(x.shape[0], groups, x.shape[1] // groups, -1)
        y = (per - per.mean(axis=2, keepdims=True)) / np.sqrt(per.var(axis=2, keepdims=True)
                                                              + eps)
        return y.reshape(x.shape)
    else:
        mean = rows.mean(axis=2, keepdims=True)
        var = rows.var(axis=2, keepdims=True, ddof=ddof)
    return _unrows((rows - mean) / np.sqrt(var + eps), x.shape, groups, strided)


#: Group norm's typical mistakes, each as the code that makes it.
GROUP_MISTAKES = (
    Mistake("channels grouped by c % G (strided), not in consecutive blocks",
            lambda x, g, e: _group_norm(x, g, e, strided=True)),
    Mistake("the statistics over the batch axis too, as batch norm would",
            lambda x, g, e: _group_norm(x, g, e, axes="batch")),
    Mistake("the statistics over the group's channels only, per position",
            lambda x, g, e: _group_norm(x, g, e, axes="channels")),
    Mistake("the unbiased variance", lambda x, g, e: _group_norm(x, g, e, ddof=1)),
)


def _cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for groups in (1, 2, 6):
        x = rng.normal(1.0, 2.0, size=(4, 6, 2, 2)) * rng.uniform(0.5, 3, (1, 6, 1, 1))
        cases.append(Case(f"G={groups}", (x, groups, 1e-5), f"x of shape {x.shape}"))
    return cases


def check_group_norm(group_norm: Callable, *, tolerance: float = 1e-10) -> Verdict:
    """Check ``group_norm(x, groups, eps) -> y`` (no affine) against
    ``torch.nn.functional.group_norm`` for ``x`` (4, 6, 2, 2) with 1 (layer norm), 2 and 6
    (instance norm) groups."""
    def expected(x, groups, eps):
        return F.group_norm(torch.from_numpy(x), groups, eps=eps)

    return check_answers("check_group_norm", group_norm, _cases(0), expected, ("y",),
                         tolerance=tolerance, mistakes=GROUP_MISTAKES,
                         reference_name="torch.nn.functional.group_norm")


def _row_backward(dy, x, groups, eps, *, mean_path=True, var_path=True, bn_axes=False):
    """Group norm's input gradient: BN's three-term formula on each (sample, group) row."""
    if bn_axes:  # the batch-norm formula, per channel over N, H, W
        rows_x = x.transpose(1, 0, 2, 3).reshape(1, x.shape[1], -1)
        rows_dy = dy.transpose(1, 0, 2, 3).reshape(1, x.shape[1], -1)
    else:
        rows_x, rows_dy = _rows(x, groups), _rows(dy, groups)
    inv_std = 1 / np.sqrt(rows_x.var(axis=2, keepdims=True) + eps)
    x_hat = (rows_x - rows_x.mean(axis=2, keepdims=True)) * inv_std
    dx = input_gradient(rows_dy, x_hat, inv_std, (2,), mean_path=mean_path, var_path=var_path)
    if bn_axes:
        return dx.reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(1, 0, 2, 3)
    return dx.reshape(x.shape)


#: The backward pass's typical mistakes, each as the code that makes it.
GROUP_BACKWARD_MISTAKES = (
    Mistake("the statistics treated as constants (dx = dy / sigma)",
            lambda dy, x, g, e: _row_backward(dy, x, g, e, mean_path=False, var_path=False)),
    Mistake("the path through the mean left out",
            lambda dy, x, g, e: _row_backward(dy, x, g, e, mean_path=False)),
    Mistake("batch norm's backward, per channel over N, H and W",
            lambda dy, x, g, e: _row_backward(dy, x, g, e, bn_axes=True)),
)


def check_group_norm_backward(backward: Callable, *, tolerance: float = 1e-10) -> Verdict:
    """Check ``backward(dy, x, groups, eps) -> dx``, the input gradient of group norm (no
    affine) for the loss ``sum(y * dy)``, against torch autograd through
    ``torch.nn.functional.group_norm``; 1, 2 and 6 groups of (4, 6, 2, 2) inputs."""
    rng = np.random.default_rng(1)
    cases = [Case(c.label, (rng.normal(size=c.args[0].shape), *c.args), c.about)
             for c in _cases(1)]

    def expected(dy, x, groups, eps):
        xt = torch.tensor(x, requires_grad=True)
        F.group_norm(xt, groups, eps=eps).backward(torch.from_numpy(dy))
        return xt.grad

    return check_answers("check_group_norm_backward", backward, cases, expected, ("dx",),
                         tolerance=tolerance, mistakes=GROUP_BACKWARD_MISTAKES,
                         reference_name="torch autograd through F.group_norm")
