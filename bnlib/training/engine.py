"""How the training step runs: eager, or compiled by ``torch.compile`` (inductor) on request.

Inductor fuses the step's batch norm, ReLU and pooling (forward and backward) into a few
C++ loops. For this book's small networks it did not pay on the 2-core machine it was measured
on (``benchmarks/train_speed.py``: the compiled step 0.9x-1.05x the eager channels-last step,
after 4 s of compiling with a warm cache and 10-70 s cold), so runs are eager unless
``BNLIB_COMPILE=1``. Even then a run stays eager where inductor finds no C++ compiler, where
the run is short (:data:`MIN_COMPILED_IMAGES`), or where a layer or probe is not known to be
safe under compilation. The choice
(:func:`choose_engine`) is made before the run from its configuration, so it enters the
run's cache key: the two engines round differently.

The compiled model has static shapes (``dynamic=False``): the full training batches run
compiled; the last, smaller batch of an epoch and the evaluation run eagerly on the same
module (same parameters), so nothing recompiles from epoch to epoch. Compiled code is cached
across processes in ``cache_dir() / "inductor"`` (``TORCHINDUCTOR_CACHE_DIR``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

from torch import Tensor, nn

from bnlib import settings
from bnlib.probes import StepProbe
from bnlib.training.config import RunConfig

__all__ = ["COMPILE_ENV", "MIN_COMPILED_IMAGES", "choose_engine", "compile_wanted",
           "compiled_forward", "compiler_available"]

#: ``BNLIB_COMPILE=1`` asks for compiled training steps (default: eager).
COMPILE_ENV = "BNLIB_COMPILE"
#: Runs that train fewer images than this stay eager: compiling (2-6 s with a warm cache,
#: 10-70 s cold, measured) would cost more than it saves.
MIN_COMPILED_IMAGES = 60_000
#: Layer types whose forward and backward inductor compiles to the same math as eager.
SAFE_LAYERS = (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Flatten,
               nn.Linear, nn.Sigmoid, nn.GroupNorm, nn.Sequential)
#: Images in the DHCD training split (a run without ``train_subset`` trains on all of them).
TRAIN_IMAGES = 17_000


def compile_wanted() -> bool:
    """True when ``BNLIB_COMPILE`` asks for compiled steps (``1``, ``yes``, ``on``)."""
    return os.environ.get(COMPILE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@functools.cache
def compiler_available() -> bool:
    """True if inductor finds a C++ compiler here."""
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except Exception:  # no compiler, or an inductor without this helper
        return False
    return True


def choose_engine(config: RunConfig, probes: Sequence[StepProbe] = ()) -> str:
    """``"inductor"`` or ``"eager"`` for this run (see the module docstring); probes opt in
    to compilation with a true ``compile_safe`` attribute (they must not hook the forward)."""
    if not compile_wanted():
        return "eager"
    images = config.epochs * min(config.train_subset or TRAIN_IMAGES, TRAIN_IMAGES)
    safe = all(isinstance(m, SAFE_LAYERS) for m in config.build_model().modules())
    if (images < MIN_COMPILED_IMAGES or not safe
            or not all(getattr(p, "compile_safe", False) for p in probes)):
        return "eager"
    return "inductor" if compiler_available() else "eager"


def compiled_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``model``'s forward compiled by inductor with static shapes, its code cached under the
    bnlib cache folder (unless ``TORCHINDUCTOR_CACHE_DIR`` is set already)."""
    import torch

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings.cache_dir() / "inductor"))
    return torch.compile(model, dynamic=False)
