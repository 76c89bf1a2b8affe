"""What a run is and what it measured: :class:`RunConfig`, :class:`EpochRecord`, :class:`History`.

A :class:`RunConfig` is frozen, hashable and JSON-serialisable: it is the run's identity in the
result store (:mod:`bnlib.training.store`). A :class:`History` is what the loop
(:mod:`bnlib.training.loop`) returns, written to and read from JSON text.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from torch import nn

from bnlib.models import build_model
from bnlib.training.files import atomic_write_text

__all__ = ["OPTIMIZERS", "EpochRecord", "History", "RunConfig"]

OPTIMIZERS = ("sgd", "momentum", "adam")

_HISTORY_FORMAT = 1


def _freeze(value: Any) -> Any:
    """Lists (from JSON) and dicts -> tuples, so a configuration stays hashable."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run (frozen, hashable, JSON-serialisable).

    Attributes:
        model: a name in :data:`bnlib.models.MODELS` (``"three_conv_net"``, ``"sigmoid_mlp"``).
        model_kwargs: its keyword arguments as sorted ``(name, value)`` pairs; a dict is accepted
            and converted (``RunConfig(model_kwargs={"batch_norm": True})``).
        optimizer: ``"sgd"`` (plain, no momentum), ``"momentum"`` (SGD with ``momentum``) or
            ``"adam"``.
        lr: learning rate.
        momentum: for ``"momentum"`` only (must be 0 for ``"sgd"``).
        weight_decay: L2 penalty of the optimizer (0: none).
        batch_size: mini-batch size.
        epochs: passes over the (subset of the) training set.
        seed: fixes initial weights, subset and shuffling.
        train_subset: ``None`` for all 17,000 images, or the first N of a seeded permutation.
        test_subset: ``None`` for all 3,000 test images, or the first N of a fixed permutation
            (the same for every seed; for quick checks - the book reports the full test set).
        track_weights: scalar weights recorded every epoch, as ``(parameter, index)`` pairs,
            e.g. ``("last_conv.weight", (3, 4, 1, 0))`` (see :func:`resolve_parameter`).
        eval_every_steps: if set, also evaluate the test set every this many optimizer steps
            (``History.step_evals``), for curves over steps.
        channels_last: train in the channels-last memory format (faster on CPU for the convnets;
            it changes the last bits of the numbers, so it is part of the configuration).
        device: ``"cpu"``.
    """

    model: str = "three_conv_net"
    model_kwargs: tuple = ()
    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 30
    seed: int = 5842
    train_subset: int | None = None
    test_subset: int | None = None
    track_weights: tuple = ()
    eval_every_steps: int | None = None
    channels_last: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_kwargs", _freeze(self.model_kwargs))
        tracked = tuple((str(name), tuple(int(i) for i in index)) for name, index in self.track_weights)
        object.__setattr__(self, "track_weights", tracked)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: use one of {OPTIMIZERS}")
        if self.optimizer == "sgd" and self.momentum != 0:
            raise ValueError('optimizer "sgd" is plain SGD: use optimizer="momentum" for momentum')
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be 0 or more, got {self.epochs}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or a positive integer, got {value}")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ValueError(f"eval_every_steps must be None or positive, got {self.eval_every_steps}")
        if self.device != "cpu":
            raise ValueError(f"only device='cpu' is supported, got {self.device!r}")

    @property
    def kwargs(self) -> dict:
        """``model_kwargs`` as a dict (nested pairs stay tuples)."""
        return dict(self.model_kwargs)

    def replace(self, **changes) -> RunConfig:
        """A copy with some fields changed (``config.replace(seed=1)``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (``model_kwargs`` as a dict)."""
        out = dataclasses.asdict(self)
        out["model_kwargs"] = {k: v for k, v in self.model_kwargs}
        out["track_weights"] = [[name, list(index)] for name, index in self.track_weights]
        return out

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(values)
        kwargs = values.get("model_kwargs", {})
        values["model_kwargs"] = {k: _freeze(v) for k, v in kwargs.items()} if isinstance(kwargs, dict) else kwargs
        return cls(**values)

    def build_model(self) -> nn.Module:
        """The configured model, freshly initialised (not seeded: :func:`train` seeds first)."""
        return build_model(self.model, **self.kwargs)


@dataclasses.dataclass
class EpochRecord:
    """One epoch: losses are mean cross-entropy (nats), accuracies fractions in [0, 1]."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    weights: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class History:
    """What a run measured.

    Attributes:
        config: the run's :class:`RunConfig`.
        epochs: one :class:`EpochRecord` per epoch, epochs 1..E.
        initial: before training: ``test_loss``, ``test_accuracy``, ``weights`` (epoch 0).
        step_evals: with ``eval_every_steps``: dicts ``step``, ``epoch`` (fractional),
            ``test_loss``, ``test_accuracy``.
        probes: ``probe.name -> probe.result()``.
        parameters: trainable scalars in the model.
        cached: True if this history was read from the cache rather than computed now.
        engine: how the training step ran: ``"inductor"`` (``torch.compile``) or ``"eager"``
            (see :mod:`bnlib.training.engine`); the two round differently.
    """

    config: RunConfig
    epochs: list[EpochRecord] = dataclasses.field(default_factory=list)
    initial: dict = dataclasses.field(default_factory=dict)
    step_evals: list[dict] = dataclasses.field(default_factory=list)
    probes: dict = dataclasses.field(default_factory=dict)
    parameters: int = 0
    cached: bool = False
    engine: str = "eager"

    def rows(self, **extra) -> list[dict]:
        """One dict per epoch (``epoch, train_loss, train_accuracy, test_loss, test_accuracy,
        seconds``, then ``weight_0, weight_1, ...``), with ``extra`` columns prepended."""
        out = []
        for record in self.epochs:
            row = dict(extra)
            row.update({k: v for k, v in dataclasses.asdict(record).items() if k != "weights"})
            row.update({f"weight_{i}": w for i, w in enumerate(record.weights)})
            out.append(row)
        return out

    def column(self, name: str) -> list[float]:
        """One field over epochs 1..E, e.g. ``history.column("test_accuracy")``."""
        return [getattr(record, name) for record in self.epochs]

    def weight_path(self) -> list[list[float]]:
        """The tracked weights at epochs 0..E: a list of E+1 lists of floats."""
        return [list(self.initial.get("weights", []))] + [list(r.weights) for r in self.epochs]

    @property
    def final(self) -> EpochRecord:
        """The last epoch's record."""
        if not self.epochs:
            raise ValueError("the history has no epochs")
        return self.epochs[-1]

    @property
    def total_seconds(self) -> float:
        """Training time summed over epochs."""
        return float(sum(r.seconds for r in self.epochs))

    def to_dict(self) -> dict:
        return {
            "format": _HISTORY_FORMAT,
            "config": self.config.to_dict(),
            "epochs": [dataclasses.asdict(r) for r in self.epochs],
            "initial": self.initial,
            "step_evals": self.step_evals,
            "probes": self.probes,
            "parameters": self.parameters,
            "engine": self.engine,
        }

    @classmethod
    def from_dict(cls, values: dict) -> History:
        if values.get("format") != _HISTORY_FORMAT:
            raise ValueError(f"unknown history format {values.get('format')!r}")
        return cls(
            config=RunConfig.from_dict(values["config"]),
            epochs=[EpochRecord(**r) for r in values["epochs"]],
            initial=values["initial"],
            step_evals=values["step_evals"],
            probes=values["probes"],
            parameters=values["parameters"],
            engine=values.get("engine", "eager"),
        )

    def to_json(self) -> str:
        """The history as JSON text (what the result store writes)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> History:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically (a temporary file, then ``os.replace``)."""
        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a file written by :meth:`save`."""
        return cls.from_json(Path(path).read_text())
