"""Measurements taken while a network trains: one protocol, one small base class, the probes.

A probe is handed to :func:`bnlib.training.run` (or ``run_many``); the loop calls
``start(model)`` once, ``after_step(step, model, inputs, targets)`` after every optimizer step,
and stores ``result()`` in ``History.probes[probe.name]``. A probe's ``key()`` is part of the
run's cache key, so two probes that would measure differently never share a cached result.
"""

from bnlib.probes.base import Probe, StepProbe, fingerprint

# inference-time statistics (chapter 03)
from bnlib.probes.statistics import FirstLayerStatisticsProbe  # noqa: E402
from bnlib.probes.weights import FinalWeightsProbe, model_from_history, train_model  # noqa: E402

__all__ = [
    "FinalWeightsProbe",
    "FirstLayerStatisticsProbe",
    "Probe",
    "StepProbe",
    "fingerprint",
    "model_from_history",
    "train_model",
]
