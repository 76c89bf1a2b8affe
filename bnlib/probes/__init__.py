"""Measurements taken while a network trains: one protocol, one small base class, the probes.

A probe is handed to :func:`bnlib.training.run` (or ``run_many``); the loop calls
``start(model)`` once, ``after_step(step, model, inputs, targets)`` after every optimizer step,
and stores ``result()`` in ``History.probes[probe.name]``. A probe's ``key()`` is part of the
run's cache key, so two probes that would measure differently never share a cached result.
"""

from bnlib.probes.base import Probe, StepProbe, fingerprint

__all__ = ["Probe", "StepProbe", "fingerprint"]

# chapter 6 (benefits)
from bnlib.probes.variance_shift import VarianceShiftProbe, variance_shift  # noqa: E402

__all__ += ["VarianceShiftProbe", "variance_shift"]
