"""Santurkar et al.'s (2018, Definition 2.1) internal covariate shift: how much the gradient
of one layer's weights changes when the layers before it take their update."""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch import Tensor, nn

from bnlib.probes.measuring import (
    LossFn,
    PeriodicProbe,
    gradients,
    loss_function,
    submodule,
    weighted_layer_names,
)

__all__ = ["ICSProbe", "ics_measure"]


def _layer_name(model: nn.Module, layer: int | str) -> str:
    if isinstance(layer, str):
        submodule(model, layer)
        return layer
    names = weighted_layer_names(model)
    if not -len(names) <= layer < len(names):
        raise ValueError(
            f"layer={layer}: the model has {len(names)} Linear/Conv layers "
            f"({', '.join(names)}); pass an index below {len(names)} or a module name"
        )
    return names[layer]


def ics_measure(
    model: nn.Module,
    layer: int | str,
    inputs: Tensor,
    targets: Tensor,
    lr: float,
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
) -> dict[str, float]:
    """Santurkar et al.'s internal covariate shift of one layer, at the current parameters.

    With ``W_i`` the weight of layer ``i``:

    * ``G = dL/dW_i`` at the current parameters on the batch ``(inputs, targets)``;
    * ``G'`` = the same gradient after every parameter registered *before* layer ``i``
      (weights, biases, BN's gamma and beta) has taken one SGD step ``w <- w - lr * dL/dw``
      computed on that same batch; layer ``i`` and later are unchanged.

    Measured in train mode (BN on the batch's statistics); the model's mode, buffers and the
    global RNG are left as they were, and both gradients see the same noise.

    Args:
        model: the network (its parameters are not modified).
        layer: index into :func:`~bnlib.probes.measuring.weighted_layer_names` or a name.
        inputs, targets: the batch.
        lr: the SGD learning rate of the update of the earlier layers.
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar (default cross-entropy).
        seed: seed of any noise drawn in the forward passes.

    Returns:
        ``diff_norm`` ``||G - G'||_2``, ``grad_norm`` ``||G||_2``, ``relative``
        ``||G - G'|| / ||G||`` and ``cosine`` ``cos(G, G')`` (flattened weight tensor).
    """
    name = _layer_name(model, layer)
    params = dict(model.named_parameters())
    weight = f"{name}.weight"
    if weight not in params:
        raise ValueError(f"layer {name!r} has no trainable parameter 'weight'")
    order = list(params)
    first = next(i for i, n in enumerate(order) if n.startswith(name + "."))
    earlier = order[:first]

    _, all_grads = gradients(model, params, order, inputs, targets, loss_fn, seed)
    grads = dict(zip(order, all_grads))
    g = grads[weight].flatten()
    shifted = {
        n: (p.detach() - lr * grads[n]) if n in earlier else p.detach()
        for n, p in params.items()
    }
    _, (g_after,) = gradients(model, shifted, [weight], inputs, targets, loss_fn, seed)
    g_after = g_after.flatten()
    grad_norm = float(g.norm())
    diff_norm = float((g - g_after).norm())
    cosine = float(F.cosine_similarity(g, g_after, dim=0, eps=1e-30))
    relative = diff_norm / grad_norm if grad_norm > 0 else float("nan")
    return {"diff_norm": diff_norm, "grad_norm": grad_norm, "relative": relative,
            "cosine": cosine}


@dataclasses.dataclass(eq=False)
class ICSProbe(PeriodicProbe):
    """Every ``every`` steps (and at step 0), :func:`ics_measure` on a fixed batch.

    ``result()``: ``{"step", "diff_norm", "grad_norm", "relative", "cosine"}``, lists.

    Args:
        inputs, targets: the fixed batch (e.g. 60 training images).
        layer: as in :func:`ics_measure`.
        lr: learning rate of the earlier layers' SGD step (use the run's learning rate).
        every: measure after every ``every``-th optimizer step.
        loss: name of the loss in ``torch.nn.functional`` (default cross-entropy).
        seed: noise seed; the measurement after step ``t`` uses ``seed + t``.
        name: key of the result in the run's history.
    """

    inputs: Tensor
    targets: Tensor
    layer: int | str
    lr: float
    every: int = 10
    loss: str = "cross_entropy"
    seed: int = 0
    name: str = "ics"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lr = float(self.lr)
        loss_function(self.loss)

    def measure(self, step: int, model: nn.Module) -> dict[str, float]:
        return ics_measure(model, self.layer, self.inputs, self.targets, self.lr,
                           loss_function(self.loss), self.seed + step)
