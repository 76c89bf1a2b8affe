"""How the training step runs: compiled by ``torch.compile`` (inductor) or eager.

Inductor fuses the step's batch norm, ReLU and pooling (forward and backward) into a few
C++ loops. It needs a C++ compiler; where there is none, or ``BNLIB_COMPILE=0``, or the run
is short (compiling costs seconds, :data:`MIN_COMPILED_IMAGES`), or a layer or probe is not
known to be safe under compilation, the step runs eagerly. The choice
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

__all__ = ["COMPILE_ENV", "MIN_COMPILED_IMAGES", "choose_engine", "compiled_forward",
           "compiler_available", "flat_forward"]

#: ``BNLIB_COMPILE=0`` turns compilation off (every run eager).
COMPILE_ENV = "BNLIB_COMPILE"
#: Runs that train fewer images than this stay eager: compiling (about 4 s with a warm cache,
#: 10-50 s cold) would cost more than it saves.
MIN_COMPILED_IMAGES = 60_000
#: Layer types whose forward and backward inductor compiles to the same math as eager.
SAFE_LAYERS = (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Flatten,
               nn.Linear, nn.Sigmoid, nn.GroupNorm, nn.Sequential)
TRAIN_IMAGES = 17_000


@functools.cache
def compiler_available() -> bool:
    """True if inductor finds a working C++ compiler here (and ``BNLIB_COMPILE`` is not 0)."""
    if os.environ.get(COMPILE_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except Exception:  # no compiler, or an inductor without this helper
        return False
    return True


def choose_engine(config: RunConfig, probes: Sequence[StepProbe] = ()) -> str:
    """``"inductor"`` or ``"eager"`` for this run (see the module docstring); probes opt in
    to compilation with a true ``compile_safe`` attribute (they must not hook the forward)."""
    images = config.epochs * min(config.train_subset or TRAIN_IMAGES, TRAIN_IMAGES)
    safe = all(isinstance(m, SAFE_LAYERS) for m in config.build_model().modules())
    if (images < MIN_COMPILED_IMAGES or not safe
            or not all(getattr(p, "compile_safe", False) for p in probes)):
        return "eager"
    return "inductor" if compiler_available() else "eager"


def flat_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``model``'s forward, where a channels-last (N, C, H, W) tensor met by ``Flatten`` and
    then ``Linear`` is flattened in its memory order (N, H*W*C: a view) and multiplied by the
    Linear weight permuted to match, instead of copied into (N, C*H*W) order; same products.
    Other models: ``model`` itself."""
    layers = list(model) if isinstance(model, nn.Sequential) else []
    pairs = [i for i in range(len(layers) - 1)
             if isinstance(layers[i], nn.Flatten) and isinstance(layers[i + 1], nn.Linear)]
    if not pairs:
        return model
    cut = pairs[0]
    head, linear, tail = nn.Sequential(*layers[:cut]), layers[cut + 1], layers[cut + 2:]

    def forward(x: Tensor) -> Tensor:
        h = head(x)
        if h.dim() == 4 and not h.is_contiguous() and h.permute(0, 2, 3, 1).is_contiguous():
            n, c, height, width = h.shape
            weight = linear.weight.view(-1, c, height, width).permute(0, 2, 3, 1).reshape(-1, c * height * width)
            out = nn.functional.linear(h.permute(0, 2, 3, 1).reshape(n, -1), weight, linear.bias)
        else:
            out = linear(h.flatten(1))
        for layer in tail:
            out = layer(out)
        return out

    return forward


def compiled_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``model``'s forward compiled by inductor with static shapes, its code cached under the
    bnlib cache folder (unless ``TORCHINDUCTOR_CACHE_DIR`` is set already)."""
    import torch

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings.cache_dir() / "inductor"))
    return torch.compile(flat_forward(model), dynamic=False)
