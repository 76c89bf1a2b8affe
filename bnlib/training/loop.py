"""The training loop: :func:`train` one :class:`RunConfig` on the DHCD digits (evaluating with
:func:`bnlib.evaluation.evaluate`).

What a run does:

* the images are preloaded as one float32 tensor in the channels-last memory format (no
  per-sample decoding, no DataLoader): each epoch indexes a shuffled permutation in
  mini-batches of ``batch_size`` (the last, smaller batch included);
* cross-entropy loss; plain SGD (``"sgd"``), SGD with momentum (``"momentum"``) or Adam
  (``"adam"``), each updating all parameters in one multi-tensor (``foreach``) step;
* the step runs compiled or eager (:mod:`bnlib.training.engine`); the loss and accuracy of the
  epoch's batches add up in tensors, read once per epoch (no host round trip per step);
* per epoch: the train loss and accuracy averaged over that epoch's mini-batches (measured in
  train mode while the weights move, as the article's curves are), the test loss and accuracy
  in eval mode after the epoch, the seconds the epoch took, and the tracked weights; the test
  metrics and tracked weights are also recorded before training (``History.initial``).

Determinism: the seed fixes the initial weights, the train subset and the shuffling (each from
its own ``torch.Generator``), so the same configuration gives a bit-identical history on the
same machine with the same torch version, thread count and engine. Runs use one torch thread
by default (``threads=1``); more threads change the last bits of the numbers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from bnlib import data as bnlib_data
from bnlib import settings
from bnlib.evaluation import evaluate
from bnlib.probes import StepProbe
from bnlib.training.config import EpochRecord, History, RunConfig
from bnlib.training.engine import choose_engine, compiled_forward

__all__ = ["resolve_parameter", "train"]


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
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, foreach=True)


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
        probes: :class:`bnlib.probes.StepProbe` objects: ``start(model)`` once before training,
            ``after_step(step, model, inputs, targets)`` after each optimizer step (step counts
            from 1; the model is put back in train mode after each call), ``result()`` stored
            in ``history.probes[probe.name]``.
        progress: draw a progress bar (default :func:`bnlib.settings.show_progress`).
        threads: torch threads during the run (restored afterwards); ``None`` leaves them as is.
        on_epoch: called with each epoch's record (used by ``run_many`` for its bar).
    """
    if progress is None:
        progress = settings.show_progress()
    names = [p.name for p in probes]
    if len(set(names)) != len(names):
        raise ValueError(f"probe names must be unique, got {names}")
    with settings.torch_threads(threads):
        return _Run(config, probes, progress, on_epoch).history


class _Run:
    """One run's state; ``history`` holds the result once the constructor returns."""

    def __init__(self, config: RunConfig, probes: Sequence[StepProbe], progress: bool, on_epoch):
        self.config, self.probes, self.on_epoch = config, probes, on_epoch
        x_train, self.y_train, x_test, self.y_test = _load_data(config)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.x_train = x_train.contiguous(memory_format=self.memory_format)
        self.x_test = x_test.contiguous(memory_format=self.memory_format)
        torch.manual_seed(config.seed)
        self.model = config.build_model().to(memory_format=self.memory_format)
        self.optimizer = _make_optimizer(config, self.model)
        self.shuffle = torch.Generator().manual_seed(config.seed + 2)
        self.tracked = [(resolve_parameter(self.model, name), index)
                        for name, index in config.track_weights]
        self.engine = choose_engine(config, probes)
        self.eager = self.model
        self.forward = compiled_forward(self.model) if self.engine == "inductor" else self.eager
        self.steps_per_epoch = math.ceil(len(self.x_train) / config.batch_size)
        test_loss, test_accuracy = self.test()
        self.history = History(
            config=config, engine=self.engine,
            initial={"test_loss": test_loss, "test_accuracy": test_accuracy, "weights": self.weights()},
            parameters=sum(p.numel() for p in self.model.parameters() if p.requires_grad),
        )
        for probe in probes:
            probe.start(self.model)
        self.model.train()
        self.step = 0
        self.bar = _progress_bar(config, self.steps_per_epoch) if progress else None
        try:
            for epoch in range(1, config.epochs + 1):
                self.run_epoch(epoch)
        finally:
            if self.bar is not None:
                self.bar.close()
        self.history.engine = self.engine
        self.history.probes = {probe.name: probe.result() for probe in probes}

    def weights(self) -> list[float]:
        return [float(p.detach()[index]) for p, index in self.tracked]

    def test(self) -> tuple[float, float]:
        return evaluate(self.model, self.x_test, self.y_test, channels_last=self.config.channels_last)

    def logits(self, inputs: Tensor) -> Tensor:
        """The forward pass of a training batch: compiled for full batches, eager otherwise
        (and for good if compiling fails: the first compiled call fails before it computes)."""
        if self.forward is self.eager or len(inputs) != self.config.batch_size:
            return self.eager(inputs)
        try:
            return self.forward(inputs)
        except Exception as error:  # no working toolchain after all
            warnings.warn(f"torch.compile failed, training eagerly: {type(error).__name__}: {error}",
                          stacklevel=2)
            self.forward, self.engine = self.eager, "eager"
            return self.eager(inputs)

    def run_epoch(self, epoch: int) -> None:
        config, n = self.config, len(self.x_train)
        started = time.perf_counter()
        order = torch.randperm(n, generator=self.shuffle)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            inputs, targets = self.x_train[batch], self.y_train[batch]
            if config.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            logits = self.logits(inputs)
            loss = nn.functional.cross_entropy(logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            with torch.no_grad():
                loss_sum += loss.detach().double() * len(batch)
                correct += (logits.detach().argmax(1) == targets).sum()
            self.after_step(inputs, targets)
        test_loss, test_accuracy = self.test()
        record = EpochRecord(
            epoch=epoch, train_loss=float(loss_sum) / n, train_accuracy=int(correct) / n,
            test_loss=test_loss, test_accuracy=test_accuracy,
            seconds=time.perf_counter() - started, weights=self.weights(),
        )
        self.history.epochs.append(record)
        if self.bar is not None:
            self.bar.update(self.step - self.bar.n)
            self.bar.set_postfix(epoch=epoch, test_acc=f"{test_accuracy:.1%}")
        if self.on_epoch is not None:
            self.on_epoch(record)

    def after_step(self, inputs: Tensor, targets: Tensor) -> None:
        """The probes, the evaluations every ``eval_every_steps`` and the bar, after a step."""
        for probe in self.probes:
            probe.after_step(self.step, self.model, inputs, targets)
            self.model.train()
        every = self.config.eval_every_steps
        if every and self.step % every == 0:
            step_loss, step_accuracy = self.test()
            self.history.step_evals.append(
                {"step": self.step, "epoch": self.step / self.steps_per_epoch,
                 "test_loss": step_loss, "test_accuracy": step_accuracy}
            )
        if self.bar is not None and self.step % 20 == 0:
            self.bar.update(self.step - self.bar.n)


def _progress_bar(config: RunConfig, steps_per_epoch: int):
    from tqdm.auto import tqdm

    kwargs = ",".join(f"{k}={v}" for k, v in config.model_kwargs)
    return tqdm(total=config.epochs * steps_per_epoch, unit="step", leave=False,
                desc=f"{config.model}({kwargs}) seed {config.seed}")
