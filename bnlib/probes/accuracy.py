"""Accuracy on a fixed set (e.g. the test set) every few training steps."""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from bnlib.evaluation import accuracy
from bnlib.probes.measuring import PeriodicProbe

__all__ = ["AccuracyProbe"]


@dataclasses.dataclass(eq=False)
class AccuracyProbe(PeriodicProbe):
    """Every ``every`` steps (and at step 0), :func:`bnlib.evaluation.accuracy` of the model on
    ``inputs`` (N, ...) against ``targets`` (N,), in eval mode (the mode is restored).

    ``result()``: ``{"step": [...], "accuracy": [...]}`` (fractions in [0, 1]).
    """

    inputs: Tensor
    targets: Tensor
    every: int = 10
    name: str = "accuracy"

    def measure(self, step: int, model: nn.Module) -> dict[str, float]:
        return {"accuracy": accuracy(model, self.inputs, self.targets)}
