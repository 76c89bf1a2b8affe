"""The trained network itself, as a probe: its weights stored with the run's cached history.

:func:`train_model` runs a configuration through :func:`bnlib.training.run` with a
:class:`FinalWeightsProbe` and gives back the trained model; :func:`model_from_history` rebuilds
it from any history made with that probe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from bnlib.probes.base import Probe, StepProbe

if TYPE_CHECKING:
    from bnlib.training import History, RunConfig

__all__ = ["FinalWeightsProbe", "model_from_history", "train_model"]


def _tensor_to_json(tensor: Tensor) -> dict:
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
            "values": tensor.detach().cpu().reshape(-1).tolist()}


def _tensor_from_json(entry: dict) -> Tensor:
    return torch.tensor(entry["values"], dtype=getattr(torch, entry["dtype"])).reshape(entry["shape"])


@dataclasses.dataclass
class FinalWeightsProbe(Probe):
    """Keeps the model's ``state_dict`` at the end of a run (no settings).

    The engine caches probe results with the history, so the trained weights come back with a
    cached run (float32 values survive the JSON round trip exactly). Use :func:`train_model`.
    """

    name = "final_weights"

    def start(self, model: nn.Module) -> None:
        self._model = model

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        pass

    def result(self) -> dict:
        state = self._model.state_dict()
        return {"state_dict": {name: _tensor_to_json(value) for name, value in state.items()}}


def model_from_history(history: History) -> nn.Module:
    """The trained model of a run made with :class:`FinalWeightsProbe`, in eval mode."""
    stored = history.probes.get(FinalWeightsProbe.name)
    if stored is None:
        raise ValueError(
            "this history has no final weights: run it with probes=[FinalWeightsProbe()] "
            "(or use bnlib.probes.train_model)"
        )
    model = history.config.build_model()
    model.load_state_dict({k: _tensor_from_json(v) for k, v in stored["state_dict"].items()})
    return model.eval()


def train_model(
    config: RunConfig,
    probes: Sequence[StepProbe] = (),
    cache: bool = True,
    progress: bool | None = None,
) -> tuple[nn.Module, History]:
    """Train ``config`` with :func:`bnlib.training.run` (cached) and return (model, history).

    The model is rebuilt from the weights stored by a :class:`FinalWeightsProbe` added to
    ``probes``; it is in eval mode and in the default (contiguous) memory format.
    """
    from bnlib import training

    history = training.run(config, probes=(*probes, FinalWeightsProbe()), cache=cache, progress=progress)
    return model_from_history(history), history
