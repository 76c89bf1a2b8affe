"""The frozen batch norm layer (its statistics and affine parameters fixed).

This module once held chapter 03's measurements; they now live by kind:
:mod:`bnlib.running` (running-average rules), :mod:`bnlib.batch_statistics` (batch against
population statistics), :mod:`bnlib.inference` (folding, precise BN, train-mode prediction,
:func:`~bnlib.inference.freeze_batch_norm`), :mod:`bnlib.probes` (the probes of the statistics and
of the final weights) and :mod:`bnlib.experiments.inference` (the chapter's experiment).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FrozenBatchNorm2d"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters,
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel, in train and eval mode
    alike (buffers only, nothing to learn).

    Input (N, C) or ``(N, C, *spatial)``. Built by :meth:`from_batch_norm`; the buffers keep BN's
    names, so a frozen model's ``state_dict`` has the same keys as the original minus
    ``num_batches_tracked``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        for name, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((num_features,), fill))

    @classmethod
    def from_batch_norm(cls, bn: nn.Module) -> FrozenBatchNorm2d:
        """A frozen copy of ``bn`` (its running statistics; weight 1 and bias 0 if not affine)."""
        if getattr(bn, "running_mean", None) is None:
            raise ValueError("this BN layer keeps no running statistics (track_running_stats=False)")
        frozen = cls(bn.num_features, bn.eps).to(bn.running_mean.dtype)
        frozen.running_mean.copy_(bn.running_mean.detach())
        frozen.running_var.copy_(bn.running_var.detach())
        if bn.weight is not None:
            frozen.weight.copy_(bn.weight.detach())
            frozen.bias.copy_(bn.bias.detach())
        return frozen

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(shape) + shift.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
