"""One training loop for the whole book, with a per-epoch history, seeds, probes and a result cache.

A run is described by a :class:`RunConfig` (frozen, hashable, JSON-serialisable): the model (a name
in :data:`bnlib.models.MODELS` and its keyword arguments), the optimizer, learning rate, batch
size, epochs, seed, an optional train subset, the weights to track and optional extra test
evaluations between epochs. :func:`train` runs it on the DHCD digits and returns a
:class:`History`; :func:`run` does the same through a result cache; :func:`run_many` spreads
independent runs over processes.

What a run does:

* the images are preloaded as one float32 tensor (no per-sample decoding, no DataLoader): each
  epoch indexes a shuffled permutation in mini-batches of ``batch_size`` (the last, smaller
  batch included);
* cross-entropy loss; plain SGD (``"sgd"``), SGD with momentum (``"momentum"``) or Adam
  (``"adam"``);
* per epoch: the train loss and accuracy averaged over that epoch's mini-batches (measured in
  train mode while the weights move, as the article's curves are), the test loss and accuracy
  in eval mode after the epoch, the seconds the epoch took, and the tracked weights;
  the test metrics and tracked weights are also recorded before training (``History.initial``).

Determinism: the seed fixes the initial weights, the train subset and the shuffling (each from
its own ``torch.Generator``), so the same configuration gives a bit-identical history on the same
machine with the same torch version and thread count. Runs use one torch thread by default
(``threads=1``), both in-process and in :func:`run_many`'s workers, so a run gives the same
numbers however it was launched. More threads make a lone run faster (1.3x to 1.5x with two
on a 2-core machine, measured by ``benchmarks/train_speed.py``) but change the last bits of the
numbers, which then differ from the same run's with one thread.

The cache (:func:`run`) is keyed by the configuration, the probes' keys, the thread count,
:func:`code_version` (a hash of the code of the bnlib modules the run executes, docstrings and
comments excluded) and the data checksums; entries are
JSON files under ``bnlib.settings.cache_dir() / "runs"``, written atomically.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from bnlib import data as bnlib_data
from bnlib import settings
from bnlib.models import build_model

__all__ = [
    "CODE_MODULES",
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
    "resolve_parameter",
    "run",
    "run_many",
    "run_modules",
    "train",
]

OPTIMIZERS = ("sgd", "momentum", "adam")

#: The bnlib modules whose code :func:`code_version` hashes by default (a missing one hashes as
#: absent). A run's cache key hashes only the modules it executes (:func:`run_modules`).
CODE_MODULES = ("training", "models", "data", "nn", "shift", "settings", "ghost")
#: Modules every run executes, whatever its layers and probes.
CORE_MODULES = ("training", "models", "data", "settings")

_HISTORY_FORMAT = 1


# --------------------------------------------------------------------------- configuration


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


# --------------------------------------------------------------------------- probes


@runtime_checkable
class StepProbe(Protocol):
    """A measurement taken during training, after every optimizer step (see :func:`train`)."""

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


# --------------------------------------------------------------------------- history


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
    """

    config: RunConfig
    epochs: list[EpochRecord] = dataclasses.field(default_factory=list)
    initial: dict = dataclasses.field(default_factory=dict)
    step_evals: list[dict] = dataclasses.field(default_factory=list)
    probes: dict = dataclasses.field(default_factory=dict)
    parameters: int = 0
    cached: bool = False

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
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically (a temporary file, then ``os.replace``)."""
        _atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


# --------------------------------------------------------------------------- the loop


def resolve_parameter(model: nn.Module, name: str) -> Tensor:
    """The parameter called ``name`` in ``model.named_parameters()``; the prefix ``last_conv.``
    stands for the last ``nn.Conv2d`` in the model (``"last_conv.weight"``)."""
    if name.startswith("last_conv."):
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"{name!r}: the model has no nn.Conv2d")
        return getattr(convs[-1], name.removeprefix("last_conv."))
    parameters = dict(model.named_parameters())
    if name not in parameters:
        raise ValueError(f"no parameter {name!r}; the model has {', '.join(parameters)}")
    return parameters[name]


def _make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def evaluate(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 250, channels_last: bool = False
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of ``model`` in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = labels[start : start + batch_size]
            logits = model(x)
            total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return total_loss / len(images), correct / len(images)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 250) -> float:
    """Fraction of ``images`` (N, ...) whose arg-max logit equals ``labels`` (N,), in eval mode
    (the model's mode is restored). The one accuracy of bnlib."""
    return evaluate(model, images, labels, batch_size)[1]


def _load_data(config: RunConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x_train, y_train = bnlib_data.load_hindi_digits("train")
    x_test, y_test = bnlib_data.load_hindi_digits("test")
    if config.train_subset is not None and config.train_subset < len(x_train):
        generator = torch.Generator().manual_seed(config.seed + 1)
        keep = torch.randperm(len(x_train), generator=generator)[: config.train_subset]
        x_train, y_train = x_train[keep], y_train[keep]
    if config.test_subset is not None and config.test_subset < len(x_test):
        keep = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(0))
        keep = keep[: config.test_subset]
        x_test, y_test = x_test[keep], y_test[keep]
    return x_train, y_train, x_test, y_test


def train(
    config: RunConfig,
    probes: Sequence[StepProbe] = (),
    progress: bool | None = None,
    threads: int | None = 1,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> History:
    """Train ``config``'s model on the DHCD digits and return its :class:`History` (no cache).

    Args:
        config: the run.
        probes: :class:`StepProbe` objects: ``start(model)`` once before training,
            ``after_step(step, model, inputs, targets)`` after each optimizer step (step counts
            from 1; the model is put back in train mode after each call), ``result()`` stored
            in ``history.probes[probe.name]``.
        progress: draw a progress bar (default :func:`bnlib.settings.show_progress`).
        threads: torch threads during the run (restored afterwards); ``None`` leaves them as is.
            One thread is the default: as fast as two for this batch size and deterministic.
        on_epoch: called with each epoch's record (used by :func:`run_many` for its bar).
    """
    if progress is None:
        progress = settings.show_progress()
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(config, probes, progress, on_epoch)
    finally:
        torch.set_num_threads(old_threads)


def _train(config: RunConfig, probes, progress: bool, on_epoch) -> History:
    names = [p.name for p in probes]
    if len(set(names)) != len(names):
        raise ValueError(f"probe names must be unique, got {names}")
    x_train, y_train, x_test, y_test = _load_data(config)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    if config.channels_last:
        x_train = x_train.contiguous(memory_format=torch.channels_last)

    torch.manual_seed(config.seed)
    model = config.build_model().to(memory_format=memory_format)
    optimizer = _make_optimizer(config, model)
    shuffle = torch.Generator().manual_seed(config.seed + 2)
    tracked = [(resolve_parameter(model, name), index) for name, index in config.track_weights]

    def weights() -> list[float]:
        return [float(p.detach()[index]) for p, index in tracked]

    def test() -> tuple[float, float]:
        return evaluate(model, x_test, y_test, channels_last=config.channels_last)

    test_loss, test_accuracy = test()
    history = History(
        config=config,
        initial={"test_loss": test_loss, "test_accuracy": test_accuracy, "weights": weights()},
        parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    for probe in probes:
        probe.start(model)
    model.train()

    n = len(x_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs * steps_per_epoch, unit="step", desc=_describe(config), leave=False)
    step = 0
    try:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            order = torch.randperm(n, generator=shuffle)
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.int64)
            for start in range(0, n, config.batch_size):
                batch = order[start : start + config.batch_size]
                inputs, targets = x_train[batch], y_train[batch]
                if config.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                logits = model(inputs)
                loss = nn.functional.cross_entropy(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                with torch.no_grad():
                    loss_sum += loss.detach().double() * len(batch)
                    correct += (logits.detach().argmax(1) == targets).sum()
                for probe in probes:
                    probe.after_step(step, model, inputs, targets)
                    model.train()
                if config.eval_every_steps and step % config.eval_every_steps == 0:
                    step_loss, step_accuracy = test()
                    history.step_evals.append(
                        {"step": step, "epoch": step / steps_per_epoch,
                         "test_loss": step_loss, "test_accuracy": step_accuracy}
                    )
                if bar is not None and step % 20 == 0:
                    bar.update(step - bar.n)
            test_loss, test_accuracy = test()
            record = EpochRecord(
                epoch=epoch,
                train_loss=float(loss_sum) / n,
                train_accuracy=int(correct) / n,
                test_loss=test_loss,
                test_accuracy=test_accuracy,
                seconds=time.perf_counter() - started,
                weights=weights(),
            )
            history.epochs.append(record)
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix(epoch=epoch, test_acc=f"{test_accuracy:.1%}")
            if on_epoch is not None:
                on_epoch(record)
    finally:
        if bar is not None:
            bar.close()
    history.probes = {probe.name: probe.result() for probe in probes}
    return history


def _describe(config: RunConfig) -> str:
    kwargs = ",".join(f"{k}={v}" for k, v in config.model_kwargs)
    return f"{config.model}({kwargs}) seed {config.seed}"


# --------------------------------------------------------------------------- cache


def _code_fingerprint(source: str) -> str:
    """A module's code without its docstrings, comments and layout (a dump of its syntax tree),
    so that editing documentation does not throw cached results away."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _module_imports(source: str) -> set[str]:
    """The bnlib modules a module imports at its top level (imports inside functions are lazy
    and only count when a run's layers or probes come from that module)."""
    found = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bnlib"):
            found.add(node.module.removeprefix("bnlib").lstrip("."))
            if node.module == "bnlib":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("bnlib.") for a in node.names if a.name.startswith("bnlib."))
    return {name.split(".")[0] for name in found if name}


def run_modules(config: RunConfig, probes: Sequence[StepProbe] = ()) -> tuple[str, ...]:
    """The bnlib modules one run executes: :data:`CORE_MODULES`, the modules of the model's layers
    and of the probes, and what those import at top level."""
    model = build_model(config.model, **dict(config.model_kwargs))
    classes = [type(m) for m in model.modules()] + [type(p) for p in probes]
    wanted = set(CORE_MODULES) | {
        c.__module__.split(".")[1] for c in classes if c.__module__.startswith("bnlib.")
    }
    package = Path(__file__).resolve().parent
    pending, seen = list(wanted), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = package / f"{module}.py"
        if path.is_file():
            pending.extend(_module_imports(path.read_text()) - seen)
    return tuple(sorted(seen))


def code_version(modules: Sequence[str] = CODE_MODULES) -> str:
    """SHA-256 over the code (docstrings and comments excluded) of the given bnlib modules."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for module in modules:
        path = package / f"{module}.py"
        digest.update(module.encode() + b"\0")
        digest.update(_code_fingerprint(path.read_text()).encode() if path.is_file() else b"<absent>")
        digest.update(b"\0")
    return digest.hexdigest()


def cache_key(config: RunConfig, probes: Sequence[StepProbe] = (), threads: int | None = 1) -> str:
    """Hex digest of the configuration, the probes' keys, the torch thread count, the code of the
    modules the run executes (:func:`run_modules`, :func:`code_version`) and the data checksums:
    equal keys mean the run would compute the same history."""
    payload = {
        "config": config.to_dict(),
        "probes": [{"name": p.name, "key": p.key()} for p in probes],
        "threads": threads if threads is not None else torch.get_num_threads(),
        "code": code_version(run_modules(config, probes)),
        "data": bnlib_data.ARRAY_SHA256,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(config: RunConfig, probes: Sequence[StepProbe] = (), threads: int | None = 1) -> Path:
    """Where :func:`run` keeps this run's history."""
    return settings.cache_dir() / "runs" / f"{cache_key(config, probes, threads)}.json"


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _read_cached(path: Path) -> History | None:
    try:
        history = History.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or unreadable: recompute (and overwrite)
    history.cached = True
    return history


def run(
    config: RunConfig,
    probes: Sequence[StepProbe] = (),
    cache: bool = True,
    progress: bool | None = None,
    threads: int | None = 1,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> History:
    """:func:`train` through the result cache: a run already computed with the same
    configuration, probe keys, bnlib code and data is read back instead of trained again.

    ``cache=False`` trains and neither reads nor writes the cache.
    """
    if not cache:
        return train(config, probes, progress=progress, threads=threads, on_epoch=on_epoch)
    path = cache_path(config, probes, threads)
    history = _read_cached(path)
    if history is not None:
        return history
    history = train(config, probes, progress=progress, threads=threads, on_epoch=on_epoch)
    history.save(path)
    return history


# --------------------------------------------------------------------------- parallel runs

_progress_queue = None


def _init_worker(queue) -> None:
    global _progress_queue
    _progress_queue = queue
    torch.set_num_threads(1)


def _run_in_worker(config: RunConfig, probes: Sequence[StepProbe], cache: bool) -> dict:
    def tick(record: EpochRecord) -> None:
        if _progress_queue is not None:
            _progress_queue.put(1)

    return run(config, probes, cache=cache, progress=False, threads=1, on_epoch=tick).to_dict()


def _drain(queue, bar) -> None:
    while queue is not None and not queue.empty():
        queue.get_nowait()
        bar.update(1)


def run_many(
    configs: Sequence[RunConfig],
    probes: Sequence[Sequence[StepProbe]] | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> list[History]:
    """Run independent configurations in parallel processes; histories in the order given.

    Args:
        configs: the runs.
        probes: one sequence of probes per configuration (``None``: no probes). Probes must be
            picklable, as they travel to the worker process.
        workers: processes (default :func:`bnlib.settings.default_workers`: one per available
            CPU, fewer if memory is short; never more than the runs left to compute); each uses
            one torch thread. ``workers=1`` runs them one after another in this process, which
            saves the memory of the worker processes (each imports torch and loads the data).
        cache: as in :func:`run`; cache hits are read here and cost no process.
        progress: one bar over all epochs of all runs (default
            :func:`bnlib.settings.show_progress`).
    """
    configs = list(configs)
    probe_lists = [tuple(p) for p in probes] if probes is not None else [()] * len(configs)
    if len(probe_lists) != len(configs):
        raise ValueError(f"{len(probe_lists)} probe lists for {len(configs)} configurations")
    if progress is None:
        progress = settings.show_progress()
    results: list[History | None] = [None] * len(configs)
    todo = []
    for i, (config, config_probes) in enumerate(zip(configs, probe_lists)):
        hit = _read_cached(cache_path(config, config_probes)) if cache else None
        if hit is not None:
            results[i] = hit
        else:
            todo.append(i)
    if not todo:
        return results  # type: ignore[return-value]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(configs[i].epochs for i in todo), unit="epoch", desc=f"{len(todo)} runs")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be None or a positive integer, got {workers}")
    workers = min(workers or settings.default_workers(), len(todo))
    try:
        if workers == 1:
            for i in todo:
                results[i] = run(
                    configs[i], probe_lists[i], cache=cache, progress=False, threads=1,
                    on_epoch=(lambda record: bar.update(1)) if bar is not None else None,
                )
        else:
            context = multiprocessing.get_context("spawn")
            with context.Manager() as manager:
                queue = manager.Queue() if bar is not None else None
                with ProcessPoolExecutor(
                    workers, mp_context=context, initializer=_init_worker, initargs=(queue,)
                ) as pool:
                    futures = {
                        pool.submit(_run_in_worker, configs[i], probe_lists[i], cache): i for i in todo
                    }
                    pending = set(futures)
                    while pending:
                        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                        for future in done:
                            results[futures[future]] = History.from_dict(future.result())
                        _drain(queue, bar)
                _drain(queue, bar)  # the last epochs reported before their run's end
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]
