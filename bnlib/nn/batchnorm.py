"""The batch-norm family of layers, shaped as ``torch/nn/modules/batchnorm.py``.

One base, :class:`_NormBase` (parameters and buffers laid out exactly as torch's), one
:class:`_BatchNorm` holding the forward pass, and subclasses that differ only in the input
shapes they accept: :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`BatchNorm3d`, drop-in
replacements for their ``torch.nn`` namesakes. Around them, the variants the book studies:
:class:`BatchRenorm2d` (Ioffe 2017), :class:`GhostBatchNorm2d` (statistics over groups of the
batch), :class:`NoisyBatchNorm` (Santurkar et al. 2018's noisy BN) and
:class:`FrozenBatchNorm2d` (fixed statistics). The math lives in :mod:`bnlib.functional`.

The conventions, as in PyTorch: the running variance is updated with the unbiased batch variance;
``running = (1 - momentum) * running + momentum * batch``; ``momentum=None`` gives the cumulative
average, ``momentum = 1 / num_batches_tracked``; eval mode uses the running statistics unless the
layer keeps none (``track_running_stats=False``), in which case it uses the batch statistics.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from bnlib import functional as F

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchRenorm2d",
    "FrozenBatchNorm2d",
    "GhostBatchNorm2d",
    "NoisyBatchNorm",
]


def register_affine(
    module: nn.Module, shape: tuple[int, ...], affine: bool, bias: bool, factory: dict
) -> None:
    """Register ``weight`` and ``bias`` of ``shape`` under torch's names, or ``None`` where the
    layer has none (values are set by :func:`reset_affine`)."""
    module.register_parameter(
        "weight", nn.Parameter(torch.empty(shape, **factory)) if affine else None
    )
    module.register_parameter(
        "bias", nn.Parameter(torch.empty(shape, **factory)) if affine and bias else None
    )


def reset_affine(module: nn.Module) -> None:
    """torch's initialisation of a normalisation layer's affine part: ``weight`` = 1, ``bias`` = 0
    (either may be absent)."""
    if getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


class _NormBase(nn.Module):
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
        register_affine(self, (num_features,), affine, bias, factory)
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
        reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )

    def _eval_forward(self, x: Tensor) -> Tensor:
        """Eval mode: ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``."""
        return F.normalize_with_statistics(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.eps
        )

    def _momentum_step(self) -> float:
        """Count one more batch; the factor of this batch in the running average."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum


class _BatchNorm(_NormBase):
    """Batch norm over ``(N, C, *)``; subclasses say which input dimensions they accept."""

    _input_dims: tuple[int, ...] = ()
    _shape_help = ""

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
        # as torch: a layer without buffers updates nothing, whatever track_running_stats says
        update_running = self.training and self.track_running_stats and self.running_mean is not None
        self._check_channels(x, uses_running_stats=update_running or not use_batch_stats)
        factor = self._momentum_step() if update_running else 0.0
        uses_running = update_running or not use_batch_stats
        return F.batch_norm(
            x,
            self.running_mean if uses_running else None,
            self.running_var if uses_running else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )


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


class BatchNorm3d(_BatchNorm):
    """Batch norm over (N, C, D, H, W) inputs: statistics per channel over N, D, H and W.

    Same constructor, parameters, buffers and behaviour as :class:`torch.nn.BatchNorm3d`.
    """

    _input_dims = (5,)
    _shape_help = "(N, C, D, H, W)"


class BatchRenorm2d(_BatchNorm):
    """Batch renormalisation (Ioffe 2017) over (N, C, H, W) inputs.

    In training, the batch-normalised value is corrected towards what the running statistics
    would give (:func:`bnlib.functional.batch_renorm`)::

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

    def __init__(self, num_features: int, *args, rmax: float = 3.0, dmax: float = 5.0,
                 **kwargs) -> None:
        """``num_features`` and the other arguments as :class:`BatchNorm2d`'s, then ``rmax``
        and ``dmax``."""
        super().__init__(num_features, *args, **kwargs)
        if not self.track_running_stats:
            raise ValueError(
                "BatchRenorm2d corrects batch statistics towards running statistics, so it needs "
                "track_running_stats=True (use BatchNorm2d without running statistics instead)"
            )
        self.rmax = rmax
        self.dmax = dmax

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rmax={self.rmax}, dmax={self.dmax}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        self._check_channels(x, uses_running_stats=True)
        F.check_more_than_one_value(x)
        y, mean, var = F.batch_renorm(x, self.running_mean, self.running_var, self.weight,
                                      self.bias, self.eps, self.rmax, self.dmax)
        factor = self._momentum_step()
        if x.numel() > 0:
            F.update_running_stats(self.running_mean, self.running_var, mean, var,
                                   x.numel() // x.shape[1], factor)
        return y


class GhostBatchNorm2d(_NormBase):
    """Batch norm (optionally batch renorm) whose statistics run over groups of ``ghost_batch_size``
    images of the batch, for (N, C, H, W) inputs.

    Each consecutive group of k = ``ghost_batch_size`` images (the last may be smaller) is
    normalised with its own per-channel mean and biased variance, exactly as
    ``torch.nn.BatchNorm2d`` would normalise it alone; the gradient flows only within a group.
    This is the setting of Wu & He's (2018) batches of k images per GPU and of Hoffer et al.'s
    (2017) ghost batches. With ``rmax > 1`` or ``dmax > 0`` each group is batch-renormalised instead (as
    :class:`BatchRenorm2d`). The paper starts from ``rmax = 1, dmax = 0`` (batch norm) and relaxes
    them: ``warmup_steps`` does that linearly over the first training steps (counted by
    ``num_batches_tracked``); ``rmax`` and ``dmax`` stay plain attributes a schedule may set.

    Running statistics (PyTorch's convention) move once per forward pass, towards the average of
    the groups' means and unbiased variances; eval mode uses them. ``ghost_batch_size >= N`` with
    the default ``rmax = 1, dmax = 0`` is ``torch.nn.BatchNorm2d``. Parameters and buffers as in
    BatchNorm2d.

    Args:
        num_features: channels C.
        ghost_batch_size: images per normalisation group (k).
        eps, momentum, affine: as in ``torch.nn.BatchNorm2d`` (momentum a number).
        rmax: largest allowed ``sigma_B / sigma`` (>= 1; 1: no renormalisation of the scale).
        dmax: largest allowed ``|mu_B - mu| / sigma`` (>= 0; 0: no renormalisation of the shift).
        warmup_steps: steps over which the limits grow from (1, 0) to (rmax, dmax); 0: none.
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
        if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(ghost_batch_size, numbers.Integral) or ghost_batch_size < 1:
            raise ValueError(
                f"ghost_batch_size must be a positive integer, got {ghost_batch_size!r}"
            )
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, got {warmup_steps}")
        super().__init__(num_features, eps, momentum, affine, True)
        self.ghost_batch_size = int(ghost_batch_size)
        self.rmax = rmax
        self.dmax = dmax
        self.warmup_steps = warmup_steps
        self._check_limits()

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
        if not self.training:
            return self._eval_forward(x)
        rmax, dmax = self.current_limits()
        y, means, unbiased = F.ghost_batch_norm(
            x, self.ghost_batch_size, self.running_mean, self.running_var, self.weight,
            self.bias, self.eps, rmax, dmax,
        )
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(means.mean(0), self.momentum)
            self.running_var.lerp_(unbiased.mean(0), self.momentum)
        return y


class NoisyBatchNorm(_BatchNorm):
    """BatchNorm whose output, in training, gets noise with a random mean and variance.

    In train mode, for an input (N, C) or (N, C, H, W):

    1. ``y = BN(x)``: batch normalisation (batch statistics, running averages updated,
       learnable ``weight`` and ``bias``), exactly as ``torch.nn.BatchNorm1d/2d``;
    2. at every call (one call per training step) draw, for each channel c, a noise mean
       ``mu_c ~ U(-mean_bound, mean_bound)`` and a noise variance ``var_c ~ U(1, var_bound)``;
    3. add to every activation independently (every sample and position) Gaussian noise of that
       channel's distribution: ``out = y + mu_c + sqrt(var_c) * z``, ``z ~ N(0, 1)``.

    So a channel's output has mean ``bias_c + mu_c`` and variance ``weight_c**2 + var_c``, both
    different at each step: the distribution the next layer sees is deliberately unstable. This
    follows Santurkar et al. (2018, Section 2.1): "we perturb each activation for each sample in
    the batch using i.i.d. noise sampled from a non-zero mean and non-unit variance distribution",
    re-drawn at each time step. It does not follow their Algorithm 1 (Appendix A.2.1), which per
    unit and step draws ``mu ~ U(-0.5, 0.5)`` and ``sigma ~ U(1, 1.25)`` and replaces each
    activation ``a`` by ``s * a + m`` with ``m ~ U(mu - 0.1, mu + 0.1)``, ``s ~ N(sigma, 0.1)``:
    this layer's noise is purely additive, with larger mean shifts (up to ``mean_bound``) and an
    added variance in ``[1, var_bound]``.

    In eval mode the layer is plain BN with the running statistics: no noise (like dropout, the
    noise is a training-time perturbation). Random numbers come from the global torch generator,
    so ``torch.manual_seed`` makes a run reproducible. The last drawn ``noise_mean`` and
    ``noise_var`` (tensors (C,)) are kept as attributes for inspection.

    Args:
        num_features: channels C.
        mean_bound: the noise means are drawn from U(-mean_bound, mean_bound); >= 0.
        var_bound: the noise variances are drawn from U(1, var_bound); >= 1.
        eps, momentum, affine, track_running_stats: as in ``torch.nn.BatchNorm1d``.
    """

    _input_dims = (2, 4)
    _shape_help = "(N, C) or (N, C, H, W)"

    def __init__(
        self,
        num_features: int,
        mean_bound: float = 1.0,
        var_bound: float = 2.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        if mean_bound < 0:
            raise ValueError(f"mean_bound={mean_bound} must be >= 0 (noise means ~ U(-b, b))")
        if var_bound < 1:
            raise ValueError(f"var_bound={var_bound} must be >= 1 (noise variances ~ U(1, b))")
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.mean_bound = float(mean_bound)
        self.var_bound = float(var_bound)
        self.noise_mean: Tensor | None = None
        self.noise_var: Tensor | None = None

    def forward(self, input: Tensor) -> Tensor:
        out = super().forward(input)
        if not self.training:
            return out
        channels = self.num_features
        self.noise_mean = (torch.rand(channels) * 2.0 - 1.0) * self.mean_bound
        self.noise_var = 1.0 + torch.rand(channels) * (self.var_bound - 1.0)
        mean = F.per_channel(self.noise_mean.to(out), input.dim())
        std = F.per_channel(self.noise_var.sqrt().to(out), input.dim())
        return out + mean + std * torch.randn_like(out)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mean_bound={self.mean_bound}, var_bound={self.var_bound}"


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
        for name, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0),
                           ("running_var", 1.0)):
            self.register_buffer(name, torch.full((num_features,), fill))

    @classmethod
    def from_batch_norm(cls, bn: nn.Module) -> FrozenBatchNorm2d:
        """A frozen copy of ``bn`` (its running statistics; weight 1 and bias 0 if not affine)."""
        if getattr(bn, "running_mean", None) is None:
            raise ValueError(
                "this BN layer keeps no running statistics (track_running_stats=False)"
            )
        frozen = cls(bn.num_features, bn.eps).to(bn.running_mean.dtype)
        frozen.running_mean.copy_(bn.running_mean.detach())
        frozen.running_var.copy_(bn.running_var.detach())
        if bn.weight is not None:
            frozen.weight.copy_(bn.weight.detach())
            frozen.bias.copy_(bn.bias.detach())
        return frozen

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize_with_statistics(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.eps
        )

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
