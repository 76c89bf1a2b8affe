"""Measuring internal covariate shift (ICS) and the smoothness of the loss, during training.

Ioffe & Szegedy (2015) introduced Batch Normalization to reduce *internal covariate shift*: the
change in the distribution of a layer's inputs while the layers before it train. Santurkar et al.
(2018) tested that explanation. This module holds the instruments of both papers:

* :func:`activation_percentiles` and :class:`ActivationPercentileProbe`: percentiles (15th, 50th,
  85th by default) of the input to one unit (for example the input to a sigmoid) over a fixed
  batch, every ``k`` training steps: the measurement of Ioffe & Szegedy's Figure 1.
* :class:`NoisyBatchNorm`: BatchNorm followed by noise whose mean and variance are drawn anew at
  every training step, so that the layer's output distribution keeps moving ("noisy BN",
  Santurkar et al., Section 2.1).
* :func:`ics_measure` and :class:`ICSProbe`: the gradient-based ICS of Santurkar et al.
  (Definition 2.1): how much the gradient of one layer's weights changes when the layers before
  it take their update.
* :func:`gradient_landscape` and :class:`LandscapeProbe`: the loss and the gradient along the
  gradient direction (Santurkar et al., Figure 4): range of the loss, change of the gradient
  ("gradient predictiveness") and the effective beta-smoothness.
* :func:`accuracy` and :class:`AccuracyProbe`: accuracy on a fixed set every ``k`` steps.
* :func:`band_summary` and :func:`comparison`: numbers and words for the text, computed from
  the measurements (so a sentence says "wider" only when the data is wider).

Probes follow :class:`StepProbe`, the protocol of :func:`bnlib.training.run`: ``start(model)``
once before training, ``after_step(step, model, inputs, targets)`` after every optimizer step,
``result()`` a dict of lists of floats (always with a ``"step"`` list), ``key()`` the parameters
that enter the run's cache key. A probe never changes the training it watches:

* it restores the model's train/eval mode and every buffer (BN running statistics,
  ``num_batches_tracked``) after measuring, and measures without keeping gradients;
* it draws any random numbers (the noise of :class:`NoisyBatchNorm`) inside
  ``torch.random.fork_rng`` from its own seed (``seed + step``), so the global random stream of
  the training run is the same with or without probes, and a measurement is reproducible.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

__all__ = [
    "AccuracyProbe",
    "ActivationPercentileProbe",
    "ICSProbe",
    "LandscapeProbe",
    "NoisyBatchNorm",
    "StepProbe",
    "accuracy",
    "activation_percentiles",
    "band_summary",
    "comparison",
    "gradient_landscape",
    "ics_measure",
    "last_module_name",
    "weighted_layer_names",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class StepProbe(Protocol):
    """What :func:`bnlib.training.run` calls during training (see the module docstring)."""

    name: str

    def key(self) -> dict: ...

    def start(self, model: nn.Module) -> None: ...

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None: ...

    def result(self) -> dict: ...


# --------------------------------------------------------------------------------------------
# Noisy BatchNorm
# --------------------------------------------------------------------------------------------


from bnlib.nn import NoisyBatchNorm  # moved


# --------------------------------------------------------------------------------------------
# Helpers: finding layers, measuring without side effects
# --------------------------------------------------------------------------------------------


def last_module_name(model: nn.Module, kind: type[nn.Module] = nn.Sigmoid) -> str:
    """Name (as in ``model.named_modules()``) of the last submodule of type ``kind``.

    For :func:`bnlib.models.sigmoid_mlp` and ``kind=nn.Sigmoid`` this is the sigmoid of the last
    hidden layer, whose input Ioffe & Szegedy's Figure 1 follows.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, kind) and name]
    if not names:
        raise ValueError(f"the model has no submodule of type {kind.__name__}")
    return names[-1]


def weighted_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.Linear`` and convolution layers, in registration order.

    Registration order is the forward order for an ``nn.Sequential``; :func:`ics_measure` takes a
    layer as an index into this list.
    """
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, _ConvNd)) and name
    ]


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = ", ".join(repr(n) for n, _ in model.named_modules() if n)
        raise ValueError(f"the model has no submodule {name!r}; its submodules are {known}") from None


@contextlib.contextmanager
def _untouched(model: nn.Module, train: bool, seed: int) -> Iterator[None]:
    """Run a measurement in train (``train=True``) or eval mode, then restore mode, buffers and RNG.

    Inside, the global torch generator is seeded with ``seed`` (on a forked state, so the
    training run's random stream is unchanged afterwards).
    """
    modes = {module: module.training for module in model.modules()}
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.train(train)
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, mode in modes.items():
            module.training = mode


def _fingerprint(*tensors: Tensor) -> str:
    """A short SHA-256 of tensors' shapes and values, to name a fixed batch in a cache key."""
    digest = hashlib.sha256()
    for tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(repr((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def _loss_name(loss_fn: LossFn) -> str:
    return f"{getattr(loss_fn, '__module__', '?')}.{getattr(loss_fn, '__qualname__', repr(loss_fn))}"


def _check_every(every: int) -> int:
    if int(every) < 1:
        raise ValueError(f"every={every}: measure every k >= 1 steps")
    return int(every)


# --------------------------------------------------------------------------------------------
# 1. Percentiles of one unit's input (Ioffe & Szegedy, Figure 1)
# --------------------------------------------------------------------------------------------


def activation_percentiles(
    model: nn.Module,
    module: str,
    inputs: Tensor,
    unit: int = 0,
    percentiles: Sequence[float] = (15.0, 50.0, 85.0),
    train: bool = True,
    seed: int = 0,
) -> list[float]:
    """Percentiles of the input to ``unit`` of submodule ``module`` over the batch ``inputs``.

    The input of ``module`` (captured by a forward pre-hook) has shape (N, C) or (N, C, H, W);
    ``unit`` picks the column/channel c, and the percentiles are taken over its N (or N*H*W)
    values, with linear interpolation (as ``numpy.percentile``).

    Args:
        model: the network; left exactly as it was (mode, BN running statistics, RNG).
        module: name of the submodule whose *input* is measured (e.g. a sigmoid: see
            :func:`last_module_name`).
        inputs: the fixed batch fed to the model.
        unit: column (N, C) or channel (N, C, H, W) of the module's input.
        percentiles: in [0, 100].
        train: ``True`` runs the batch in train mode, so BN normalises it with its own batch
            statistics - the distribution a sigmoid sees during training (and noisy BN adds its
            noise, from ``seed``); ``False`` uses eval mode (running statistics, no noise).
        seed: seed of the noise drawn during the measurement.

    Returns:
        The percentiles, as floats, in the order asked.
    """
    target = _submodule(model, module)
    if any(not 0.0 <= q <= 100.0 for q in percentiles):
        raise ValueError(f"percentiles {list(percentiles)} must lie in [0, 100]")
    captured: list[Tensor] = []

    def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured.append(args[0].detach())

    handle = target.register_forward_pre_hook(hook)
    try:
        with _untouched(model, train, seed), torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"submodule {module!r} was not called in the model's forward pass")
    values = captured[0]
    if values.dim() < 2 or not 0 <= unit < values.shape[1]:
        raise ValueError(
            f"unit={unit} is not a column of {module!r}'s input of shape {tuple(values.shape)}"
        )
    column = values.transpose(0, 1)[unit].reshape(-1).double()
    q = torch.tensor([float(p) / 100.0 for p in percentiles], dtype=torch.float64)
    return [float(v) for v in torch.quantile(column, q)]


class ActivationPercentileProbe:
    """Every ``every`` steps (and at step 0), :func:`activation_percentiles` on a fixed batch.

    ``result()``: ``{"step": [...], "p15": [...], "p50": [...], "p85": [...]}`` (one key
    ``p<q>`` per percentile, ``q`` printed with ``:g``).

    Args:
        inputs: the fixed batch (e.g. 60 held-out images, the size of a training batch).
        module: name of the submodule whose input is followed; ``None``: the last ``nn.Sigmoid``
            of the model (found at ``start``).
        unit, percentiles, train: as in :func:`activation_percentiles`.
        every: measure after every ``every``-th optimizer step.
        seed: noise seed; the measurement after step ``t`` uses ``seed + t``.
        name: key of the result in the run's history.
    """

    def __init__(
        self,
        inputs: Tensor,
        module: str | None = None,
        unit: int = 0,
        percentiles: Sequence[float] = (15.0, 50.0, 85.0),
        every: int = 10,
        train: bool = True,
        seed: int = 0,
        name: str = "percentiles",
    ) -> None:
        self.inputs = inputs.detach().clone()
        self.module = module
        self.unit = int(unit)
        self.percentiles = tuple(float(q) for q in percentiles)
        self.every = _check_every(every)
        self.train = bool(train)
        self.seed = int(seed)
        self.name = name
        self._module_name: str | None = None
        self._rows: dict[str, list[float]] = {}

    def key(self) -> dict:
        return {
            "probe": "ActivationPercentileProbe",
            "module": self.module,
            "unit": self.unit,
            "percentiles": list(self.percentiles),
            "every": self.every,
            "train": self.train,
            "seed": self.seed,
            "inputs": _fingerprint(self.inputs),
        }

    def start(self, model: nn.Module) -> None:
        self._module_name = self.module if self.module is not None else last_module_name(model)
        self._rows = {"step": []} | {f"p{q:g}": [] for q in self.percentiles}
        self._measure(0, model)

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if step % self.every == 0:
            self._measure(step, model)

    def _measure(self, step: int, model: nn.Module) -> None:
        values = activation_percentiles(
            model, self._module_name, self.inputs, self.unit, self.percentiles, self.train,
            self.seed + step,
        )
        self._rows["step"].append(float(step))
        for q, v in zip(self.percentiles, values):
            self._rows[f"p{q:g}"].append(v)

    def result(self) -> dict:
        return {k: list(v) for k, v in self._rows.items()}


# --------------------------------------------------------------------------------------------
# Accuracy on a fixed set
# --------------------------------------------------------------------------------------------


def accuracy(model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int = 250) -> float:
    """Fraction of ``inputs`` whose arg-max logit is ``targets``, in eval mode (mode restored)."""
    correct = 0
    with _untouched(model, False, 0), torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            logits = model(inputs[i : i + batch_size])
            correct += int((logits.argmax(dim=1) == targets[i : i + batch_size]).sum())
    return correct / len(inputs)


class AccuracyProbe:
    """Every ``every`` steps (and at step 0), :func:`accuracy` on a fixed set (e.g. the test set).

    ``result()``: ``{"step": [...], "accuracy": [...]}``.
    """

    def __init__(
        self, inputs: Tensor, targets: Tensor, every: int = 10, name: str = "accuracy"
    ) -> None:
        self.inputs = inputs.detach().clone()
        self.targets = targets.detach().clone()
        self.every = _check_every(every)
        self.name = name
        self._rows: dict[str, list[float]] = {}

    def key(self) -> dict:
        return {
            "probe": "AccuracyProbe",
            "every": self.every,
            "data": _fingerprint(self.inputs, self.targets),
        }

    def start(self, model: nn.Module) -> None:
        self._rows = {"step": [], "accuracy": []}
        self._measure(0, model)

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if step % self.every == 0:
            self._measure(step, model)

    def _measure(self, step: int, model: nn.Module) -> None:
        self._rows["step"].append(float(step))
        self._rows["accuracy"].append(accuracy(model, self.inputs, self.targets))

    def result(self) -> dict:
        return {k: list(v) for k, v in self._rows.items()}


# --------------------------------------------------------------------------------------------
# 2. Gradient-based ICS (Santurkar et al., Definition 2.1)
# --------------------------------------------------------------------------------------------


def _layer_name(model: nn.Module, layer: int | str) -> str:
    if isinstance(layer, str):
        _submodule(model, layer)
        return layer
    names = weighted_layer_names(model)
    if not -len(names) <= layer < len(names):
        raise ValueError(
            f"layer={layer}: the model has {len(names)} Linear/Conv layers ({', '.join(names)}); "
            f"pass an index below {len(names)} or a module name"
        )
    return names[layer]


def _gradients(
    model: nn.Module,
    params: dict[str, Tensor],
    wrt: Sequence[str],
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn,
    seed: int,
) -> tuple[float, list[Tensor]]:
    """Loss and its gradients w.r.t. ``params[n]`` for n in ``wrt``, at the values ``params``.

    Runs in train mode (BN on batch statistics) with buffers and RNG restored afterwards and the
    noise seeded by ``seed``, so two calls at the same ``params`` give the same numbers.
    """
    leaves = {n: p.detach().requires_grad_(n in wrt) for n, p in params.items()}
    with _untouched(model, True, seed):  # backward inside: BN saves its buffers for it
        loss = loss_fn(functional_call(model, leaves, (inputs,)), targets)
        grads = torch.autograd.grad(loss, [leaves[n] for n in wrt])
    return float(loss.detach()), [g.detach() for g in grads]


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
    * ``G'`` = the same gradient after every parameter registered *before* layer ``i`` (weights,
      biases, BN's gamma and beta: the layers feeding it) has taken one SGD step
      ``w <- w - lr * dL/dw`` computed on that same batch; layer ``i`` and later are unchanged.

    ``G - G'`` is how much layer ``i``'s gradient moves only because its inputs shifted.
    Measured in train mode (BN on the batch's statistics, as during training); the model's mode,
    buffers and the global RNG are left as they were, and both gradients see the same noise.

    Args:
        model: the network (its parameters are not modified).
        layer: index into :func:`weighted_layer_names` (0 = first Linear/Conv) or a module name.
        inputs, targets: the batch.
        lr: the SGD learning rate of the update of the earlier layers.
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar (default cross-entropy).
        seed: seed of any noise drawn in the forward passes.

    Returns:
        A dict: ``diff_norm`` is ``||G - G'||_2``, ``grad_norm`` is ``||G||_2``, ``relative``
        is ``||G - G'|| / ||G||`` and ``cosine`` is ``cos(G, G')`` (norms of the flattened
        weight tensor).
    """
    name = _layer_name(model, layer)
    params = dict(model.named_parameters())
    weight = f"{name}.weight"
    if weight not in params:
        raise ValueError(f"layer {name!r} has no trainable parameter 'weight'")
    order = list(params)
    first = next(i for i, n in enumerate(order) if n.startswith(name + "."))
    earlier = order[:first]

    _, all_grads = _gradients(model, params, order, inputs, targets, loss_fn, seed)
    grads = dict(zip(order, all_grads))
    g = grads[weight].flatten()
    shifted = {
        n: (p.detach() - lr * grads[n]) if n in earlier else p.detach() for n, p in params.items()
    }
    _, (g_after,) = _gradients(model, shifted, [weight], inputs, targets, loss_fn, seed)
    g_after = g_after.flatten()
    grad_norm = float(g.norm())
    diff_norm = float((g - g_after).norm())
    cosine = float(F.cosine_similarity(g, g_after, dim=0, eps=1e-30))
    relative = diff_norm / grad_norm if grad_norm > 0 else float("nan")
    return {"diff_norm": diff_norm, "grad_norm": grad_norm, "relative": relative, "cosine": cosine}


class ICSProbe:
    """Every ``every`` steps (and at step 0), :func:`ics_measure` on a fixed batch.

    ``result()``: ``{"step", "diff_norm", "grad_norm", "relative", "cosine"}``, lists of floats.

    Args:
        inputs, targets: the fixed batch (e.g. 60 training images).
        layer: as in :func:`ics_measure`.
        lr: learning rate of the earlier layers' SGD step (use the run's learning rate).
        every: measure after every ``every``-th optimizer step.
        loss_fn: module-level function (so the probe pickles), default cross-entropy.
        seed: noise seed; the measurement after step ``t`` uses ``seed + t``.
        name: key of the result in the run's history.
    """

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        layer: int | str,
        lr: float,
        every: int = 10,
        loss_fn: LossFn = F.cross_entropy,
        seed: int = 0,
        name: str = "ics",
    ) -> None:
        self.inputs = inputs.detach().clone()
        self.targets = targets.detach().clone()
        self.layer = layer
        self.lr = float(lr)
        self.every = _check_every(every)
        self.loss_fn = loss_fn
        self.seed = int(seed)
        self.name = name
        self._rows: dict[str, list[float]] = {}

    def key(self) -> dict:
        return {
            "probe": "ICSProbe",
            "layer": self.layer,
            "lr": self.lr,
            "every": self.every,
            "loss": _loss_name(self.loss_fn),
            "seed": self.seed,
            "batch": _fingerprint(self.inputs, self.targets),
        }

    def start(self, model: nn.Module) -> None:
        self._rows = {k: [] for k in ("step", "diff_norm", "grad_norm", "relative", "cosine")}
        self._measure(0, model)

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if step % self.every == 0:
            self._measure(step, model)

    def _measure(self, step: int, model: nn.Module) -> None:
        values = ics_measure(
            model, self.layer, self.inputs, self.targets, self.lr, self.loss_fn, self.seed + step
        )
        self._rows["step"].append(float(step))
        for k, v in values.items():
            self._rows[k].append(v)

    def result(self) -> dict:
        return {k: list(v) for k, v in self._rows.items()}


# --------------------------------------------------------------------------------------------
# 4. The loss landscape along the gradient (Santurkar et al., Figure 4)
# --------------------------------------------------------------------------------------------


def gradient_landscape(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    step_sizes: Sequence[float],
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
) -> dict[str, list[float] | float]:
    """Loss and gradient at ``w - eta * g`` for each step size ``eta``, g the gradient at ``w``.

    ``w`` are all trainable parameters (flattened into one vector), ``g = grad L(w)`` on the batch
    ``(inputs, targets)``. Measured in train mode (BN on the batch's statistics) with mode,
    buffers and RNG left as they were; every evaluation sees the same noise (``seed``).

    Returns:
        ``step_sizes``; ``losses`` ``L(w - eta g)``; ``grad_changes``
        ``||grad L(w - eta g) - grad L(w)||_2`` (gradient predictiveness: small = the gradient
        stays predictive along the step); ``loss``, ``grad_norm`` at ``w``;
        ``loss_range`` = max - min of ``losses``; ``beta_smoothness`` = max over eta of
        ``grad_changes / ||eta g||`` (the effective beta-smoothness; step sizes of 0 skipped).
    """
    etas = [float(e) for e in step_sizes]
    if not etas:
        raise ValueError("step_sizes is empty: pass the step sizes eta to probe, e.g. [0.05, 0.1]")
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    names = list(params)
    loss0, g = _gradients(model, params, names, inputs, targets, loss_fn, seed)
    g_flat = torch.cat([t.flatten() for t in g])
    grad_norm = float(g_flat.norm())
    losses, changes, ratios = [], [], []
    for eta in etas:
        moved = {n: params[n] - eta * gn for n, gn in zip(names, g)}
        loss, g_eta = _gradients(model, moved, names, inputs, targets, loss_fn, seed)
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


class LandscapeProbe:
    """Every ``every`` steps (and at step 0), :func:`gradient_landscape` on a fixed batch.

    ``result()``: lists over measurements of ``step``, ``loss_min``, ``loss_max`` (of the loss
    along the gradient), ``grad_change_min``, ``grad_change_max``, ``beta_smoothness``,
    ``grad_norm``.

    Args:
        inputs, targets: the fixed batch.
        step_sizes: the etas (Santurkar et al. use a range around the training learning rate).
        every, loss_fn, seed, name: as in :class:`ICSProbe`.
    """

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        step_sizes: Sequence[float],
        every: int = 10,
        loss_fn: LossFn = F.cross_entropy,
        seed: int = 0,
        name: str = "landscape",
    ) -> None:
        self.inputs = inputs.detach().clone()
        self.targets = targets.detach().clone()
        self.step_sizes = tuple(float(e) for e in step_sizes)
        if not self.step_sizes:
            raise ValueError("step_sizes is empty: pass the step sizes eta to probe")
        self.every = _check_every(every)
        self.loss_fn = loss_fn
        self.seed = int(seed)
        self.name = name
        self._rows: dict[str, list[float]] = {}

    def key(self) -> dict:
        return {
            "probe": "LandscapeProbe",
            "step_sizes": list(self.step_sizes),
            "every": self.every,
            "loss": _loss_name(self.loss_fn),
            "seed": self.seed,
            "batch": _fingerprint(self.inputs, self.targets),
        }

    def start(self, model: nn.Module) -> None:
        keys = ("step", "loss_min", "loss_max", "grad_change_min", "grad_change_max",
                "beta_smoothness", "grad_norm")
        self._rows = {k: [] for k in keys}
        self._measure(0, model)

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if step % self.every == 0:
            self._measure(step, model)

    def _measure(self, step: int, model: nn.Module) -> None:
        m = gradient_landscape(
            model, self.inputs, self.targets, self.step_sizes, self.loss_fn, self.seed + step
        )
        row = {
            "step": float(step),
            "loss_min": min(m["losses"]),
            "loss_max": max(m["losses"]),
            "grad_change_min": min(m["grad_changes"]),
            "grad_change_max": max(m["grad_changes"]),
            "beta_smoothness": m["beta_smoothness"],
            "grad_norm": m["grad_norm"],
        }
        for k, v in row.items():
            self._rows[k].append(float(v))

    def result(self) -> dict:
        return {k: list(v) for k, v in self._rows.items()}


# --------------------------------------------------------------------------------------------
# Summaries for the text
# --------------------------------------------------------------------------------------------


def band_summary(
    result: dict, lower: str = "p15", middle: str = "p50", upper: str = "p85"
) -> dict[str, float]:
    """How wide and how steady a percentile band is, from an :class:`ActivationPercentileProbe`
    result.

    Returns:
        ``median_width``: median over measurements of ``upper - lower`` (the spread of the
        distribution); ``middle_range``: max - min of ``middle`` over all measurements (how far
        the distribution's centre travelled during training); ``middle_jitter``: mean absolute
        change of ``middle`` between consecutive measurements (how much it moves step to step).
        Units: those of the measured activation.
    """
    lo, mid, hi = (torch.tensor(result[k], dtype=torch.float64) for k in (lower, middle, upper))
    if len(mid) < 2:
        raise ValueError("band_summary needs at least two measurements")
    return {
        "median_width": float((hi - lo).median()),
        "middle_range": float(mid.max() - mid.min()),
        "middle_jitter": float(mid.diff().abs().mean()),
    }


def comparison(a: float, b: float, less: str = "smaller", more: str = "larger",
               same: str = "equal") -> str:
    """The word that makes "a is ___ than b" true: ``less`` if a < b, ``more`` if a > b."""
    if a < b:
        return less
    if a > b:
        return more
    return same
