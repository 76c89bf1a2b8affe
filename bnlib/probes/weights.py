"""The trained network itself, as a probe: its weights stored with the run's cached history.

:func:`bnlib.training.train_model` runs a configuration with a :class:`FinalWeightsProbe` and
gives back the trained model; :func:`bnlib.training.model_from_history` rebuilds it from any
history made with this probe (:func:`state_dict_from_result` reads the stored weights).
"""

from __future__ import annotations

import dataclasses
import torch
from torch import Tensor, nn

from bnlib.probes.base import Probe

__all__ = ["FinalWeightsProbe", "state_dict_from_result"]


def _tensor_to_json(tensor: Tensor) -> dict:
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
            "values": tensor.detach().cpu().reshape(-1).tolist()}


def _tensor_from_json(entry: dict) -> Tensor:
    return torch.tensor(entry["values"], dtype=getattr(torch, entry["dtype"])).reshape(entry["shape"])


@dataclasses.dataclass
class FinalWeightsProbe(Probe):
    """Keeps the model's ``state_dict`` at the end of a run (no settings).

    The engine caches probe results with the history, so the trained weights come back with a
    cached run (float32 values survive the JSON round trip exactly). Use
    :func:`bnlib.training.train_model`.
    """

    name = "final_weights"

    def start(self, model: nn.Module) -> None:
        self._model = model

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        pass

    def result(self) -> dict:
        state = self._model.state_dict()
        return {"state_dict": {name: _tensor_to_json(value) for name, value in state.items()}}


def state_dict_from_result(result: dict) -> dict[str, Tensor]:
    """The ``state_dict`` a :class:`FinalWeightsProbe` stored (its ``result()``), as tensors."""
    return {name: _tensor_from_json(entry) for name, entry in result["state_dict"].items()}
