"""The "variance shift" of Li et al. (2019): the variance a BN layer learned during training
(its running variance, estimated with dropout active upstream) against the variance its input
actually has at test time (dropout off), measured at the end of training."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from bnlib.inference import batch_norm_layers
from bnlib.probes.base import Probe

__all__ = ["VarianceShiftProbe", "variance_shift"]


def variance_shift(model: nn.Module, images: Tensor) -> list[dict]:
    """Per BN layer of ``model`` that keeps running statistics and is called on ``images``
    (in module order), in eval mode on ``images`` (a batch of the model's inputs):

    ``layer`` (its name in ``model.named_modules()``), ``running_var`` (mean over channels of
    the learned running variance), ``test_var`` (mean over channels of the input's variance over
    every axis but the channels, at test time), ``ratio`` (mean over channels of running / test
    variance) and ``shift`` (mean over channels of max(running/test, test/running), Li et al.'s
    measure: 1 when the two agree) and ``mean_shift`` (mean over channels of
    ``|running mean - test mean| / test standard deviation``). The model is left in eval mode.
    """
    tracked = {id(m) for m in batch_norm_layers(model)}
    layers = [(name, m) for name, m in model.named_modules() if id(m) in tracked]
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
    out = []
    for i, (name, layer) in enumerate(layers):
        if i not in seen:
            continue
        x = seen[i].double()
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


@dataclasses.dataclass
class VarianceShiftProbe(Probe):
    """Measures :func:`variance_shift` on ``images`` once, after optimizer step ``at_step``
    (give the run's last step). ``result()``: ``{"step", "layers": [per-layer dicts]}``."""

    images: Tensor
    at_step: int
    name: str = "variance_shift"

    def start(self, model: nn.Module) -> None:
        self._layers: list[dict] = []
        self._step: int | None = None

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if step == self.at_step:
            self._layers = variance_shift(model, self.images)
            self._step = step

    def result(self) -> dict:
        return {"step": self._step, "layers": self._layers}
