"""Ghost batch norm: batch-norm statistics over groups of k images inside each mini-batch.

One optimiser batch of 32 images normalised in groups of k behaves as if it had been spread over
32 / k devices holding k images each, with the gradient averaged over all of them: the setting of
Wu & He's (2018) "images per GPU", and of Hoffer et al.'s (2017) "ghost batches". Chapter 04 trains
with it; :mod:`bnlib.variants` holds the experiment. This module holds only the layer, so that the
training cache (which hashes it) is not invalidated by changes to the experiment code.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GhostBatchNorm2d"]


def _per_channel(t: Tensor) -> Tensor:
    """(C,) -> (1, C, 1, 1), to broadcast against (N, C, H, W)."""
    return t.view(1, -1, 1, 1)


# --------------------------------------------------------------------------- ghost batches


class GhostBatchNorm2d(nn.Module):
    """Batch norm (optionally batch renorm) whose statistics run over groups of ``ghost_batch_size``
    images of the batch, for (N, C, H, W) inputs.

    Each consecutive group of k = ``ghost_batch_size`` images (the last may be smaller) is
    normalised with its own per-channel mean ``mu_B`` and biased variance ``var_B``, exactly as
    ``torch.nn.BatchNorm2d`` would normalise it alone; the gradient flows only within a group.
    With ``rmax > 1`` or ``dmax > 0`` each group is batch-renormalised instead (Ioffe 2017, as
    :class:`bnlib.nn.BatchRenorm2d`): with ``sigma_B = sqrt(var_B + eps)`` and the running
    ``sigma = sqrt(running_var + eps)``::

        r = clip(sigma_B / sigma, 1 / rmax, rmax)             (no gradient)
        d = clip((mu_B - running_mean) / sigma, -dmax, dmax)  (no gradient)
        y = weight * ((x - mu_B) / sigma_B * r + d) + bias

    The paper starts from ``rmax = 1, dmax = 0`` (batch norm) and relaxes them: ``warmup_steps``
    does that linearly over the first training steps (counted by ``num_batches_tracked``);
    ``rmax`` and ``dmax`` stay plain attributes a schedule of one's own may set.

    Running statistics (PyTorch's convention: unbiased variance, ``running = (1 - momentum) *
    running + momentum * batch``) move once per forward pass, towards the average of the groups'
    means and unbiased variances; eval mode uses them. ``ghost_batch_size >= N`` with the default
    ``rmax = 1, dmax = 0`` is ``torch.nn.BatchNorm2d``. Parameters and buffers as in BatchNorm2d.

    Args:
        num_features: channels C.
        ghost_batch_size: images per normalisation group (k).
        eps, momentum, affine: as in ``torch.nn.BatchNorm2d`` (momentum a number).
        rmax: largest allowed ``sigma_B / sigma`` (>= 1; 1: no renormalisation of the scale).
        dmax: largest allowed ``|mu_B - mu| / sigma`` (>= 0; 0: no renormalisation of the shift).
        warmup_steps: steps over which the limits grow from (1, 0) to (rmax, dmax); 0: none.

    Each group goes through torch's batch-norm kernel (``F.batch_norm``) for speed; chapter 02
    and :mod:`bnlib.nn` write that kernel out.
    """

    def __init__(
        self,
        num_features: int,
        ghost_batch_size: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        *,
        rmax: float = 1.0,
        dmax: float = 0.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(ghost_batch_size, numbers.Integral) or ghost_batch_size < 1:
            raise ValueError(
                f"ghost_batch_size must be a positive integer, got {ghost_batch_size!r}"
            )
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, got {warmup_steps}")
        self.num_features = num_features
        self.ghost_batch_size = int(ghost_batch_size)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.rmax = rmax
        self.dmax = dmax
        self.warmup_steps = warmup_steps
        self._check_limits()
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _check_limits(self) -> None:
        if not self.rmax >= 1:
            raise ValueError(
                f"rmax must be at least 1 (r is clipped to [1/rmax, rmax]), got {self.rmax}"
            )
        if not self.dmax >= 0:
            raise ValueError(
                f"dmax must be at least 0 (d is clipped to [-dmax, dmax]), got {self.dmax}"
            )

    def extra_repr(self) -> str:
        text = (f"{self.num_features}, ghost_batch_size={self.ghost_batch_size}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}")
        if self.rmax != 1 or self.dmax != 0:
            text += f", rmax={self.rmax}, dmax={self.dmax}, warmup_steps={self.warmup_steps}"
        return text

    def current_limits(self) -> tuple[float, float]:
        """``(rmax, dmax)`` in force now: relaxed linearly from (1, 0) over ``warmup_steps``."""
        self._check_limits()
        if self.warmup_steps == 0:
            return float(self.rmax), float(self.dmax)
        progress = min(1.0, int(self.num_batches_tracked) / self.warmup_steps)
        return 1.0 + (self.rmax - 1.0) * progress, self.dmax * progress

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels "
                f"(shape {tuple(x.shape)}); build it with num_features={x.shape[1]}"
            )
        if self.training:
            return self._train_forward(x)
        scale = torch.rsqrt(self.running_var + self.eps)
        y = (x - _per_channel(self.running_mean)) * _per_channel(scale)
        if self.affine:
            y = y * _per_channel(self.weight) + _per_channel(self.bias)
        return y

    def _train_forward(self, x: Tensor) -> Tensor:
        rmax, dmax = self.current_limits()
        renorm = rmax != 1.0 or dmax != 0.0
        sigma = torch.sqrt(self.running_var + self.eps)
        outputs, means, unbiased_vars = [], [], []
        for ghost in torch.split(x, self.ghost_batch_size, dim=0):
            m = ghost.numel() // ghost.shape[1]  # values per channel in this ghost batch
            if m < 2:
                raise ValueError(
                    f"a ghost batch of shape {tuple(ghost.shape)} has one value per channel: its "
                    "variance is undefined; use larger batches or a larger ghost_batch_size"
                )
            # with momentum 1, F.batch_norm overwrites `mean` and `unbiased` with this ghost
            # batch's mean and unbiased variance
            mean = torch.zeros(self.num_features, dtype=x.dtype, device=x.device)
            unbiased = torch.ones(self.num_features, dtype=x.dtype, device=x.device)
            if renorm:
                x_hat = F.batch_norm(ghost, mean, unbiased, None, None, True, 1.0, self.eps)
                with torch.no_grad():  # r and d are constants for the gradient (stop-gradient)
                    sigma_b = torch.sqrt(unbiased * ((m - 1) / m) + self.eps)  # biased variance
                    r = (sigma_b / sigma).clamp(1.0 / rmax, rmax)
                    d = ((mean - self.running_mean) / sigma).clamp(-dmax, dmax)
                y = x_hat * _per_channel(r) + _per_channel(d)
                if self.affine:
                    y = y * _per_channel(self.weight) + _per_channel(self.bias)
            else:  # r = 1, d = 0: plain batch norm of this ghost batch, affine step included
                y = F.batch_norm(ghost, mean, unbiased, self.weight, self.bias, True, 1.0, self.eps)
            outputs.append(y)
            means.append(mean)
            unbiased_vars.append(unbiased)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(torch.stack(means).mean(0), self.momentum)
            self.running_var.lerp_(torch.stack(unbiased_vars).mean(0), self.momentum)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
