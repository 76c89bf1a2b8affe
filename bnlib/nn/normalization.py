"""The per-sample family of normalisation layers: statistics within each sample, none across
the batch.

:class:`LayerNorm`, :class:`GroupNorm`, :class:`InstanceNorm1d`, :class:`InstanceNorm2d`,
:class:`InstanceNorm3d` and :class:`RMSNorm` replace their ``torch.nn`` namesakes: same
constructor arguments and defaults, parameters and buffers, outputs, gradients and errors. The
math lives in :mod:`bnlib.functional`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bnlib import functional as F
from bnlib.nn.batchnorm import _NormBase, register_affine, reset_affine

__all__ = [
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "RMSNorm",
]


def _normalized_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``normalized_shape`` as a tuple; an int ``n`` is ``(n,)``."""
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(normalized_shape)


def _check_trailing_shape(x: Tensor, normalized_shape: tuple[int, ...]) -> None:
    """Raise torch's error unless ``x`` ends with ``normalized_shape``."""
    k = len(normalized_shape)
    if x.dim() < k or tuple(x.shape[x.dim() - k:]) != normalized_shape:
        raise RuntimeError(
            f"Given normalized_shape={list(normalized_shape)}, expected input with shape "
            f"[*, {', '.join(map(str, normalized_shape))}], but got input of size "
            f"{list(x.shape)}: the last {k} dimension(s) of the input must equal "
            "normalized_shape"
        )


class _AffineNorm(nn.Module):
    """Base of the layers without running statistics: ``weight`` and ``bias`` of a given shape
    (either may be absent), registered and initialised as torch does."""

    def _init_affine(self, shape: tuple[int, ...], affine: bool, bias: bool, device, dtype):
        register_affine(self, shape, affine, bias, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` = 1, ``bias`` = 0."""
        reset_affine(self)


class _TrailingNorm(_AffineNorm):
    """Base of the norms over the trailing ``normalized_shape`` dimensions of the input."""

    _repr_bias = True  # torch's repr says whether there is a bias, except RMSNorm's (none)

    def _init_trailing(self, normalized_shape: int | Sequence[int], eps: float | None,
                       elementwise_affine: bool, bias: bool, device, dtype) -> None:
        self.normalized_shape = _normalized_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self._init_affine(self.normalized_shape, elementwise_affine, bias, device, dtype)

    def extra_repr(self) -> str:
        text = (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
        return f"{text}, bias={self.bias is not None}" if self._repr_bias else text


class _InstanceNorm(_NormBase):
    """Instance norm over ``(N, C, *spatial)`` or unbatched ``(C, *spatial)`` inputs: statistics
    per sample and channel over the spatial axes. Subclasses say how many spatial axes.

    Same constructor and defaults as torch's (``affine=False``, ``track_running_stats=False``).
    With running statistics, they are updated with the mean over the batch of the per-instance
    statistics; like torch, ``momentum=None`` leaves them unchanged.
    """

    _spatial_dims = 0

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
        batched = self._spatial_dims + 2
        if x.dim() not in (batched - 1, batched):
            raise ValueError(
                f"expected {batched - 1}D or {batched}D input (got {x.dim()}D input): "
                f"{type(self).__name__} takes (N, C, *spatial) or (C, *spatial) with "
                f"{self._spatial_dims} spatial axes, got shape {tuple(x.shape)}"
            )
        channel_dim = x.dim() - self._spatial_dims - 1
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
        if x.dim() == batched - 1:
            return self._forward_batched(x.unsqueeze(0)).squeeze(0)
        return self._forward_batched(x)

    def _forward_batched(self, x: Tensor) -> Tensor:
        use_input_stats = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               use_input_stats, momentum, self.eps)


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over (N, C, L) or (C, L) inputs, as :class:`torch.nn.InstanceNorm1d`."""

    _spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over (N, C, H, W) or (C, H, W) inputs, as :class:`torch.nn.InstanceNorm2d`."""

    _spatial_dims = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance norm over (N, C, D, H, W) or (C, D, H, W) inputs, as
    :class:`torch.nn.InstanceNorm3d`."""

    _spatial_dims = 3


class LayerNorm(_TrailingNorm):
    """Layer norm over the last ``len(normalized_shape)`` dimensions of a ``(*, *normalized_shape)``
    input; statistics per leading index (biased variance), no running statistics.

    Same constructor as :class:`torch.nn.LayerNorm`: ``normalized_shape`` an int or a non-empty
    tuple, ``eps``, ``elementwise_affine``, ``bias``, ``device``, ``dtype``. ``weight``, ``bias``:
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
        self._init_trailing(normalized_shape, eps, elementwise_affine, bias, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not self.normalized_shape:
            raise RuntimeError(
                "Expected normalized_shape to be at least 1-dimensional, i.e., containing at "
                "least one element, but got normalized_shape = []: layer norm needs at least "
                "one dimension to take statistics over"
            )
        _check_trailing_shape(x, self.normalized_shape)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class GroupNorm(_AffineNorm):
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
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        self._init_affine((num_channels,), affine, bias, device, dtype)

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
        if n * math.prod(x.shape[1:]) // self.num_groups == 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size "
                f"{[n * c // self.num_groups, self.num_groups, *x.shape[2:]]}: a group of a single "
                "value has no variance"
            )
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class RMSNorm(_TrailingNorm):
    """Root-mean-square layer norm (Zhang & Sennrich 2019) over the last dimensions of a
    ``(*, *normalized_shape)`` input: ``y = x / sqrt(mean(x^2) + eps) * weight``, no centring,
    no bias.

    Same constructor as :class:`torch.nn.RMSNorm`; ``eps=None`` means the machine epsilon of the
    input's dtype. ``weight``: ``normalized_shape``.
    """

    _repr_bias = False

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self._init_trailing(normalized_shape, eps, elementwise_affine, False, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        _check_trailing_shape(x, self.normalized_shape)
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)
