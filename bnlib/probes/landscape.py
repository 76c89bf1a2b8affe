"""The loss landscape along the gradient (Santurkar et al. 2018, Figure 4): range of the loss,
change of the gradient (what Santurkar et al. call its predictiveness) and the effective
beta-smoothness."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnlib.probes.measuring import LossFn, PeriodicProbe, gradients, loss_function

__all__ = ["LandscapeProbe", "gradient_landscape"]


def gradient_landscape(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    step_sizes: Sequence[float],
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
) -> dict[str, list[float] | float]:
    """Loss and gradient at ``w - eta * g`` for each step size ``eta``, g the gradient at ``w``.

    ``w`` are all trainable parameters (flattened into one vector), ``g = grad L(w)`` on the
    batch ``(inputs, targets)``. Measured in train mode (BN on the batch's statistics) with
    mode, buffers and RNG left as they were; every evaluation sees the same noise (``seed``).

    Returns:
        ``step_sizes``; ``losses`` ``L(w - eta g)``; ``grad_changes``
        ``||grad L(w - eta g) - grad L(w)||_2`` (small: the gradient stays predictive along
        the step); ``loss``, ``grad_norm`` at ``w``; ``loss_range`` = max - min of
        ``losses``; ``beta_smoothness`` = max over eta of ``grad_changes / ||eta g||`` (step
        sizes of 0 skipped).
    """
    etas = [float(e) for e in step_sizes]
    if not etas:
        raise ValueError("step_sizes is empty: pass the step sizes eta, e.g. [0.05, 0.1]")
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    names = list(params)
    loss0, g = gradients(model, params, names, inputs, targets, loss_fn, seed)
    g_flat = torch.cat([t.flatten() for t in g])
    grad_norm = float(g_flat.norm())
    losses, changes, ratios = [], [], []
    for eta in etas:
        moved = {n: params[n] - eta * gn for n, gn in zip(names, g)}
        loss, g_eta = gradients(model, moved, names, inputs, targets, loss_fn, seed)
        change = float((torch.cat([t.flatten() for t in g_eta]) - g_flat).norm())
        losses.append(loss)
        changes.append(change)
        if eta != 0.0 and grad_norm > 0:
            ratios.append(change / (abs(eta) * grad_norm))
    return {
        "step_sizes": etas,
        "losses": losses,
        "grad_changes": changes,
        "loss": loss0,
        "grad_norm": grad_norm,
        "loss_range": max(losses) - min(losses),
        "beta_smoothness": max(ratios) if ratios else float("nan"),
    }


@dataclasses.dataclass(eq=False)
class LandscapeProbe(PeriodicProbe):
    """Every ``every`` steps (and at step 0), :func:`gradient_landscape` on a fixed batch.

    ``result()``: lists over measurements of ``step``, ``loss_min``, ``loss_max`` (of the loss
    along the gradient), ``grad_change_min``, ``grad_change_max``, ``beta_smoothness``,
    ``grad_norm``.

    Args:
        inputs, targets: the fixed batch.
        step_sizes: the etas (a range around the training learning rate).
        every, loss, seed, name: as in :class:`bnlib.probes.ICSProbe`.
    """

    inputs: Tensor
    targets: Tensor
    step_sizes: tuple[float, ...]
    every: int = 10
    loss: str = "cross_entropy"
    seed: int = 0
    name: str = "landscape"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.step_sizes = tuple(float(e) for e in self.step_sizes)
        if not self.step_sizes:
            raise ValueError("step_sizes is empty: pass the step sizes eta to probe")
        loss_function(self.loss)

    def measure(self, step: int, model: nn.Module) -> dict[str, float]:
        m = gradient_landscape(model, self.inputs, self.targets, self.step_sizes,
                               loss_function(self.loss), self.seed + step)
        return {
            "loss_min": min(m["losses"]),
            "loss_max": max(m["losses"]),
            "grad_change_min": min(m["grad_changes"]),
            "grad_change_max": max(m["grad_changes"]),
            "beta_smoothness": m["beta_smoothness"],
            "grad_norm": m["grad_norm"],
        }
