"""Normalisation layers for PyTorch, written from scratch.

:class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`LayerNorm`, :class:`GroupNorm`,
:class:`InstanceNorm2d` and :class:`RMSNorm` each replace their ``torch.nn`` namesake;
:class:`BatchRenorm2d` (Ioffe 2017) has no torch counterpart and equals BatchNorm2d at
``rmax=1, dmax=0``.

Each replacement has the same constructor arguments and defaults, the same parameters and
buffers (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``) and so
the same ``state_dict`` keys, the same outputs, gradients and running statistics, and rejects the
same inputs. None of them calls torch's own normalisation functions (``F.batch_norm``,
``F.layer_norm``, ...): the statistics are plain tensor reductions.

Batch norm in training mode goes through :class:`BatchNormFunction`, an autograd function whose
backward is the closed form of chapter 02 (for speed: autograd through the plain forward would
store and revisit several full-size temporaries). Every other path is plain tensor operations,
differentiated by autograd.

The conventions, as in PyTorch:

* training uses the batch statistics with the biased variance; the running variance is updated with
  the unbiased one, ``var * m / (m - 1)`` for ``m`` values per channel;
* ``running = (1 - momentum) * running + momentum * batch``; ``momentum=None`` gives the
  cumulative average, ``momentum = 1 / num_batches_tracked``;
* in eval mode the running statistics are used, unless the layer has none
  (``track_running_stats=False``), in which case the batch statistics are used.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNormFunction",
    "BatchRenorm2d",
    "GroupNorm",
    "InstanceNorm2d",
    "LayerNorm",
    "RMSNorm",
]


def _per_channel(t: Tensor, ndim: int) -> Tensor:
    """View a (C,) tensor as (1, C, 1, ..., 1) so it broadcasts against an ``ndim``-D input."""
    return t.view(1, -1, *([1] * (ndim - 2)))


def _check_more_than_one_value(x: Tensor) -> None:
    """Batch statistics need at least two values per channel (torch raises the same ValueError)."""
    if x.numel() // max(x.shape[1], 1) == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {x.size()}: "
            "batch statistics of a single value are undefined (variance 0); use a batch of at "
            "least 2 samples, or eval() mode with running statistics"
        )


def _check_trailing_shape(x: Tensor, normalized_shape: tuple[int, ...]) -> int:
    """Raise torch's error unless ``x`` ends with ``normalized_shape``; return its length."""
    k = len(normalized_shape)
    if x.dim() < k or tuple(x.shape[x.dim() - k:]) != normalized_shape:
        raise RuntimeError(
            f"Given normalized_shape={list(normalized_shape)}, expected input with shape "
            f"[*, {', '.join(map(str, normalized_shape))}], but got input of size "
            f"{list(x.shape)}: the last {k} dimension(s) of the input must equal "
            "normalized_shape"
        )
    return k


def _register_affine(
    module: nn.Module, shape: tuple[int, ...], affine: bool, bias: bool, factory: dict
) -> None:
    """Register ``weight`` and ``bias`` of ``shape`` under torch's names, or ``None`` where the
    layer has none (values are set by :func:`_reset_affine`)."""
    module.register_parameter(
        "weight", nn.Parameter(torch.empty(shape, **factory)) if affine else None
    )
    module.register_parameter(
        "bias", nn.Parameter(torch.empty(shape, **factory)) if affine and bias else None
    )


def _reset_affine(module: nn.Module) -> None:
    """torch's initialisation of a normalisation layer's affine part: ``weight`` = 1, ``bias`` = 0
    (either may be absent)."""
    if getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


class BatchNormFunction(torch.autograd.Function):
    """Batch norm with batch statistics: ``y = gamma * (x - mean) / sqrt(var + eps) + beta``.

    ``x``: ``(N, C, *spatial)`` with statistics over every axis but 1; ``weight``, ``bias``: (C,) or
    None. Returns ``(y, mean, var)`` with ``mean`` and the biased ``var`` of shape (C,), which are
    not differentiable outputs (use them for the running statistics only).

    The backward is the closed form, ``m`` values per channel, ``x_hat = (x - mean) * inv_std``::

        dbeta  = sum(dy)                dgamma = sum(dy * x_hat)
        dx     = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma)

    regrouped per channel as ``dx = k_dy * dy + k_centred * (x - mean) + k_0``: two passes over
    the data, into the buffer of the one temporary. It saves the centred input ``x - mean`` (not
    ``x``), so no sum in the backward suffers cancellation when a channel's mean is large against
    its spread. Only first derivatives are supported (a second one raises an error rather than
    coming out wrong).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float):
        dims = (0, *range(2, x.dim()))
        mean = x.mean(dims)
        centred = x - _per_channel(mean, x.dim())
        squares = centred * centred
        var = squares.mean(dims)  # biased: divide by m
        inv_std = torch.rsqrt(var + eps)
        # y = (gamma * inv_std) * centred + beta, written into the buffer of the squares
        scale = _per_channel(inv_std if weight is None else weight * inv_std, x.dim())
        if bias is None:
            y = torch.mul(centred, scale, out=squares)
        else:
            y = torch.addcmul(_per_channel(bias, x.dim()), centred, scale, out=squares)
        ctx.save_for_backward(centred, weight, inv_std)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, _dmean: Tensor | None, _dvar: Tensor | None):
        centred, weight, inv_std = ctx.saved_tensors
        dims = (0, *range(2, centred.dim()))
        m = centred.numel() // centred.shape[1]
        dbeta = dy.sum(dims)
        products = dy * centred
        dgamma = products.sum(dims) * inv_std  # sum(dy * x_hat)
        dx = None
        if ctx.needs_input_grad[0]:
            # dx = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma), with
            # x_hat = centred * inv_std: one coefficient per channel for each of dy, centred and 1,
            # written into the buffer of the products
            k_dy = inv_std if weight is None else weight * inv_std
            k_centred = -k_dy * dgamma * inv_std / m
            k_0 = -k_dy * dbeta / m
            dx = torch.addcmul(
                _per_channel(k_0, dy.dim()), centred, _per_channel(k_centred, dy.dim()),
                out=products,
            )
            dx.addcmul_(dy, _per_channel(k_dy, dy.dim()))
        dweight = dgamma if ctx.needs_input_grad[1] else None
        dbias = dbeta if ctx.needs_input_grad[2] else None
        return dx, dweight, dbias, None


class _RunningStatsNorm(nn.Module):
    """Parameters and buffers shared by batch and instance norm, laid out exactly as in torch."""

    _version = 2  # torch's _NormBase version: state dicts carry the same metadata

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _register_affine(self, (num_features,), affine, bias, factory)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running statistics reset, ``weight`` = 1, ``bias`` = 0."""
        self.reset_running_stats()
        _reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )

    def _normalize_with_running_stats(self, x: Tensor) -> Tensor:
        """Eval mode: ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``."""
        scale = torch.rsqrt(self.running_var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -self.running_mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return torch.addcmul(_per_channel(shift, x.dim()), x, _per_channel(scale, x.dim()))

    def _update_running_stats(self, mean: Tensor, unbiased_var: Tensor, factor: float) -> None:
        """``running = (1 - factor) * running + factor * batch``, without autograd."""
        with torch.no_grad():
            self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
            self.running_var.mul_(1 - factor).add_(
                unbiased_var.to(self.running_var.dtype), alpha=factor
            )


class _BatchNorm(_RunningStatsNorm):
    _input_dims: tuple[int, ...] = ()

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in self._input_dims:
            expected = " or ".join(f"{d}D" for d in self._input_dims)
            raise ValueError(
                f"expected {expected} input (got {x.dim()}D input): {type(self).__name__} takes "
                f"{self._shape_help}, got shape {tuple(x.shape)}"
            )

    def _check_channels(self, x: Tensor, uses_running_stats: bool) -> None:
        # torch checks the channel count against whichever per-channel tensor it uses
        if x.shape[1] != self.num_features and (self.weight is not None or uses_running_stats):
            raise RuntimeError(
                f"{type(self).__name__}({self.num_features}) got an input with {x.shape[1]} "
                f"channels (dim 1 of shape {tuple(x.shape)}); the layer was built for "
                f"num_features={self.num_features}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        use_batch_stats = self.training or self.running_mean is None
        update_running = self.training and self.track_running_stats
        self._check_channels(x, uses_running_stats=update_running or not use_batch_stats)
        if not use_batch_stats:
            if self.eps < 0:
                raise ValueError(f"batch_norm eps must be non-negative, but got {self.eps}")
            return self._normalize_with_running_stats(x)

        _check_more_than_one_value(x)
        if self.eps <= 0:
            raise ValueError(f"batch_norm eps must be positive during training, but got {self.eps}")
        factor = 0.0
        if update_running:
            self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
        y, mean, var = BatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        if update_running:
            m = x.numel() // x.shape[1]
            self._update_running_stats(mean, var * (m / (m - 1)), factor)
        return y


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs: statistics per channel over N (and L).

    Same constructor, parameters, buffers and behaviour as :class:`torch.nn.BatchNorm1d`.
    Output shape = input shape; ``weight``, ``bias``, ``running_mean``, ``running_var``: (C,).
    """

    _input_dims = (2, 3)
    _shape_help = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs: statistics per channel over N, H and W.

    Same constructor, parameters, buffers and behaviour as :class:`torch.nn.BatchNorm2d`.
    Output shape = input shape; ``weight``, ``bias``, ``running_mean``, ``running_var``: (C,).
    """

    _input_dims = (4,)
    _shape_help = "(N, C, H, W)"


class InstanceNorm2d(_RunningStatsNorm):
    """Instance norm over (N, C, H, W) or unbatched (C, H, W) inputs: statistics per sample and
    channel over H and W.

    Same constructor and defaults as :class:`torch.nn.InstanceNorm2d` (``affine=False``,
    ``track_running_stats=False``). With running statistics, they are updated with the mean over
    the batch of the per-instance statistics; like torch, ``momentum=None`` leaves them unchanged.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # torch's rule for checkpoints older than 0.4 (version None): running stats of a layer
        # that does not track them are reported and dropped
        if local_metadata.get("version", None) is None and not self.track_running_stats:
            keys = [prefix + k for k in ("running_mean", "running_var") if prefix + k in state_dict]
            if keys:
                error_msgs.append(
                    f"Unexpected running stats buffer(s) {keys} for {type(self).__name__} with "
                    "track_running_stats=False; remove them from the state dict, or build the "
                    "layer with track_running_stats=True"
                )
                for key in keys:
                    state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (3, 4):
            raise ValueError(
                f"expected 3D or 4D input (got {x.dim()}D input): InstanceNorm2d takes "
                f"(N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}"
            )
        channel_dim = x.dim() - 3
        if x.shape[channel_dim] != self.num_features:
            if self.affine:
                raise ValueError(
                    f"expected input's size at dim={channel_dim} to match num_features "
                    f"({self.num_features}), but got: {x.shape[channel_dim]}."
                )
            warnings.warn(
                f"input's size at dim={channel_dim} does not match num_features. "
                "You can silence this warning by not passing in num_features, "
                "which is not used because affine=False",
                stacklevel=2,
            )
        if x.dim() == 3:
            return self._forward_batched(x.unsqueeze(0)).squeeze(0)
        return self._forward_batched(x)

    def _forward_batched(self, x: Tensor) -> Tensor:
        if not (self.training or not self.track_running_stats):
            return self._normalize_with_running_stats(x)
        spatial = x.shape[2] * x.shape[3]
        if spatial == 1:
            raise ValueError(
                f"Expected more than 1 spatial element when training, got input size {x.size()}: "
                "instance statistics need at least 2 values per (sample, channel)"
            )
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * _per_channel(self.weight, 4)
        if self.bias is not None:
            y = y + _per_channel(self.bias, 4)
        if self.track_running_stats and self.momentum is not None:
            unbiased = var.detach() * (spatial / (spatial - 1))
            self._update_running_stats(
                mean.detach().mean((0, 2, 3)), unbiased.mean((0, 2, 3)), self.momentum
            )
        return y


class LayerNorm(nn.Module):
    """Layer norm over the last ``len(normalized_shape)`` dimensions of a ``(*, *normalized_shape)``
    input; statistics per leading index (biased variance), no running statistics.

    Same constructor as :class:`torch.nn.LayerNorm`: ``normalized_shape`` an int or a tuple,
    ``eps``, ``elementwise_affine``, ``bias``, ``device``, ``dtype``. ``weight``, ``bias``:
    ``normalized_shape``.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, bias, factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` = 1, ``bias`` = 0."""
        _reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )

    def forward(self, x: Tensor) -> Tensor:
        k = _check_trailing_shape(x, self.normalized_shape)
        dims = tuple(range(x.dim() - k, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


class GroupNorm(nn.Module):
    """Group norm over ``(N, C, *)`` inputs: the C channels split into ``num_groups`` groups,
    statistics per (sample, group) over the group's channels and every spatial position.

    Same constructor as :class:`torch.nn.GroupNorm` (``num_groups``, ``num_channels``, ``eps``,
    ``affine``, ``device``, ``dtype``, keyword ``bias``). ``weight``, ``bias``: (C,).
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(
                f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups}): "
                "every group holds num_channels // num_groups channels"
            )
        factory = {"device": device, "dtype": dtype}
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _register_affine(self, (num_channels,), affine, bias, factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` = 1, ``bias`` = 0."""
        _reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise RuntimeError(
                f"Expected at least 2 dimensions for input tensor but received {x.dim()}: "
                "GroupNorm takes (N, C, *)"
            )
        n, c = x.shape[:2]
        if self.weight is not None and c != self.num_channels:
            raise RuntimeError(
                f"GroupNorm({self.num_groups}, {self.num_channels}) got an input with {c} "
                f"channels (shape {tuple(x.shape)}); expected {self.num_channels}"
            )
        if c % self.num_groups != 0:
            raise RuntimeError(
                f"Expected number of channels in input to be divisible by num_groups, but got "
                f"input of shape {list(x.shape)} and num_groups={self.num_groups}"
            )
        per_group = x[0, : c // self.num_groups].numel() if n > 0 else 0
        if n * per_group == 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size "
                f"{[n * c // self.num_groups, self.num_groups, *x.shape[2:]]}: a group of a single "
                "value has no variance"
            )
        grouped = x.reshape(n, self.num_groups, -1)
        var, mean = torch.var_mean(grouped, dim=2, correction=0, keepdim=True)
        y = ((grouped - mean) * torch.rsqrt(var + self.eps)).view(x.shape)
        if self.weight is not None:
            y = y * _per_channel(self.weight, x.dim())
        if self.bias is not None:
            y = y + _per_channel(self.bias, x.dim())
        return y


class BatchRenorm2d(_BatchNorm):
    """Batch renormalisation (Ioffe 2017) over (N, C, H, W) inputs.

    In training, the batch-normalised value is corrected towards what the running statistics
    would give: with batch statistics ``mu_B, sigma_B = sqrt(var_B + eps)`` and running ones
    ``mu, sigma = sqrt(running_var + eps)``::

        r = clip(sigma_B / sigma, 1 / rmax, rmax)      d = clip((mu_B - mu) / sigma, -dmax, dmax)
        y = gamma * ((x - mu_B) / sigma_B * r + d) + beta

    with ``r`` and ``d`` treated as constants by the backward pass. ``rmax`` and ``dmax`` are plain
    attributes, so a training schedule can relax them (the paper starts at 1 and 0, which is batch
    norm exactly, and ends at 3 and 5, the defaults here). Running statistics are updated, and
    used in eval mode, exactly as in :class:`BatchNorm2d`, which needs them:
    ``track_running_stats=False`` is rejected. Parameters and buffers as in BatchNorm2d.
    """

    _input_dims = (4,)
    _shape_help = "(N, C, H, W)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        rmax: float = 3.0,
        dmax: float = 5.0,
    ) -> None:
        if not track_running_stats:
            raise ValueError(
                "BatchRenorm2d corrects batch statistics towards running statistics, so it needs "
                "track_running_stats=True (use BatchNorm2d without running statistics instead)"
            )
        super().__init__(num_features, eps, momentum, affine, True, device, dtype, bias=bias)
        self.rmax = rmax
        self.dmax = dmax

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rmax={self.rmax}, dmax={self.dmax}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        self._check_channels(x, uses_running_stats=True)
        _check_more_than_one_value(x)
        if self.rmax < 1 or self.dmax < 0:
            raise ValueError(
                f"need rmax >= 1 and dmax >= 0, got rmax={self.rmax}, dmax={self.dmax}"
            )
        x_hat, mean, var = BatchNormFunction.apply(x, None, None, self.eps)
        with torch.no_grad():  # r and d are constants for the backward pass
            running_std = torch.sqrt(self.running_var + self.eps)
            r = (torch.sqrt(var + self.eps) / running_std).clamp(1 / self.rmax, self.rmax)
            d = ((mean - self.running_mean) / running_std).clamp(-self.dmax, self.dmax)
        y = x_hat * _per_channel(r, 4) + _per_channel(d, 4)
        if self.weight is not None:
            y = y * _per_channel(self.weight, 4)
        if self.bias is not None:
            y = y + _per_channel(self.bias, 4)
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        m = x.numel() // x.shape[1]
        self._update_running_stats(mean, var * (m / (m - 1)), factor)
        return y


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich 2019) over the last dimensions of a
    ``(*, *normalized_shape)`` input: ``y = x / sqrt(mean(x^2) + eps) * weight``, no centring, no bias.

    Same constructor as :class:`torch.nn.RMSNorm`; ``eps=None`` means the machine epsilon of the
    input's dtype. ``weight``: ``normalized_shape``.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(
                torch.empty(self.normalized_shape, device=device, dtype=dtype)
            )
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` = 1."""
        _reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}"
        )

    def forward(self, x: Tensor) -> Tensor:
        k = _check_trailing_shape(x, self.normalized_shape)
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        dims = tuple(range(x.dim() - k, x.dim()))
        y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        return y if self.weight is None else y * self.weight
