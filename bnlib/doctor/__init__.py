"""The batch norm doctor: finds, in a reader's own model, the bugs of chapter 08.

* ``examine`` looks at a model as it stands (and at a batch or a loader of its data);
* ``watch`` is a context manager around training code that records who updates the
  running statistics (every training-mode forward) and when the optimiser steps.

Both return a ``Report`` of ``Finding`` ``(code, layer, message, fix, severity)``,
``layer`` being the module's name in ``model.named_modules()``. One module per check:
``modes``, ``shapes``, ``buffers``, ``momentum``, ``shift``, ``frozen``, ``layout``; the
thresholds are named constants there (``bnlib.doctor.shift.SHIFT_THRESHOLD``,
``bnlib.doctor.momentum.KERAS_MOMENTA``).

Example::

    from bnlib import doctor
    print(doctor.examine(model, loader=train_loader))
    with doctor.watch(model, optimizer) as seen:
        train_one_epoch(model, optimizer, train_loader)
    print(seen.report)
"""

from bnlib.doctor.examine import MAX_BATCHES, MAX_SAMPLES, examine
from bnlib.doctor.momentum import KERAS_MOMENTA
from bnlib.doctor.report import SEVERITIES, Finding, Report
from bnlib.doctor.shift import MEAN_SHIFT_THRESHOLD, SHIFT_THRESHOLD
from bnlib.doctor.watch import Watch, watch

__all__ = ["KERAS_MOMENTA", "MAX_BATCHES", "MAX_SAMPLES", "MEAN_SHIFT_THRESHOLD", "SEVERITIES",
           "SHIFT_THRESHOLD",
           "Finding", "Report", "Watch", "examine", "watch"]
