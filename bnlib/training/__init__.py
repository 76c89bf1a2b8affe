"""One training engine for the whole book: configurations, the loop, a result store, many runs.

A run is described by a :class:`RunConfig` (frozen, hashable, JSON-serialisable): the model (a
name in :data:`bnlib.models.MODELS` and its keyword arguments), the optimizer, learning rate,
batch size, epochs, seed, an optional train subset, the weights to track and optional extra
test evaluations between epochs. :func:`train` runs it on the DHCD digits and returns a
:class:`History`; :func:`run` does the same through the result store; :func:`run_many` spreads
independent runs over processes.

The modules, one job each:

* :mod:`~bnlib.training.config`: :class:`RunConfig`, :class:`EpochRecord`, :class:`History`;
* :mod:`~bnlib.training.loop`: :func:`train` (evaluating with :mod:`bnlib.evaluation`'s
  :func:`evaluate` and :func:`accuracy`, re-exported here);
* :mod:`~bnlib.training.engine`: how the step runs (``torch.compile`` or eager);
* :mod:`~bnlib.training.code`: which bnlib code a run executes, and its hash;
* :mod:`~bnlib.training.files`: atomic writes;
* :mod:`~bnlib.training.store`: cache keys, cached histories, :func:`run`;
* :mod:`~bnlib.training.parallel`: :func:`run_many`;
* :mod:`~bnlib.training.trained`: :func:`train_model`, :func:`model_from_history` (the trained
  network back from a run).

Probes follow :class:`bnlib.probes.StepProbe` (re-exported here).
"""

from bnlib.probes import StepProbe
from bnlib.training.code import CORE_MODULES, code_version, run_modules
from bnlib.training.config import OPTIMIZERS, EpochRecord, History, RunConfig
from bnlib.evaluation import accuracy, evaluate
from bnlib.training.loop import resolve_parameter, train
from bnlib.training.parallel import run_many
from bnlib.training.store import cache_key, cache_path, run
from bnlib.training.trained import model_from_history, train_model

__all__ = [
    "CORE_MODULES",
    "EpochRecord",
    "History",
    "OPTIMIZERS",
    "RunConfig",
    "StepProbe",
    "accuracy",
    "cache_key",
    "cache_path",
    "code_version",
    "evaluate",
    "model_from_history",
    "resolve_parameter",
    "run",
    "run_many",
    "run_modules",
    "train",
    "train_model",
]
