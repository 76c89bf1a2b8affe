"""Percentiles of one unit's input over training: the measurement of Ioffe & Szegedy's
Figure 1 (the 15th, 50th and 85th percentiles of the input to one sigmoid)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bnlib.probes.measuring import PeriodicProbe, last_module_name, submodule, untouched

__all__ = ["ActivationPercentileProbe", "activation_percentiles"]


def activation_percentiles(
    model: nn.Module,
    module: str,
    inputs: Tensor,
    unit: int = 0,
    percentiles: Sequence[float] = (15.0, 50.0, 85.0),
    train: bool = True,
    seed: int = 0,
) -> list[float]:
    """Percentiles of the input to ``unit`` of submodule ``module`` over the batch ``inputs``.

    The input of ``module`` (captured by a forward pre-hook) has shape (N, C) or
    (N, C, H, W); ``unit`` picks the column/channel c, and the percentiles are taken over its
    N (or N*H*W) values, with linear interpolation (as ``numpy.percentile``).

    Args:
        model: the network; left exactly as it was (mode, BN running statistics, RNG).
        module: name of the submodule whose *input* is measured (e.g. a sigmoid: see
            :func:`bnlib.probes.measuring.last_module_name`).
        inputs: the fixed batch fed to the model.
        unit: column (N, C) or channel (N, C, H, W) of the module's input.
        percentiles: in [0, 100].
        train: ``True`` runs the batch in train mode, so BN normalises it with its own batch
            statistics (and a noisy BN adds its noise, from ``seed``): the distribution a
            sigmoid sees during training; ``False`` uses eval mode.
        seed: seed of the noise drawn during the measurement.

    Returns:
        The percentiles, as floats, in the order asked.
    """
    target = submodule(model, module)
    if any(not 0.0 <= q <= 100.0 for q in percentiles):
        raise ValueError(f"percentiles {list(percentiles)} must lie in [0, 100]")
    captured: list[Tensor] = []

    def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured.append(args[0].detach())

    handle = target.register_forward_pre_hook(hook)
    try:
        with untouched(model, train, seed), torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"submodule {module!r} was not called in the model's forward pass")
    values = captured[0]
    if values.dim() < 2 or not 0 <= unit < values.shape[1]:
        raise ValueError(
            f"unit={unit} is not a column of {module!r}'s input of shape {tuple(values.shape)}"
        )
    column = values.transpose(0, 1)[unit].reshape(-1).double()
    q = torch.tensor([float(p) / 100.0 for p in percentiles], dtype=torch.float64)
    return [float(v) for v in torch.quantile(column, q)]


@dataclasses.dataclass(eq=False)
class ActivationPercentileProbe(PeriodicProbe):
    """Every ``every`` steps (and at step 0), :func:`activation_percentiles` on a fixed batch.

    ``result()``: ``{"step": [...], "p15": [...], "p50": [...], "p85": [...]}`` (one key
    ``p<q>`` per percentile, ``q`` printed with ``:g``).

    Args:
        inputs: the fixed batch (e.g. 60 held-out images, the size of a training batch).
        module: name of the submodule whose input is followed; ``None``: the last
            ``nn.Sigmoid`` of the model (found at ``start``).
        unit, percentiles, train: as in :func:`activation_percentiles`.
        every: measure after every ``every``-th optimizer step.
        seed: noise seed; the measurement after step ``t`` uses ``seed + t``.
        name: key of the result in the run's history.
    """

    inputs: Tensor
    module: str | None = None
    unit: int = 0
    percentiles: tuple[float, ...] = (15.0, 50.0, 85.0)
    every: int = 10
    train: bool = True
    seed: int = 0
    name: str = "percentiles"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.percentiles = tuple(float(q) for q in self.percentiles)

    def start(self, model: nn.Module) -> None:
        self._module_name = self.module or last_module_name(model)
        super().start(model)

    def measure(self, step: int, model: nn.Module) -> dict[str, float]:
        values = activation_percentiles(
            model, self._module_name, self.inputs, self.unit, self.percentiles, self.train,
            self.seed + step,
        )
        return {f"p{q:g}": v for q, v in zip(self.percentiles, values)}
