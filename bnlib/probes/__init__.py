"""Measurements taken while a network trains: one protocol, one small base class, the probes.

A probe is handed to :func:`bnlib.training.run` (or ``run_many``); the loop calls
``start(model)`` once, ``after_step(step, model, inputs, targets)`` after every optimizer step,
and stores ``result()`` in ``History.probes[probe.name]``. A probe's ``key()`` is part of the
run's cache key, so two probes that would measure differently never share a cached result.

The probes import nothing of :mod:`bnlib.training`: the engine imports the protocol from here,
and what trains a model and reads its probes back (``bnlib.training.train_model``) sits above
both.
"""

from bnlib.probes.base import Probe, StepProbe, fingerprint

# Internal covariate shift and the loss landscape (chapter 01)
from bnlib.probes.accuracy import AccuracyProbe
from bnlib.probes.ics import ICSProbe, ics_measure
from bnlib.probes.landscape import LandscapeProbe, gradient_landscape
from bnlib.probes.percentiles import ActivationPercentileProbe, activation_percentiles

# Inference-time statistics (chapter 03)
from bnlib.probes.statistics import FirstLayerStatisticsProbe
from bnlib.probes.weights import FinalWeightsProbe, state_dict_from_result

# Dropout before BN: the variance shift (chapter 06)
from bnlib.probes.variance_shift import (
    DropoutVarianceProbe, VarianceShiftProbe, dropout_variance, dropout_variance_ratio,
    variance_shift,
)

__all__ = [
    "Probe",
    "StepProbe",
    "fingerprint",
    # Internal covariate shift and the loss landscape (chapter 01)
    "AccuracyProbe",
    "ActivationPercentileProbe",
    "ICSProbe",
    "LandscapeProbe",
    "activation_percentiles",
    "gradient_landscape",
    "ics_measure",
    # Inference-time statistics (chapter 03)
    "FinalWeightsProbe",
    "FirstLayerStatisticsProbe",
    "state_dict_from_result",
    # Dropout before BN: the variance shift (chapter 06)
    "DropoutVarianceProbe",
    "VarianceShiftProbe",
    "dropout_variance",
    "dropout_variance_ratio",
    "variance_shift",
]
