"""Synchronised batch norm written from scratch over ``torch.distributed``: any backend, any device.

:class:`SyncBatchNorm` normalises every process's shard with the statistics of the whole group's
batch, as if the shards were concatenated. It has the interface of ``torch.nn.SyncBatchNorm``
(constructor, parameter and buffer names, ``state_dict`` keys,
:meth:`SyncBatchNorm.convert_sync_batchnorm`) but is not a subclass of it: ``DistributedDataParallel`` refuses a CPU
module holding torch's (or a subclass), and torch's raises for CPU input in training. It is a thin
module over the base of :mod:`bnlib.nn.batchnorm` and one autograd function,
:class:`SyncBatchNormFunction`:

* forward: each process's per-channel count, mean and sum of squared deviations (M2) go to every
  process in one ``all_gather``; they are merged by Chan, Golub and LeVeque's pairwise update
  (:func:`merge_moments`), weighted by each shard's count, so uneven and empty shards are right
  and a channel's large mean does not cancel, as it does in a merge of sums and sums of squares;
* backward: one ``all_reduce`` of the per-channel ``sum(dy)`` and ``sum(dy * x_hat)``; the weight
  and bias gradients stay each process's own (DDP adds them up);
* running statistics: moved by the group's mean and unbiased variance (the group's count), and
  ``num_batches_tracked`` by one, on every process alike.

Eval mode, a group of one process, or no initialised group: plain batch norm, no communication.
:func:`revert_sync_batchnorm` turns converted layers back into the class they came from.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bnlib import functional as F
from bnlib.nn.batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm

__all__ = ["CONVERTIBLE", "SyncBatchNorm", "SyncBatchNormFunction", "merge_moments",
           "revert_sync_batchnorm"]

#: The layer classes :meth:`SyncBatchNorm.convert_sync_batchnorm` converts (and subclasses).
CONVERTIBLE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, BatchNorm1d, BatchNorm2d,
               BatchNorm3d)


def merge_moments(counts: Tensor, means: Tensor, m2s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Merge per-shard moments into those of the concatenated batch (Chan et al. 1979).

    ``counts`` (R,): values per channel in each of R shards (0 for an empty shard); ``means`` and
    ``m2s`` (R, C): each shard's mean and sum of squared deviations from its own mean. Returns
    ``(count, mean, m2)`` of the union: ``count = sum n_r``, ``mean = sum n_r mean_r / count``,
    ``m2 = sum (m2_r + n_r (mean_r - mean)^2)``. Only deviations are squared, so a large common
    mean does not cancel.
    """
    count = counts.sum()
    weights = (counts / count.clamp_min(1)).unsqueeze(1)
    mean = (weights * means).sum(0)
    m2 = (m2s + counts.unsqueeze(1) * (means - mean) ** 2).sum(0)
    return count, mean, m2


def _local_moments(x: Tensor) -> Tensor:
    """``[count, mean (C), m2 (C)]`` of a shard ``(N, C, *)`` as one tensor of length 2C + 1."""
    channels = x.shape[1]
    count = x.numel() // channels if channels else 0
    if count == 0:
        zeros = x.new_zeros(channels)
        return torch.cat([x.new_zeros(1), zeros, zeros])
    dims = (0, *range(2, x.dim()))
    mean = x.mean(dims)
    centred = x - F.per_channel(mean, x.dim())
    m2 = (centred * centred).sum(dims)
    return torch.cat([x.new_full((1,), float(count)), mean, m2])


class SyncBatchNormFunction(torch.autograd.Function):
    """Batch norm of a shard ``x`` ``(N, C, *)`` with the statistics of the whole group's batch.

    ``forward(x, weight, bias, eps, group, size)`` returns ``(y, mean, var, count)``: the output
    and the group's (C,) mean and biased variance and its count of values per channel (a 0-dim
    tensor), the last three not differentiable. One ``all_gather`` in the forward, one
    ``all_reduce`` in the backward, both on ``group`` (of ``size`` processes), so every process
    of the group must call it the same number of times.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float,
                group, size: int):
        channels = x.shape[1]
        local = _local_moments(x)
        gathered = [torch.empty_like(local) for _ in range(size)]
        dist.all_gather(gathered, local, group=group)
        stacked = torch.stack(gathered)
        count, mean, m2 = merge_moments(stacked[:, 0], stacked[:, 1 : channels + 1],
                                        stacked[:, channels + 1 :])
        if int(count) <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got {int(count)} in the "
                f"whole group (this shard: input size {x.size()})"
            )
        var = m2 / count
        inv_std = torch.rsqrt(var + eps)
        centred = x - F.per_channel(mean, x.dim())
        scale = inv_std if weight is None else weight * inv_std
        y = centred * F.per_channel(scale, x.dim())
        if bias is not None:
            y = y + F.per_channel(bias, x.dim())
        ctx.save_for_backward(centred, weight, inv_std, count)
        ctx.group = group
        ctx.mark_non_differentiable(mean, var, count)
        return y, mean, var, count

    @staticmethod
    def backward(ctx, dy: Tensor, _mean, _var, _count):
        centred, weight, inv_std, count = ctx.saved_tensors
        dims = (0, *range(2, dy.dim()))
        channels = dy.shape[1]
        sum_dy = dy.sum(dims)
        sum_dy_xhat = (dy * centred).sum(dims) * inv_std
        totals = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(totals, group=ctx.group)
        group_dy, group_dy_xhat = totals[:channels], totals[channels:]
        dx = None
        if ctx.needs_input_grad[0]:
            k = inv_std if weight is None else weight * inv_std
            x_hat = centred * F.per_channel(inv_std, dy.dim())
            dx = F.per_channel(k, dy.dim()) * (
                dy - F.per_channel(group_dy / count, dy.dim())
                - x_hat * F.per_channel(group_dy_xhat / count, dy.dim()))
        dweight = sum_dy_xhat if ctx.needs_input_grad[1] else None
        dbias = sum_dy if ctx.needs_input_grad[2] else None
        return dx, dweight, dbias, None, None, None


def group_size(process_group=None) -> int:
    """Processes in ``process_group`` (None: the default group); 1 when torch.distributed is
    unavailable or no group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


class SyncBatchNorm(_BatchNorm):
    """Batch norm over ``(N, C, *)`` inputs whose training statistics are those of the whole
    process group's batch (see the module docstring).

    Same constructor, parameters, buffers and ``state_dict`` keys as ``torch.nn.SyncBatchNorm``;
    ``process_group``: the group to synchronise within (None: the default group; a group of
    ``torch.distributed.new_subgroups`` synchronises within that subgroup only). Output shape =
    input shape; ``weight``, ``bias``, ``running_mean``, ``running_var``: (C,).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)
        self.process_group = process_group
        self._original_class: type | None = None

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        size = group_size(self.process_group) if self.training else 1
        if size == 1:
            return super().forward(x)
        self._check_input_dim(x)
        update_running = self.track_running_stats
        self._check_channels(x, uses_running_stats=update_running)
        if self.eps <= 0:
            raise ValueError(f"batch_norm eps must be positive during training, got {self.eps}")
        y, mean, var, count = SyncBatchNormFunction.apply(
            x, self.weight, self.bias, self.eps, self.process_group, size)
        if update_running:
            factor = self._momentum_step()
            F.update_running_stats(self.running_mean, self.running_var, mean, var, int(count),
                                   factor)
        return y

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group=None) -> nn.Module:
        """``module`` with every torch or bnlib ``BatchNorm1d/2d/3d`` replaced by a
        :class:`SyncBatchNorm` holding the same parameters and buffers (the same tensors), mode
        and ``state_dict``; each remembers its original class for :func:`revert_sync_batchnorm`.
        A module that is itself such a layer is returned converted; others are changed in
        place and returned."""
        converted = module
        if isinstance(module, CONVERTIBLE):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group, bias=_has_bias(module))
            _move_state(module, converted)
            converted._original_class = type(module)
        for name, child in module.named_children():
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted


def _has_bias(layer: nn.Module) -> bool:
    """Whether ``layer`` has a bias (the constructor's ``bias``; True when not affine)."""
    return not layer.affine or layer.bias is not None


def _move_state(source: nn.Module, target: nn.Module) -> None:
    """Give ``target`` the parameters, buffers, train/eval mode and ``qconfig`` of ``source``."""
    with torch.no_grad():
        if source.affine:
            target.weight = source.weight
            if source.bias is not None:
                target.bias = source.bias
        target.running_mean = source.running_mean
        target.running_var = source.running_var
        target.num_batches_tracked = source.num_batches_tracked
    target.train(source.training)
    if hasattr(source, "qconfig"):
        target.qconfig = source.qconfig


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every :class:`SyncBatchNorm` made by
    :meth:`SyncBatchNorm.convert_sync_batchnorm` back in its original class (torch's or bnlib's
    BatchNorm1d/2d/3d), same parameters, buffers, mode and ``state_dict``: for a single process
    or inference. A SyncBatchNorm built directly stays as it is (with one process, or in eval mode,
    it is plain batch norm already)."""
    reverted = module
    if isinstance(module, SyncBatchNorm) and module._original_class is not None:
        original = module._original_class
        reverted = original(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, bias=_has_bias(module))
        _move_state(module, reverted)
    for name, child in module.named_children():
        reverted.add_module(name, revert_sync_batchnorm(child))
    return reverted

