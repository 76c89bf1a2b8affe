"""What the probes share: measuring a model without changing it, finding its layers, and a
base class for probes that measure every ``every`` steps.

A probe never changes the training it watches: :func:`untouched` restores the model's
train/eval mode and every buffer (BN running statistics, ``num_batches_tracked``) after a
measurement, and draws any random numbers (the noise of a noisy BN layer) inside
``torch.random.fork_rng`` from the measurement's own seed, so the training run's random stream
is the same with or without probes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.conv import _ConvNd

from bnlib.probes.base import Probe

__all__ = [
    "LossFn",
    "PeriodicProbe",
    "gradients",
    "last_module_name",
    "loss_function",
    "submodule",
    "untouched",
    "weighted_layer_names",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


def loss_function(name: str) -> LossFn:
    """The function ``torch.nn.functional.<name>`` (e.g. ``"cross_entropy"``, ``"mse_loss"``).

    Probes name their loss by a string, so that the name enters the cache key and the probe
    pickles."""
    function = getattr(F, name, None)
    if not callable(function):
        raise ValueError(f"torch.nn.functional has no loss {name!r} (try 'cross_entropy')")
    return function


def last_module_name(model: nn.Module, kind: type[nn.Module] = nn.Sigmoid) -> str:
    """Name (as in ``model.named_modules()``) of the last submodule of type ``kind``.

    For :func:`bnlib.models.sigmoid_mlp` and ``kind=nn.Sigmoid`` this is the sigmoid of the
    last hidden layer, whose input Ioffe & Szegedy's Figure 1 follows.
    """
    names = [n for n, module in model.named_modules() if isinstance(module, kind) and n]
    if not names:
        raise ValueError(f"the model has no submodule of type {kind.__name__}")
    return names[-1]


def weighted_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.Linear`` and convolution layers, in registration order
    (the forward order for an ``nn.Sequential``)."""
    kinds = (nn.Linear, _ConvNd)
    return [n for n, module in model.named_modules() if isinstance(module, kinds) and n]


def submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error that lists the names there are."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = ", ".join(repr(n) for n, _ in model.named_modules() if n)
        raise ValueError(
            f"the model has no submodule {name!r}; its submodules are {known}"
        ) from None


@contextlib.contextmanager
def untouched(model: nn.Module, train: bool, seed: int) -> Iterator[None]:
    """Run a measurement in train (``train=True``) or eval mode, then restore the modes, the
    buffers and the random state. Inside, the global generator is seeded with ``seed``."""
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


def gradients(
    model: nn.Module,
    params: dict[str, Tensor],
    wrt: Sequence[str],
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn,
    seed: int,
) -> tuple[float, list[Tensor]]:
    """Loss and its gradients w.r.t. ``params[n]`` for n in ``wrt``, at the values ``params``.

    Runs in train mode (BN on batch statistics) inside :func:`untouched` with the noise seeded
    by ``seed``, so two calls at the same ``params`` give the same numbers.
    """
    leaves = {n: p.detach().requires_grad_(n in wrt) for n, p in params.items()}
    with untouched(model, True, seed):  # backward inside: BN saves its buffers for it
        loss = loss_fn(functional_call(model, leaves, (inputs,)), targets)
        grads = torch.autograd.grad(loss, [leaves[n] for n in wrt])
    return float(loss.detach()), [g.detach() for g in grads]


@dataclasses.dataclass(eq=False)
class PeriodicProbe(Probe):
    """A probe that measures at step 0 and after every ``every``-th optimizer step.

    Subclasses are dataclasses with an ``every`` field and implement
    ``measure(step, model) -> dict[str, float]``; ``result()`` is ``{"step": [...]}`` plus one
    list per key that ``measure`` returns. Tensor fields (the fixed batches) are copied, so a
    later change of the caller's tensor changes neither the measurement nor the key.
    """

    def __post_init__(self) -> None:
        if int(self.every) < 1:
            raise ValueError(f"every={self.every}: measure every k >= 1 steps")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Tensor):
                setattr(self, field.name, value.detach().clone())

    def measure(self, step: int, model: nn.Module) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def start(self, model: nn.Module) -> None:
        self._rows: dict[str, list[float]] = {"step": []}
        self._record(0, model)

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if self.due(step):
            self._record(step, model)

    def _record(self, step: int, model: nn.Module) -> None:
        values = self.measure(step, model)
        self._rows["step"].append(float(step))
        for key, value in values.items():
            self._rows.setdefault(key, []).append(float(value))

    def result(self) -> dict:
        return {key: list(values) for key, values in self._rows.items()}
