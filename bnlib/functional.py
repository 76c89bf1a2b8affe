"""The normalisations as functions of tensors, written from scratch.

Batch norm, batch renorm (Ioffe 2017), ghost batches (Hoffer et al. 2017), layer, group and
instance norm and RMSNorm (Zhang & Sennrich 2019). No function here calls torch's own
normalisation functions or kernels (``F.batch_norm``, ``F.layer_norm``, ...): the statistics are
plain tensor reductions. The modules of :mod:`bnlib.nn` are built on top of these functions.

Every normalisation with a mean and a variance goes through one autograd function,
:class:`BatchNormFunction` (statistics per channel over every axis but 1), as torch's own do:
instance norm is batch norm of a ``(1, N * C, *spatial)`` view, group norm of a
``(1, N * G, -1)`` view, layer norm of a ``(1, rows, -1)`` view. Its first backward is the
closed form of chapter 02; when a second derivative is asked for (``create_graph=True``) the
same formula is evaluated with differentiable tensor operations from the saved input, so
double backward (``gradgradcheck``) and batched gradients (``vmap`` over the backward) work.

The conventions, as in PyTorch: training uses the batch statistics with the biased variance;
the running variance is updated with the unbiased one, ``var * m / (m - 1)`` for ``m`` values per
channel; ``running = (1 - momentum) * running + momentum * batch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "BatchNormFunction",
    "batch_norm",
    "batch_norm_train",
    "batch_renorm",
    "check_more_than_one_value",
    "ghost_batch_norm",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "normalize_with_statistics",
    "per_channel",
    "rms_norm",
    "update_running_stats",
]


def per_channel(t: Tensor, ndim: int) -> Tensor:
    """View a (C,) tensor as (1, C, 1, ..., 1) so it broadcasts against an ``ndim``-D input."""
    return t.view(1, -1, *([1] * (ndim - 2)))


def _channel_dims(ndim: int) -> tuple[int, ...]:
    """The axes a batch statistic reduces over: every axis but the channel axis 1."""
    return (0, *range(2, ndim))


def check_more_than_one_value(x: Tensor) -> None:
    """Batch statistics need at least two values per channel (torch raises the same ValueError)."""
    if x.numel() // max(x.shape[1], 1) == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {x.size()}: "
            "batch statistics of a single value are undefined (variance 0); use a batch of at "
            "least 2 samples, or eval() mode with running statistics"
        )


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``y * weight + bias`` per channel (axis 1), either may be absent."""
    if weight is not None:
        y = y * per_channel(weight, y.dim())
    if bias is not None:
        y = y + per_channel(bias, y.dim())
    return y


def _backward_differentiable(x: Tensor, weight: Tensor | None, eps: float, dy: Tensor):
    """``(dx, dgamma, dbeta)`` of batch norm as tensor operations of ``x``, ``weight``, ``dy``
    (so autograd can differentiate them again)."""
    dims = _channel_dims(x.dim())
    m = x.numel() // x.shape[1]
    centred = x - x.mean(dims, keepdim=True)
    inv_std = torch.rsqrt((centred * centred).mean(dims, keepdim=True) + eps)
    x_hat = centred * inv_std
    dbeta = dy.sum(dims)
    dgamma = (dy * x_hat).sum(dims)
    scale = inv_std if weight is None else per_channel(weight, x.dim()) * inv_std
    dx = scale * (dy - per_channel(dbeta, x.dim()) / m - x_hat * per_channel(dgamma, x.dim()) / m)
    return dx, dgamma, dbeta


class BatchNormFunction(torch.autograd.Function):
    """Batch norm with batch statistics: ``y = gamma * (x - mean) / sqrt(var + eps) + beta``.

    ``x``: ``(N, C, *spatial)`` with statistics over every axis but 1; ``weight``, ``bias``: (C,) or
    None. Returns ``(y, mean, var)`` with ``mean`` and the biased ``var`` of shape (C,), which are
    not differentiable outputs (use them for the running statistics only).

    The backward is the closed form, ``m`` values per channel, ``x_hat = (x - mean) * inv_std``::

        dbeta  = sum(dy)                dgamma = sum(dy * x_hat)
        dx     = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma)

    regrouped per channel as ``dx = k_dy * dy + k_centred * (x - mean) + k_0``. It saves the
    centred input ``x - mean``, so no sum in the backward suffers cancellation when a channel's
    mean is large against its spread. Under ``create_graph=True`` the same formula is built from
    differentiable operations of the saved input instead (:func:`_backward_differentiable`), so
    second derivatives flow through the batch statistics. Memory: it keeps the input (for that
    second derivative) and the centred input alive, one activation more than torch's kernel.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float):
        dims = _channel_dims(x.dim())
        mean = x.mean(dims)
        centred = x - per_channel(mean, x.dim())
        var = (centred * centred).mean(dims)  # biased: divide by m
        inv_std = torch.rsqrt(var + eps)
        scale = per_channel(inv_std if weight is None else weight * inv_std, x.dim())
        y = centred * scale
        if bias is not None:  # in place: addcmul with a broadcast (1, C, 1, 1) self is slow
            y.add_(per_channel(bias, x.dim()))
        ctx.save_for_backward(x, centred, weight, inv_std)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy: Tensor, _dmean: Tensor | None, _dvar: Tensor | None):
        x, centred, weight, inv_std = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # a second derivative is wanted
            dx, dgamma, dbeta = _backward_differentiable(x, weight, ctx.eps, dy)
        else:
            dims = _channel_dims(dy.dim())
            m = centred.numel() // centred.shape[1]
            dbeta = dy.sum(dims)
            dgamma = (dy * centred).sum(dims) * inv_std  # sum(dy * x_hat)
            dx = None
            if needs[0]:
                k_dy = inv_std if weight is None else weight * inv_std
                k_centred = -k_dy * dgamma * inv_std / m
                k_0 = -k_dy * dbeta / m
                # three passes of full-size operands (fast kernels), into one new tensor
                dx = dy * per_channel(k_dy, dy.dim())
                dx.addcmul_(centred, per_channel(k_centred, dy.dim()))
                dx.add_(per_channel(k_0, dy.dim()))
        return (
            dx if needs[0] else None,
            dgamma if needs[1] else None,
            dbeta if needs[2] else None,
            None,
        )


def batch_norm_train(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch norm of ``x`` ``(N, C, *)`` with its batch statistics: ``(y, mean, var)``, the (C,)
    ``mean`` and biased ``var`` detached. An empty batch gives an empty ``y`` (weight and bias
    get zero gradients) and NaN statistics, which callers must not store, as torch does."""
    if x.numel() == 0:
        nan = torch.full(x.shape[1:2], float("nan"), dtype=x.dtype, device=x.device)
        return _affine(x.clone(), weight, bias), nan, nan
    return BatchNormFunction.apply(x, weight, bias, eps)


def update_running_stats(
    running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, m: int, factor: float
) -> None:
    """``running = (1 - factor) * running + factor * batch`` in place, without autograd, with the
    unbiased variance ``var * m / (m - 1)`` for ``m`` values per channel."""
    with torch.no_grad():
        unbiased = var * (m / (m - 1))
        running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
        running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)


def normalize_with_statistics(
    x: Tensor, mean: Tensor, var: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` per channel with given (C,) statistics
    (eval mode: the running ones), as one multiply-add per element."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return (x * per_channel(scale, x.dim())).add_(per_channel(shift, x.dim()))


def batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch norm of ``x`` ``(N, C, *)``, with the arguments of ``torch.nn.functional.batch_norm``.

    Training: batch statistics, and the running ones (if given) moved by ``momentum`` in place
    (not on an empty batch). Otherwise: the running statistics."""
    if not training:
        if eps < 0:
            raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
        return normalize_with_statistics(x, running_mean, running_var, weight, bias, eps)
    check_more_than_one_value(x)
    if eps <= 0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    y, mean, var = batch_norm_train(x, weight, bias, eps)
    if running_mean is not None and x.numel() > 0:
        update_running_stats(running_mean, running_var, mean, var, x.numel() // x.shape[1],
                             momentum)
    return y


def batch_renorm(
    x: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    rmax: float,
    dmax: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch renorm (Ioffe 2017) of ``x`` ``(N, C, *)`` in training: ``(y, mean, var)``.

    With batch ``mu_B, sigma_B = sqrt(var_B + eps)`` and running ``mu, sigma``::

        r = clip(sigma_B / sigma, 1 / rmax, rmax)      d = clip((mu_B - mu) / sigma, -dmax, dmax)
        y = weight * ((x - mu_B) / sigma_B * r + d) + bias

    ``r`` and ``d`` are constants for the backward pass. The running statistics are not moved.
    """
    if rmax < 1 or dmax < 0:
        raise ValueError(f"need rmax >= 1 and dmax >= 0, got rmax={rmax}, dmax={dmax}")
    x_hat, mean, var = batch_norm_train(x, None, None, eps)
    with torch.no_grad():
        running_std = torch.sqrt(running_var + eps)
        r = (torch.sqrt(var + eps) / running_std).clamp(1 / rmax, rmax)
        d = ((mean - running_mean) / running_std).clamp(-dmax, dmax)
    y = x_hat * per_channel(r, x.dim()) + per_channel(d, x.dim())
    return _affine(y, weight, bias), mean, var


def ghost_batch_norm(
    x: Tensor,
    ghost_batch_size: int,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    rmax: float = 1.0,
    dmax: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch norm (batch renorm if ``rmax > 1`` or ``dmax > 0``) of each consecutive group of
    ``ghost_batch_size`` samples of ``x`` ``(N, C, *)`` alone (the last group may be smaller).

    Returns ``(y, means, unbiased_vars)``: the output and each group's (C,) mean and unbiased
    variance stacked to (groups, C). The running statistics are read (for renorm), not moved.
    """
    renorm = rmax != 1.0 or dmax != 0.0
    outputs, means, unbiased = [], [], []
    for ghost in torch.split(x, ghost_batch_size, dim=0):
        m = ghost.numel() // ghost.shape[1]  # values per channel in this ghost batch
        if m < 2:
            raise ValueError(
                f"a ghost batch of shape {tuple(ghost.shape)} has one value per channel: its "
                "variance is undefined; use larger batches or a larger ghost_batch_size"
            )
        if renorm:
            y, mean, var = batch_renorm(ghost, running_mean, running_var, weight, bias, eps,
                                        rmax, dmax)
        else:
            y, mean, var = batch_norm_train(ghost, weight, bias, eps)
        outputs.append(y)
        means.append(mean)
        unbiased.append(var * (m / (m - 1)))
    y = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return y, torch.stack(means), torch.stack(unbiased)


def instance_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
) -> Tensor:
    """Instance norm of ``x`` ``(N, C, *spatial)``: statistics per sample and channel over the
    spatial axes, as batch norm of the ``(1, N * C, *spatial)`` view (torch's own construction,
    so the output is contiguous like torch's). Running statistics (if given and
    ``use_input_stats``) move towards the batch average of the per-instance statistics."""
    if not use_input_stats:  # contiguous like torch's, which reshapes in this case too
        return normalize_with_statistics(x.contiguous(), running_mean, running_var, weight,
                                         bias, eps)
    n, c = x.shape[:2]
    spatial = math.prod(x.shape[2:])
    if spatial == 1:
        raise ValueError(
            f"Expected more than 1 spatial element when training, got input size {x.size()}: "
            "instance statistics need at least 2 values per (sample, channel)"
        )
    flat = x.contiguous().view(1, n * c, *x.shape[2:])
    y, mean, var = batch_norm_train(flat, None, None, eps)
    y = _affine(y.view(x.shape), weight, bias)
    if running_mean is not None and x.numel() > 0:
        update_running_stats(running_mean, running_var, mean.view(n, c).mean(0),
                             var.view(n, c).mean(0), spatial, momentum)
    return y


def _channels_last_layout(x: Tensor) -> torch.memory_format | None:
    """``torch.channels_last`` (4D) or ``torch.channels_last_3d`` (5D) when ``x`` is laid out so
    and not also plainly contiguous; otherwise None."""
    layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if layout is None or x.is_contiguous() or not x.is_contiguous(memory_format=layout):
        return None
    return layout


class _GradientInLayout(torch.autograd.Function):
    """The identity, whose gradient is handed back in the memory format ``layout``: a reshape
    that copies a channels-last input returns a contiguous gradient, where torch's kernels
    return one in the input's layout."""

    @staticmethod
    def forward(ctx, x: Tensor, layout: torch.memory_format) -> Tensor:
        ctx.layout = layout
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad.contiguous(memory_format=ctx.layout), None


def group_norm(
    x: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None, eps: float
) -> Tensor:
    """Group norm of ``x`` ``(N, C, *)``: the channels split into ``num_groups`` groups, statistics
    per (sample, group), as batch norm of the ``(1, N * groups, -1)`` view; then the per-channel
    affine step. The output, and the gradient of ``x``, keep the input's memory format (a
    channels-last input gets both channels last, as from torch's kernels)."""
    layout = _channels_last_layout(x)
    if layout is not None:
        x = _GradientInLayout.apply(x, layout)
    n = x.shape[0]
    grouped = x.reshape(1, n * num_groups, math.prod(x.shape[1:]) // num_groups)
    y, _, _ = batch_norm_train(grouped, None, None, eps)
    y = _affine(y.view(x.shape), weight, bias)
    return y if layout is None else y.contiguous(memory_format=layout)


def layer_norm(
    x: Tensor, normalized_shape: Sequence[int], weight: Tensor | None, bias: Tensor | None,
    eps: float,
) -> Tensor:
    """Layer norm of ``x`` ``(*, *normalized_shape)``: statistics over the trailing
    ``normalized_shape`` per leading index, as batch norm of the ``(1, rows, -1)`` view; then
    ``weight`` and ``bias`` of shape ``normalized_shape``."""
    size = math.prod(normalized_shape)
    rows = x.numel() // size if size else 0
    y, _, _ = batch_norm_train(x.reshape(1, rows, size), None, None, eps)
    y = y.view(x.shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm(
    x: Tensor, normalized_shape: Sequence[int], weight: Tensor | None, eps: float | None
) -> Tensor:
    """RMSNorm of ``x`` ``(*, *normalized_shape)``: ``x / sqrt(mean(x^2) + eps) * weight`` over the
    trailing dimensions; ``eps=None`` is the machine epsilon of ``x``'s dtype."""
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    dims = tuple(range(x.dim() - len(normalized_shape), x.dim()))
    y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
    return y if weight is None else y * weight
