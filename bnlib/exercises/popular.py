"""Batch norm as popular tutorials write it: each departure from PyTorch as a small named layer.

:class:`TutorialBatchNorm` is batch norm written from scratch the way tutorials write it, but
computing exactly what ``torch.nn.BatchNorm1d``/``BatchNorm2d`` compute (inputs (N, C) or
(N, C, H, W); statistics per channel over every other axis; the biased variance in the
normalisation, the unbiased one in the running variance; momentum 0.1 in PyTorch's convention;
running statistics as buffers; the mode set by ``train()``/``eval()``). Each subclass changes
one thing, as found in the source named in :data:`SOURCES`:

==============================  ===========================================================
variant                         what it does differently
==============================  ===========================================================
:class:`GradModeSwitch`         batch statistics whenever gradients are enabled, running ones
                                under ``torch.no_grad()``, whatever ``train()``/``eval()`` say
:class:`BiasedRunningVariance`  the running variance averages the biased batch variance
:class:`UnbiasedNormalisation`  the normalisation divides by the unbiased batch variance
:class:`DetachedStatistics`     the batch mean and variance computed under ``no_grad``: no
                                gradient flows through them
:class:`PlainTensorStatistics`  the running statistics kept as plain tensor attributes, not
                                buffers: missing from the ``state_dict``
:class:`KerasMomentum`          Keras's momentum (0.99, the weight of the *old* average)
                                passed to PyTorch's convention (the weight of the *new* batch)
==============================  ===========================================================

:func:`check_batch_norm_module` grades a reader's layer against torch's, and names any of these
departures its answer matches (each is a :class:`~bnlib.exercises.checking.Mistake`).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import torch
from torch import nn

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

__all__ = [
    "DESCRIPTIONS",
    "MODULE_MISTAKES",
    "MODULE_OUTPUTS",
    "SOURCES",
    "VARIANTS",
    "BiasedRunningVariance",
    "DetachedStatistics",
    "GradModeSwitch",
    "KerasMomentum",
    "PlainTensorStatistics",
    "TutorialBatchNorm",
    "UnbiasedNormalisation",
    "check_batch_norm_module",
    "exercise_module",
]


class TutorialBatchNorm(nn.Module):
    """Batch norm from scratch, equal to ``torch.nn.BatchNorm1d``/``2d`` in train and eval mode.

    ``forward`` takes (N, C) or (N, C, H, W). The hooks below are what the variants override.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.keep_statistics(torch.zeros(num_features), torch.ones(num_features))

    def keep_statistics(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Hold the running statistics as buffers (saved in the ``state_dict``)."""
        self.register_buffer("running_mean", mean)
        self.register_buffer("running_var", var)

    def uses_batch_statistics(self) -> bool:
        """Normalise with the batch's statistics (training) or the running ones (eval)."""
        return self.training

    def batch_statistics(self, x: torch.Tensor, axes: tuple[int, ...]) -> tuple:
        """The batch mean and biased variance per channel, shape (C,), in the autograd graph."""
        return x.mean(dim=axes), x.var(dim=axes, correction=0)

    def normalising_variance(self, var: torch.Tensor, m: int) -> torch.Tensor:
        """The variance the normalisation divides by: the biased batch variance."""
        return var

    def running_variance(self, var: torch.Tensor, m: int) -> torch.Tensor:
        """The variance the running average takes in: the unbiased one, ``var * m / (m - 1)``."""
        return var * m / (m - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = (0, *range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.uses_batch_statistics():
            m = x.numel() // x.shape[1]
            mean, var = self.batch_statistics(x, axes)
            with torch.no_grad():
                new_var = self.running_variance(var.detach(), m)
                keep = 1 - self.momentum
                self.running_mean = keep * self.running_mean + self.momentum * mean.detach()
                self.running_var = keep * self.running_var + self.momentum * new_var
            var = self.normalising_variance(var, m)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)


class GradModeSwitch(TutorialBatchNorm):
    """Batch statistics whenever autograd is on: ``eval()`` alone does not switch to the
    running statistics, and ``torch.no_grad()`` switches to them even in ``train()``."""

    def uses_batch_statistics(self) -> bool:
        return torch.is_grad_enabled()


class BiasedRunningVariance(TutorialBatchNorm):
    """The running variance averages the biased batch variance (too small by ``(m - 1) / m``)."""

    def running_variance(self, var: torch.Tensor, m: int) -> torch.Tensor:
        return var


class UnbiasedNormalisation(TutorialBatchNorm):
    """Normalises by the unbiased batch variance: outputs shrink by ``sqrt((m - 1) / m)``."""

    def normalising_variance(self, var: torch.Tensor, m: int) -> torch.Tensor:
        return var * m / (m - 1)


class DetachedStatistics(TutorialBatchNorm):
    """The batch mean and variance computed under ``no_grad``: the backward pass treats them as
    constants, so the gradient neither sums to zero nor is orthogonal to ``x_hat``."""

    def batch_statistics(self, x: torch.Tensor, axes: tuple[int, ...]) -> tuple:
        with torch.no_grad():
            return super().batch_statistics(x, axes)


class PlainTensorStatistics(TutorialBatchNorm):
    """Running statistics as plain tensor attributes: not in the ``state_dict``, not moved by
    ``.to()``; a saved and reloaded model normalises with zeros and ones."""

    def keep_statistics(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        object.__setattr__(self, "running_mean", mean)
        object.__setattr__(self, "running_var", var)

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("running_mean", "running_var"):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class KerasMomentum(TutorialBatchNorm):
    """Keras's default momentum, 0.99, given to PyTorch's convention: each batch's statistics
    replace 99% of the running average, which ends up the last batch's statistics."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.99) -> None:
        super().__init__(num_features, eps, momentum)


#: Every variant, by name.
VARIANTS: dict[str, type[TutorialBatchNorm]] = {
    cls.__name__: cls for cls in (GradModeSwitch, BiasedRunningVariance, UnbiasedNormalisation,
                                  DetachedStatistics, PlainTensorStatistics, KerasMomentum)
}

#: What each variant does, in a few words (the verdict's and the table's wording).
DESCRIPTIONS: dict[str, str] = {
    "GradModeSwitch": "the mode switched by grad mode, not by train()/eval()",
    "BiasedRunningVariance": "the running variance fed the biased variance",
    "UnbiasedNormalisation": "the unbiased variance inside the normalisation",
    "DetachedStatistics": "the batch statistics computed under no_grad",
    "PlainTensorStatistics": "running statistics as plain tensors, not buffers",
    "KerasMomentum": "Keras's momentum 0.99 passed to PyTorch's convention",
}

#: Where each variant is found: the bibliography key and the place in that source, checked
#: against the source itself (d2l-en at commit 23d7a5a, nn-zero-to-hero at commit 73c3fcc).
SOURCES: dict[str, tuple[str, str]] = {
    "GradModeSwitch": ("zhang2023dive", "section 8.5.3, the PyTorch batch_norm function: "
                       "'if not torch.is_grad_enabled()' selects the moving averages"),
    "BiasedRunningVariance": ("zhang2023dive", "section 8.5.3: the moving variance averages "
                              "var = ((X - mean) ** 2).mean(...), the biased variance"),
    "UnbiasedNormalisation": ("karpathy_makemore3", "the BatchNorm1d class: "
                              "xvar = x.var(0, keepdim=True), torch's unbiased default"),
    "DetachedStatistics": ("ioffe2015batch", "section 2: when the gradient step ignores how "
                           "the normalisation depends on a bias, the bias grows without bound"),
    "PlainTensorStatistics": ("zhang2023dive", "section 8.5.3, the BatchNorm class: "
                              "self.moving_mean = torch.zeros(shape), not a buffer"),
    "KerasMomentum": ("deeplab2020momentum", "BatchNorm2d(..., momentum=0.999) meant as "
                      "Keras's decay, reported and acknowledged"),
}


def exercise_module(make_layer: Callable[[int], nn.Module], x: torch.Tensor,
                    dy: torch.Tensor, steps: int = 3) -> tuple[torch.Tensor, ...]:
    """What :func:`check_batch_norm_module` compares, for the layer ``make_layer(C)``.

    ``steps`` training-mode passes over ``x + k`` (k = 0, 1, ...) with the loss ``sum(y * dy)``;
    returns, in order: the last training output, its input gradient, the weight and bias
    gradients, the running mean and variance, then the output for ``x`` in eval mode with
    gradients enabled, in eval mode under ``no_grad``, in train mode under ``no_grad`` (which
    still normalises with the batch), and in eval mode after a ``state_dict`` round trip
    through ``torch.save``/``torch.load`` into a fresh ``make_layer(C)``.
    """
    layer = make_layer(x.shape[1]).double().train()
    for k in range(steps):
        layer.zero_grad()
        xi = (x + k).clone().requires_grad_(True)
        y = layer(xi)
        (y * dy).sum().backward()
    grads = (xi.grad, layer.weight.grad, layer.bias.grad)
    stats = (layer.running_mean.clone(), layer.running_var.clone())
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    layer.eval()
    eval_grad = layer(x)
    with torch.no_grad():
        eval_no_grad = layer(x)
        train_no_grad = layer.train()(x)
    buffer.seek(0)
    fresh = make_layer(x.shape[1]).double()
    fresh.load_state_dict(torch.load(buffer))
    reloaded = fresh.eval()(x)
    return (y, *grads, *stats, eval_grad, eval_no_grad, train_no_grad, reloaded)


#: The names of :func:`exercise_module`'s outputs, as the verdict prints them.
MODULE_OUTPUTS = ("train y", "dx", "dweight", "dbias", "running mean", "running var",
                  "eval y", "eval y no_grad", "train y no_grad", "reloaded eval y")

#: The popular departures, as mistakes of :func:`check_batch_norm_module`.
MODULE_MISTAKES = tuple(
    Mistake(DESCRIPTIONS[name], lambda x, dy, cls=cls: exercise_module(cls, x, dy))
    for name, cls in VARIANTS.items()
)


def check_batch_norm_module(make_layer: Callable[[int], nn.Module], *,
                            tolerance: float = 1e-10) -> Verdict:
    """Check a batch-norm layer, ``make_layer(num_features)``, against ``torch.nn.BatchNorm1d``
    and ``BatchNorm2d`` (float64) on a batch of 4: training outputs and gradients, running
    statistics after three steps, evaluation with and without ``no_grad``, and a
    ``state_dict`` round trip. A FAIL names the popular departure the layer matches, if any.
    """
    gen = torch.Generator().manual_seed(0)
    cases = []
    for label, shape in (("fc", (4, 3)), ("conv", (4, 3, 2, 2))):
        x = 1.5 + 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
        dy = torch.randn(shape, generator=gen, dtype=torch.float64)
        cases.append(Case(label, (x, dy), f"x of shape {shape}"))

    def torch_layer(num_features: int, dims: int) -> nn.Module:
        return (nn.BatchNorm1d if dims == 2 else nn.BatchNorm2d)(num_features)

    def expected(x, dy):
        return exercise_module(lambda c: torch_layer(c, x.dim()), x, dy)

    def answer(x, dy):
        return exercise_module(make_layer, x, dy)

    answer.__name__ = getattr(make_layer, "__name__", "the layer")
    return check_answers("check_batch_norm_module", answer, cases, expected, MODULE_OUTPUTS,
                         tolerance=tolerance, mistakes=MODULE_MISTAKES,
                         reference_name="torch.nn.BatchNorm1d / BatchNorm2d")
