"""The "variance shift" of Li et al. (2019): the variance a BN layer learned during training
(its running variance, estimated with dropout active upstream) against the variance its input
actually has at test time (dropout off), measured at the end of training."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnlib.inference import is_batch_norm
from bnlib.probes.base import Probe

__all__ = ["DropoutVarianceProbe", "VarianceShiftProbe", "dropout_variance",
           "dropout_variance_ratio", "variance_shift"]


def _layer_inputs(model: nn.Module, images: Tensor,
                  keep: Callable[[nn.Module], bool]) -> tuple[list, list[Tensor]]:
    """The ``(name, layer)`` pairs of ``model`` for which ``keep(layer)`` holds (in module order,
    names as ``model.named_modules()`` gives them) that one eval-mode pass over ``images``
    calls, and the input each received. The model is left in eval mode."""
    layers = [(name, m) for name, m in model.named_modules() if keep(m)]
    seen: dict[int, Tensor] = {}
    hooks = [layer.register_forward_pre_hook(
        lambda module, args, i=i: seen.__setitem__(i, args[0].detach()))
        for i, (_, layer) in enumerate(layers)]
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    called = [i for i in range(len(layers)) if i in seen]
    return [layers[i] for i in called], [seen[i] for i in called]


def variance_shift(model: nn.Module, images: Tensor) -> list[dict]:
    """Per BN layer of ``model`` (torch's or bnlib's) that keeps running statistics and is
    called on ``images`` (a batch of the model's inputs), in module order, in eval mode:

    ``layer`` (its name in ``model.named_modules()``), ``running_var`` (mean over channels of
    the learned running variance), ``test_var`` (mean over channels of the input's variance over
    every axis but the channels, at test time), ``ratio`` (mean over channels of running / test
    variance), ``shift`` (mean over channels of max(running/test, test/running), Li et al.'s
    measure: 1 when the two agree) and ``mean_shift`` (mean over channels of
    ``|running mean - test mean| / test standard deviation``). The model is left in eval mode.
    """
    layers, inputs = _layer_inputs(
        model, images, lambda m: is_batch_norm(m) and m.running_var is not None)
    out = []
    for (name, layer), x in zip(layers, inputs):
        x = x.double()
        axes = [0] + list(range(2, x.dim()))
        test_var = x.var(dim=axes, unbiased=False)
        running = layer.running_var.detach().double()
        ratio = running / test_var
        mean_gap = (layer.running_mean.detach().double() - x.mean(dim=axes)).abs()
        out.append({"layer": name, "running_var": float(running.mean()),
                    "test_var": float(test_var.mean()), "ratio": float(ratio.mean()),
                    "shift": float(torch.maximum(ratio, 1 / ratio).mean()),
                    "mean_shift": float((mean_gap / test_var.sqrt()).mean())})
    return out


def dropout_variance_ratio(keep: float, mean: float | Tensor, var: float | Tensor):
    """Var_train / Var_test of a unit right behind inverted dropout that keeps it with
    probability ``keep`` (kept values scaled by 1/keep), for a unit of ``mean`` and ``var``:
    (1/keep) (1 + (1 - keep) mean**2 / var); 1/keep for a zero-mean unit."""
    return (1 + (1 - keep) * mean ** 2 / var) / keep


def dropout_variance(model: nn.Module, images: Tensor, seed: int = 0) -> list[dict]:
    """Per ``nn.Dropout`` layer of ``model`` (in module order), the variance right behind it:
    its input is taken in eval mode on ``images``, dropped once in training mode (a mask drawn
    with ``seed``) and compared with itself undropped, per channel (over N, H, W):

    ``measured`` (mean over channels of Var_train / Var_test) and ``predicted`` (mean over
    channels of :func:`dropout_variance_ratio` with the channel's own mean and biased
    variance). Channels without variance (a ReLU that is always 0) are left out. The model is
    left in eval mode."""
    layers, inputs = _layer_inputs(model, images, lambda m: isinstance(m, nn.Dropout))
    generator, out = torch.Generator().manual_seed(seed), []
    for (_, layer), x in zip(layers, inputs):
        x, keep = x.double(), 1 - layer.p
        dropped = x * (torch.rand(x.shape, generator=generator, dtype=x.dtype) < keep) / keep
        axes = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dim=axes), x.var(dim=axes, unbiased=False)
        live = var > 0
        measured = dropped.var(dim=axes, unbiased=False)[live] / var[live]
        predicted = dropout_variance_ratio(keep, mean[live], var[live])
        out.append({"measured": float(measured.mean()), "predicted": float(predicted.mean()),
                    "channels": int(live.sum())})
    return out


@dataclasses.dataclass
class _AtLastStep(Probe):
    """Runs :meth:`measure` on ``images`` once, after optimizer step ``at_step`` (give the
    run's last step). ``result()``: ``{"step", "layers": [per-layer dicts]}``."""

    images: Tensor
    at_step: int

    def measure(self, model: nn.Module) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self, model: nn.Module) -> None:
        self._layers: list[dict] = []
        self._step: int | None = None

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if step == self.at_step:
            self._layers = self.measure(model)
            self._step = step

    def result(self) -> dict:
        return {"step": self._step, "layers": self._layers}


@dataclasses.dataclass
class VarianceShiftProbe(_AtLastStep):
    """:func:`variance_shift` on ``images`` after step ``at_step``."""

    name: str = "variance_shift"

    def measure(self, model: nn.Module) -> list[dict]:
        return variance_shift(model, self.images)


@dataclasses.dataclass
class DropoutVarianceProbe(_AtLastStep):
    """:func:`dropout_variance` on ``images`` after step ``at_step``."""

    name: str = "dropout_variance"

    def measure(self, model: nn.Module) -> list[dict]:
        return dropout_variance(model, self.images)
