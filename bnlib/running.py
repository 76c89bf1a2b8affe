"""Running averages: the rules frameworks use to estimate population statistics in training.

After every training step a batch norm layer moves its inference statistics towards the batch's.
The frameworks agree on the form of the update and differ in the details below, which matter when a
model or a recipe is ported from one to the other:

* update: PyTorch ``new = (1 - momentum) * old + momentum * batch``; Keras 3
  ``new = momentum * old + (1 - momentum) * batch``;
* default momentum: PyTorch 0.1 (``None``: cumulative average); Keras 0.99;
* variance fed in: PyTorch the unbiased one, ``m / (m - 1)`` times the batch's; Keras the
  biased one, the batch's own;
* default epsilon: PyTorch 1e-5; Keras 1e-3.

:func:`running_average` applies the update to a sequence of per-batch values;
:func:`running_statistics` feeds whole batches the way each framework does.

The running statistics belong to the forward pass, not to the optimiser: every training-mode
forward is one *update*. When a training step makes k updates (k accumulated micro-batches, a
checkpointed segment whose forward runs twice), :func:`momentum_for_updates` gives the
per-update momentum whose k updates forget the old value as one update of ``momentum`` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["CONVENTIONS", "momentum_for_updates", "running_average", "running_statistics"]

#: Each framework's defaults: ``momentum``, whether the variance fed in is unbiased, ``eps``.
CONVENTIONS = {
    "pytorch": {"momentum": 0.1, "unbiased": True, "eps": 1e-5},
    "keras": {"momentum": 0.99, "unbiased": False, "eps": 1e-3},
}


def running_average(
    batch_values: Sequence[float] | np.ndarray,
    momentum: float | None = 0.1,
    initial: float | np.ndarray = 0.0,
    convention: str = "pytorch",
) -> np.ndarray:
    """The running average after each step, for a sequence of per-batch statistics.

    Args:
        batch_values: shape (T,) or (T, C): the statistic of each of T mini-batches.
        momentum: PyTorch convention: ``new = (1 - momentum) * old + momentum * batch``;
            ``None`` gives the cumulative average ``old + (batch - old) / t`` at step t (the
            initial value is forgotten at the first step). Keras convention:
            ``new = momentum * old + (1 - momentum) * batch``.
        initial: the value before the first step (both frameworks start the mean at 0 and the
            variance at 1).
        convention: ``"pytorch"`` or ``"keras"``.

    Returns:
        float64 array of the shape of ``batch_values``: row t is the average after step t+1.
    """
    values = np.asarray(batch_values, dtype=np.float64)
    if values.ndim == 0 or len(values) == 0:
        raise ValueError("batch_values must be a non-empty sequence (one value per step)")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be 'pytorch' or 'keras', got {convention!r}")
    if momentum is None and convention == "keras":
        raise ValueError("momentum=None (cumulative average) is PyTorch's; Keras needs a number")
    if momentum is not None and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1] (or be None), got {momentum}")
    out = np.empty_like(values)
    shape = values.shape[1:]
    current = np.broadcast_to(np.asarray(initial, dtype=np.float64), shape).copy()
    for t, batch in enumerate(values):
        if momentum is None:
            current = current + (batch - current) / (t + 1)
        elif convention == "pytorch":
            current = (1.0 - momentum) * current + momentum * batch
        else:
            current = momentum * current + (1.0 - momentum) * batch
        out[t] = current
    return out


def running_statistics(
    batches: Iterable[Tensor],
    convention: str = "pytorch",
    momentum: float | None | str = "default",
) -> tuple[np.ndarray, np.ndarray]:
    """The (running mean, running variance) a framework's batch norm layer holds after
    training-mode passes over ``batches``, computed from the batches alone.

    Args:
        batches: tensors ``(N, C)`` or ``(N, C, *spatial)``, channels on axis 1; statistics per channel
            over every other axis.
        convention: ``"pytorch"`` (unbiased batch variance fed in) or ``"keras"`` (biased).
        momentum: in the convention's own meaning; ``"default"``: 0.1 for PyTorch, 0.99 for
            Keras.

    Returns:
        two float64 arrays (C,), starting from mean 0 and variance 1 as both frameworks do.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be 'pytorch' or 'keras', got {convention!r}")
    rule = CONVENTIONS[convention]
    momentum = rule["momentum"] if momentum == "default" else momentum
    means, variances = [], []
    for x in batches:
        x = torch.as_tensor(x).double()
        dims = [0, *range(2, x.dim())]
        means.append(x.mean(dims).numpy())
        variances.append(x.var(dims, unbiased=rule["unbiased"]).numpy())
    mean = running_average(means, momentum, 0.0, convention)[-1]
    var = running_average(variances, momentum, 1.0, convention)[-1]
    return mean, var


def momentum_for_updates(momentum: float | None, updates: int) -> float | None:
    """The PyTorch-convention momentum for each of ``updates`` (k) updates per training step
    that decays the old running value as one update of ``momentum`` does:
    ``1 - (1 - momentum) ** (1 / k)``, since k updates keep ``(1 - m_k) ** k = 1 - momentum`` of it.

    For k micro-batches of one distribution the result equals one update in expectation, not
    step by step (each micro-batch's statistic enters with its own weight). For a forward that
    runs twice on the same batch (gradient checkpointing, k = 2) it is exact: both updates see the
    same statistic. ``None`` (the cumulative average) stays ``None``: it weights every update
    equally whatever k is, and only ``num_batches_tracked`` counts k per step.
    """
    if isinstance(updates, bool) or not isinstance(updates, int) or updates < 1:
        raise ValueError(f"updates must be a whole number >= 1, got {updates!r}")
    if momentum is None:
        return None
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1] (or be None), got {momentum}")
    return 1.0 - (1.0 - momentum) ** (1.0 / updates)
