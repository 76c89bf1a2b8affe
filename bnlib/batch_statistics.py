"""Mini-batch statistics against population statistics, measured exactly.

* :class:`PatchMoments`: the population mean and variance of a first convolution's output in
  closed form, from the moments of the image patches under its kernel.
* :func:`bn_input_moments`: per-image moments of every batch norm layer's input, from which the
  statistics of any group of images follow without another forward pass.
* :func:`batch_statistics_gap`: how far a batch's mean and variance fall from the population's,
  for any batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bnlib.inference import batch_norm_layers

__all__ = ["PatchMoments", "batch_statistics_gap", "bn_input_moments"]


class PatchMoments:
    """First and second moments of the input patches a convolution sees, over a whole data set.

    For a convolution applied to the images directly, output channel c at every position is
    ``w_c . p + b_c`` for the patch p under the kernel (zero padding included). Its population
    mean and variance over all images and positions are then exact closed forms:
    ``mean_c = w_c . E[p] + b_c`` and ``var_c = w_c^T Cov(p) w_c`` (biased, over N*H*W values).

    Args:
        images: (N, C_in, H, W).
        conv: the ``nn.Conv2d`` (its kernel size, padding, stride and dilation are used).
        chunk: images per step (memory).
    """

    def __init__(self, images: Tensor, conv: nn.Conv2d, chunk: int = 1000):
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise TypeError("PatchMoments needs an nn.Conv2d with groups=1")
        if isinstance(conv.padding, str):
            raise ValueError("PatchMoments needs numeric padding, e.g. Conv2d(..., padding=1)")
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = conv.kernel_size, conv.padding, conv.stride, conv.dilation
        d = conv.in_channels * kh * kw
        total = torch.zeros(d, dtype=torch.float64)
        outer = torch.zeros(d, d, dtype=torch.float64)
        count = 0
        for start in range(0, len(images), chunk):
            x = nn.functional.pad(images[start : start + chunk].double(), (pw, pw, ph, ph))
            h_out = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
            w_out = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
            # one shifted view per kernel tap, in the order of conv.weight's (C_in, kh, kw) axes
            taps = [x[:, c, a * dh : a * dh + sh * (h_out - 1) + 1 : sh, b * dw : b * dw + sw * (w_out - 1) + 1 : sw]
                    for c in range(conv.in_channels) for a in range(kh) for b in range(kw)]
            flat = torch.stack(taps).reshape(d, -1)  # (d, n * h_out * w_out): one column per position
            total += flat.sum(1)
            outer += flat @ flat.T
            count += flat.shape[1]
        self.count = count
        self.mean = total / count
        self.covariance = outer / count - torch.outer(self.mean, self.mean)

    def output_statistics(self, conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
        """Population (mean, biased variance) per output channel of ``conv``: two (C_out,) float64."""
        w = conv.weight.detach().double().reshape(conv.out_channels, -1)
        mean = w @ self.mean
        if conv.bias is not None:
            mean = mean + conv.bias.detach().double()
        var = ((w @ self.covariance) * w).sum(1)
        return mean, var


def bn_input_moments(model: nn.Module, images: Tensor, batch_size: int = 250) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-image moments of every BN layer's input, with the model in eval mode.

    Returns one ``(means, squares)`` pair per BN layer (in :func:`batch_norm_layers` order), each a
    float64 array (N, C): the mean of the input over its spatial positions, and the mean of its
    square. The statistics of any group of images follow exactly: a batch's mean is the average of
    its rows of ``means``, its (biased) variance the average of ``squares`` minus the mean squared.
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError("the model has no BN layer")
    collected: list[list[tuple[Tensor, Tensor]]] = [[] for _ in layers]

    def hook(index: int):
        def record(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            if x.dim() > 2:
                # Reduced in float64 without copying the activations (to float64, or to another
                # memory format): such 1-32 MB copies fragmented the heap so that 2,000 images
                # left up to 1.4 GB behind in the process.
                if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
                    values, axis = x.permute(0, 2, 3, 1).reshape(len(x), -1, x.shape[1]), 1
                else:
                    values, axis = x.reshape(len(x), x.shape[1], -1), 2
                size = values.shape[axis]
                squares = torch.linalg.vector_norm(values, 2, axis, dtype=torch.float64) ** 2 / size
                collected[index].append((values.mean(axis, dtype=torch.float64), squares))
            else:
                x = x.double()
                collected[index].append((x, x * x))

        return record

    handles = [layer.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [(torch.cat([m for m, _ in parts]).numpy(), torch.cat([s for _, s in parts]).numpy())
            for parts in collected]


def batch_statistics_gap(
    moments: Sequence[tuple[np.ndarray, np.ndarray]],
    batch_sizes: Sequence[int],
    draws: int = 200,
    seed: int = 0,
) -> list[dict]:
    """How far a mini-batch's statistics fall from the population's, per batch size.

    For each batch size m, ``draws`` batches of m distinct images are drawn at random; for every
    BN layer and channel the batch mean and biased batch variance (what BN uses in training) are
    compared with the population mean and variance over all images of ``moments``.

    Returns one dict per batch size: ``batch_size``, ``mean_error`` (average over draws, layers and
    channels of ``|mu_B - mu| / sigma``), ``variance_ratio`` (average of ``var_B / var``) and
    ``log_variance_error`` (average of ``|log(var_B / var)|``).
    """
    rng = np.random.default_rng(seed)
    n = len(moments[0][0])
    populations = []
    for means, squares in moments:
        mu = means.mean(0)
        populations.append((mu, squares.mean(0) - mu**2))
    rows = []
    for m in batch_sizes:
        if not 1 <= m <= n:
            raise ValueError(f"batch size {m} must lie in 1..{n} (the number of images)")
        mean_errors, ratios = [], []
        for _ in range(draws):
            pick = rng.choice(n, size=m, replace=False)
            for (means, squares), (mu, var) in zip(moments, populations):
                mu_b = means[pick].mean(0)
                var_b = squares[pick].mean(0) - mu_b**2
                mean_errors.append(np.abs(mu_b - mu) / np.sqrt(var))
                ratios.append(var_b / var)
        ratio = np.concatenate(ratios)
        with np.errstate(divide="ignore"):  # a batch of one constant image has variance 0
            log_error = float(np.abs(np.log(ratio)).mean())
        rows.append({"batch_size": int(m), "mean_error": float(np.concatenate(mean_errors).mean()),
                     "variance_ratio": float(ratio.mean()),
                     "log_variance_error": log_error})
    return rows


