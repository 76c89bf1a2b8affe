"""Trained networks back from the result store: :func:`train_model` trains a configuration (or
reads it from the cache) with a :class:`~bnlib.probes.FinalWeightsProbe` and returns the model;
:func:`model_from_history` rebuilds the model of any history made with that probe."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bnlib.probes import FinalWeightsProbe, StepProbe
from bnlib.probes.weights import state_dict_from_result
from bnlib.training.config import History, RunConfig
from bnlib.training.store import run

__all__ = ["model_from_history", "train_model"]


def model_from_history(history: History) -> nn.Module:
    """The trained model of a run made with :class:`FinalWeightsProbe`, in eval mode."""
    stored = history.probes.get(FinalWeightsProbe.name)
    if stored is None:
        raise ValueError(
            "this history has no final weights: run it with probes=[FinalWeightsProbe()] "
            "(or use bnlib.training.train_model)"
        )
    model = history.config.build_model()
    model.load_state_dict(state_dict_from_result(stored))
    return model.eval()


def train_model(
    config: RunConfig,
    probes: Sequence[StepProbe] = (),
    cache: bool = True,
    progress: bool | None = None,
) -> tuple[nn.Module, History]:
    """Train ``config`` with :func:`run` (cached) and return (model, history).

    The model is rebuilt from the weights stored by a :class:`FinalWeightsProbe` added to
    ``probes``; it is in eval mode and in the default (contiguous) memory format.
    """
    history = run(config, probes=(*probes, FinalWeightsProbe()), cache=cache, progress=progress)
    return model_from_history(history), history
