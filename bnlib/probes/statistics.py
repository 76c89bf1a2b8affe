"""A probe of the statistics batch norm keeps: what the first BN layer saw at every step,
what it stored, and what the whole population would have given."""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from bnlib.batch_statistics import PatchMoments
from bnlib.inference import batch_norm_layers
from bnlib.probes.base import Probe

__all__ = ["FirstLayerStatisticsProbe"]


@dataclasses.dataclass
class FirstLayerStatisticsProbe(Probe):
    """Follows the first BN layer's statistics, step by step.

    For a model whose first two layers are ``Conv2d`` then a BN layer (the article's network), it
    records at every step up to ``max_steps``, per channel:

    * ``batch_mean``, ``batch_var``: the mean and the *unbiased* variance of the BN input over
      the mini-batch, exactly what the layer feeds into its running averages;
    * ``running_mean``, ``running_var``: the layer's running averages after that step;
    * ``population_mean``, ``population_var``: the exact statistics of the BN input over the whole
      training set, with the weights of that step's forward pass (:class:`PatchMoments`).

    ``result()`` holds these as lists of per-step lists (steps x channels), plus ``momentum``.

    Args:
        max_steps: steps recorded (the first ones).
        images: the population, (N, C_in, H, W); default: the DHCD training images (the whole
            set, whatever ``train_subset`` the run uses).
    """

    name = "first_layer_statistics"

    max_steps: int = 1000
    images: Tensor | None = None

    def start(self, model: nn.Module) -> None:
        layers = list(model.children())
        if len(layers) < 2 or not isinstance(layers[0], nn.Conv2d) or layers[1] not in batch_norm_layers(model):
            raise ValueError("FirstLayerStatisticsProbe needs a model starting with Conv2d then a BN layer")
        images = self.images
        if images is None:
            from bnlib.data import load_hindi_digits

            images = load_hindi_digits("train")[0]
        self._conv, self._bn = layers[0], layers[1]
        self._moments = PatchMoments(images, self._conv)
        self._records = {k: [] for k in ("batch_mean", "batch_var", "running_mean", "running_var",
                                         "population_mean", "population_var")}
        self._step = 0
        self._handle = self._bn.register_forward_pre_hook(self._before_bn)

    def _before_bn(self, module: nn.Module, args: tuple) -> None:
        if not module.training or self._step >= self.max_steps:
            return
        x = args[0].detach().double()
        dims = [0, *range(2, x.dim())]
        self._records["batch_mean"].append(x.mean(dims).tolist())
        self._records["batch_var"].append(x.var(dims, unbiased=True).tolist())
        mean, var = self._moments.output_statistics(self._conv)
        self._records["population_mean"].append(mean.tolist())
        self._records["population_var"].append(var.tolist())

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if self._step < self.max_steps:
            self._records["running_mean"].append(self._bn.running_mean.double().tolist())
            self._records["running_var"].append(self._bn.running_var.double().tolist())
            self._step += 1
        if self._step >= self.max_steps:
            self._handle.remove()

    def result(self) -> dict:
        self._handle.remove()
        return {"momentum": self._bn.momentum, **self._records}
