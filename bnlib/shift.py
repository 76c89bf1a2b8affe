"""``NoisyBatchNorm``: BatchNorm followed by noise whose distribution changes at every training
step, after Santurkar et al. (2018, Section 2.1): the layer of their "noisy BN" experiment.

The probes that measured internal covariate shift and the loss landscape, which lived here
before, are in :mod:`bnlib.probes`; the chapter's experiment is :mod:`bnlib.experiments.ics`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["NoisyBatchNorm"]


class NoisyBatchNorm(_BatchNorm):
    """BatchNorm whose output, in training, gets noise with a random mean and variance.

    In train mode, for an input (N, C) or (N, C, H, W):

    1. ``y = BN(x)``: torch's batch normalisation (batch statistics, running averages updated,
       learnable ``weight`` and ``bias``), exactly as ``torch.nn.BatchNorm1d/2d``;
    2. at every call (one call per training step) draw, for each channel c, a noise mean
       ``mu_c ~ U(-mean_bound, mean_bound)`` and a noise variance ``var_c ~ U(1, var_bound)``;
    3. add to every activation independently (every sample and position) Gaussian noise of that
       channel's distribution: ``out = y + mu_c + sqrt(var_c) * z``, ``z ~ N(0, 1)``.

    So a channel's output has mean ``bias_c + mu_c`` and variance ``weight_c**2 + var_c``, both
    different at each step: the distribution the next layer sees is deliberately unstable. This
    follows Santurkar et al. (2018, Section 2.1): "we perturb each activation for each sample in
    the batch using i.i.d. noise sampled from a non-zero mean and non-unit variance distribution",
    re-drawn at each time step. The bounds, the uniform laws and the additive Gaussian form are our
    reading of that sentence (the paper's exact noise parameters are not reproduced here).

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

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(
                f"NoisyBatchNorm expects (N, C) or (N, C, H, W) input, got shape "
                f"{tuple(input.shape)}"
            )

    def forward(self, input: Tensor) -> Tensor:
        out = super().forward(input)
        if not self.training:
            return out
        channels = self.num_features
        self.noise_mean = (torch.rand(channels) * 2.0 - 1.0) * self.mean_bound
        self.noise_var = 1.0 + torch.rand(channels) * (self.var_bound - 1.0)
        shape = (1, channels) + (1,) * (input.dim() - 2)
        mean = self.noise_mean.to(out).view(shape)
        std = self.noise_var.sqrt().to(out).view(shape)
        return out + mean + std * torch.randn_like(out)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mean_bound={self.mean_bound}, var_bound={self.var_bound}"
