"""The probe protocol and the base class every bnlib probe derives from."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["Probe", "StepProbe", "fingerprint"]


@runtime_checkable
class StepProbe(Protocol):
    """What the training loop calls: a measurement taken after every optimizer step."""

    name: str

    def key(self) -> dict:
        """JSON-serialisable description; part of the run's cache key."""
        ...

    def start(self, model: nn.Module) -> None:
        """Called once before the first step."""
        ...

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        """Called after optimizer step ``step`` (1, 2, ...) with that step's mini-batch."""
        ...

    def result(self) -> dict:
        """JSON-serialisable measurements, stored in ``History.probes[name]``."""
        ...


def fingerprint(*tensors: Tensor) -> str:
    """A short SHA-256 of the tensors' shapes, dtypes and values (for cache keys)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)} {t.dtype}".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _key_value(value: Any) -> Any:
    """A field's value as it enters the key: tensors by fingerprint, sequences as lists."""
    if isinstance(value, Tensor):
        return fingerprint(value)
    if isinstance(value, (tuple, list)):
        return [_key_value(v) for v in value]
    return value


@dataclasses.dataclass
class Probe:
    """Base class of bnlib's probes: a dataclass whose fields are its settings.

    ``key()`` is derived from the fields (tensors by :func:`fingerprint`) and the class name, so
    a subclass never writes its own and cannot forget a setting. State a probe accumulates while
    it runs goes in attributes set in ``start`` (not fields), so it stays out of the key.
    Subclasses implement ``start``, ``after_step`` and ``result``; ``every`` steps apart is the
    common case, served by :meth:`due`.
    """

    def key(self) -> dict:
        fields = {f.name: _key_value(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {"probe": type(self).__name__, **fields}

    def due(self, step: int) -> bool:
        """True when ``step`` is a multiple of ``self.every`` (1 if the probe has no ``every``)."""
        every = getattr(self, "every", 1)
        return step % every == 0

    def start(self, model: nn.Module) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    def result(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError
