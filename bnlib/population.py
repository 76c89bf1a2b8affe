"""Population statistics at inference time: running averages, train vs eval mode, precise BN.

Chapter 03 measures what a BN network does with the statistics it keeps for inference. This
module holds the measurements; :mod:`bnlib.inference` holds the transformations (folding,
recalibration) they are applied to.

* **Running averages** (:func:`running_average`): the update frameworks apply after every
  training step, in PyTorch's convention (``new = (1 - momentum) * old + momentum * batch``,
  ``momentum=None`` for a cumulative average) or Keras's (``new = momentum * old +
  (1 - momentum) * batch``).
* **Getting a trained model out of the engine**: :class:`FinalWeightsProbe` stores the weights at
  the end of a run inside its cached :class:`bnlib.training.History`; :func:`train_model` runs a
  configuration through :func:`bnlib.training.run` with that probe and returns the model.
* **Watching the statistics during training**: :class:`FirstLayerStatisticsProbe` records, at
  every step, the batch statistics the first BN layer saw, its running averages, and the exact
  population statistics of its input (computed in closed form from patch moments of the whole
  training set, :class:`PatchMoments`).
* **Train vs eval mode**: :func:`predict_in_train_mode` runs a copy of a model in train mode
  batch by batch, as the bug does, and returns the logits and the copy (whose running statistics
  that pass has rewritten).
* **Batch vs population statistics**: :func:`bn_input_moments` collects per-image moments of every
  BN layer's input; :func:`batch_statistics_gap` turns them into the error of a batch's mean and
  variance against the population's, for any batch size, without another forward pass.
* **Precise BN**: :func:`recalibration_curve` measures accuracy after recomputing population
  statistics from ``n`` training images, for several ``n`` and random draws.
* **Frozen BN**: :class:`FrozenBatchNorm2d` and :func:`freeze_batch_norm` replace BN layers by the
  fixed affine map they compute in eval mode, which ``model.train()`` cannot switch back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bnlib import training
from bnlib.inference import batch_norm_layers, recalibrate

__all__ = [
    "FinalWeightsProbe",
    "FirstLayerStatisticsProbe",
    "FrozenBatchNorm2d",
    "PatchMoments",
    "accuracy",
    "batch_statistics_gap",
    "bn_input_moments",
    "freeze_batch_norm",
    "model_from_history",
    "predict_in_train_mode",
    "recalibration_curve",
    "running_average",
    "train_model",
]

# --------------------------------------------------------------------------- running averages


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
        initial: the value before the first step (PyTorch starts running_mean at 0 and
            running_var at 1).
        convention: ``"pytorch"`` or ``"keras"``.

    Returns:
        float64 array of the shape of ``batch_values``: row t is the average after step t+1.
    """
    values = np.asarray(batch_values, dtype=np.float64)
    if values.ndim == 0 or len(values) == 0:
        raise ValueError("batch_values must be a non-empty sequence (one value per step)")
    if convention not in ("pytorch", "keras"):
        raise ValueError(f"convention must be 'pytorch' or 'keras', got {convention!r}")
    if momentum is None and convention == "keras":
        raise ValueError("momentum=None (cumulative average) is PyTorch's; Keras needs a number")
    if momentum is not None and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1] (or be None), got {momentum}")
    out = np.empty_like(values)
    current = np.broadcast_to(np.asarray(initial, dtype=np.float64), values.shape[1:]).copy()
    for t, batch in enumerate(values):
        if momentum is None:
            current = current + (batch - current) / (t + 1)
        elif convention == "pytorch":
            current = (1.0 - momentum) * current + momentum * batch
        else:
            current = momentum * current + (1.0 - momentum) * batch
        out[t] = current
    return out


# --------------------------------------------------------------------------- trained models


def _tensor_to_json(tensor: Tensor) -> dict:
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
            "values": tensor.detach().cpu().reshape(-1).tolist()}


def _tensor_from_json(entry: dict) -> Tensor:
    return torch.tensor(entry["values"], dtype=getattr(torch, entry["dtype"])).reshape(entry["shape"])


class FinalWeightsProbe:
    """A :class:`bnlib.training.StepProbe` keeping the model's ``state_dict`` at the end of a run.

    The engine caches probe results with the history, so the trained weights come back with a
    cached run (float32 values survive the JSON round trip exactly). Use :func:`train_model`.
    """

    name = "final_weights"

    def key(self) -> dict:
        return {"format": 1}

    def start(self, model: nn.Module) -> None:
        self._model = model

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        pass

    def result(self) -> dict:
        state = self._model.state_dict()
        return {"state_dict": {name: _tensor_to_json(value) for name, value in state.items()}}


def model_from_history(history: training.History) -> nn.Module:
    """The trained model of a run made with :class:`FinalWeightsProbe`, in eval mode."""
    stored = history.probes.get(FinalWeightsProbe.name)
    if stored is None:
        raise ValueError(
            "this history has no final weights: run it with probes=[FinalWeightsProbe()] "
            "(or use bnlib.population.train_model)"
        )
    model = history.config.build_model()
    model.load_state_dict({k: _tensor_from_json(v) for k, v in stored["state_dict"].items()})
    return model.eval()


def train_model(
    config: training.RunConfig,
    probes: Sequence[training.StepProbe] = (),
    cache: bool = True,
    progress: bool | None = None,
) -> tuple[nn.Module, training.History]:
    """Train ``config`` with :func:`bnlib.training.run` (cached) and return (model, history).

    The model is rebuilt from the weights stored by a :class:`FinalWeightsProbe` added to
    ``probes``; it is in eval mode and in the default (contiguous) memory format.
    """
    history = training.run(config, probes=(*probes, FinalWeightsProbe()), cache=cache, progress=progress)
    return model_from_history(history), history


# --------------------------------------------------------------------------- first-layer statistics


class PatchMoments:
    """First and second moments of the input patches a convolution sees, over a whole data set.

    For a convolution applied to the images directly, output channel c at every position is
    ``w_c . p + b_c`` for the patch p under the kernel (zero padding included). Its population
    mean and variance over all images and positions are then exact closed forms:
    ``mean_c = w_c . E[p] + b_c`` and ``var_c = w_c^T Cov(p) w_c`` (biased, over N*H*W values).

    Args:
        images: (N, C_in, H, W).
        conv: the ``nn.Conv2d`` (its kernel size, padding, stride and dilation are used).
        chunk: images per step (memory).
    """

    def __init__(self, images: Tensor, conv: nn.Conv2d, chunk: int = 1000):
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise TypeError("PatchMoments needs an nn.Conv2d with groups=1")
        if isinstance(conv.padding, str):
            raise ValueError("PatchMoments needs numeric padding, e.g. Conv2d(..., padding=1)")
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = conv.kernel_size, conv.padding, conv.stride, conv.dilation
        d = conv.in_channels * kh * kw
        total = torch.zeros(d, dtype=torch.float64)
        outer = torch.zeros(d, d, dtype=torch.float64)
        count = 0
        for start in range(0, len(images), chunk):
            x = nn.functional.pad(images[start : start + chunk].double(), (pw, pw, ph, ph))
            h_out = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
            w_out = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
            # one shifted view per kernel tap, in the order of conv.weight's (C_in, kh, kw) axes
            taps = [x[:, c, a * dh : a * dh + sh * (h_out - 1) + 1 : sh, b * dw : b * dw + sw * (w_out - 1) + 1 : sw]
                    for c in range(conv.in_channels) for a in range(kh) for b in range(kw)]
            flat = torch.stack(taps).reshape(d, -1)  # (d, n * h_out * w_out): one column per position
            total += flat.sum(1)
            outer += flat @ flat.T
            count += flat.shape[1]
        self.count = count
        self.mean = total / count
        self.covariance = outer / count - torch.outer(self.mean, self.mean)

    def output_statistics(self, conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
        """Population (mean, biased variance) per output channel of ``conv``: two (C_out,) float64."""
        w = conv.weight.detach().double().reshape(conv.out_channels, -1)
        mean = w @ self.mean
        if conv.bias is not None:
            mean = mean + conv.bias.detach().double()
        var = ((w @ self.covariance) * w).sum(1)
        return mean, var


class FirstLayerStatisticsProbe:
    """A :class:`bnlib.training.StepProbe` following the first BN layer's statistics.

    For a model whose first two layers are ``Conv2d`` then a BN layer (the article's network), it
    records at every step up to ``max_steps``, per channel:

    * ``batch_mean``, ``batch_var``: the mean and the *unbiased* variance of the BN input over
      the mini-batch, exactly what the layer feeds into its running averages;
    * ``running_mean``, ``running_var``: the layer's running averages after that step;
    * ``population_mean``, ``population_var``: the exact statistics of the BN input over the whole
      training set, with the weights of that step's forward pass (:class:`PatchMoments`).

    ``result()`` holds these as lists of per-step lists (steps x channels), plus ``momentum``.

    Args:
        max_steps: steps recorded (the first ones).
        images: the population, (N, C_in, H, W); default: the DHCD training images (the whole
            set, whatever ``train_subset`` the run uses).
    """

    name = "first_layer_statistics"

    def __init__(self, max_steps: int = 1000, images: Tensor | None = None):
        self.max_steps = int(max_steps)
        self.images = images

    def key(self) -> dict:
        population = "dhcd-train" if self.images is None else {
            "shape": list(self.images.shape), "sum": float(self.images.double().sum())}
        return {"max_steps": self.max_steps, "population": population, "format": 1}

    def start(self, model: nn.Module) -> None:
        layers = list(model.children())
        if len(layers) < 2 or not isinstance(layers[0], nn.Conv2d) or layers[1] not in batch_norm_layers(model):
            raise ValueError("FirstLayerStatisticsProbe needs a model starting with Conv2d then a BN layer")
        images = self.images
        if images is None:
            from bnlib.data import load_hindi_digits

            images = load_hindi_digits("train")[0]
        self._conv, self._bn = layers[0], layers[1]
        self._moments = PatchMoments(images, self._conv)
        self._records = {k: [] for k in ("batch_mean", "batch_var", "running_mean", "running_var",
                                         "population_mean", "population_var")}
        self._step = 0
        self._handle = self._bn.register_forward_pre_hook(self._before_bn)

    def _before_bn(self, module: nn.Module, args: tuple) -> None:
        if not module.training or self._step >= self.max_steps:
            return
        x = args[0].detach().double()
        dims = [0, *range(2, x.dim())]
        self._records["batch_mean"].append(x.mean(dims).tolist())
        self._records["batch_var"].append(x.var(dims, unbiased=True).tolist())
        mean, var = self._moments.output_statistics(self._conv)
        self._records["population_mean"].append(mean.tolist())
        self._records["population_var"].append(var.tolist())

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        if self._step < self.max_steps:
            self._records["running_mean"].append(self._bn.running_mean.double().tolist())
            self._records["running_var"].append(self._bn.running_var.double().tolist())
            self._step += 1
        if self._step >= self.max_steps:
            self._handle.remove()

    def result(self) -> dict:
        self._handle.remove()
        return {"momentum": self._bn.momentum, **self._records}


# --------------------------------------------------------------------------- train vs eval mode


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows of ``logits`` (N, classes) whose argmax equals ``labels`` (N,)."""
    return float((logits.argmax(1) == labels).double().mean())


def predict_in_train_mode(
    model: nn.Module, images: Tensor, batch_size: int, order_seed: int | None = None
) -> tuple[Tensor, nn.Module]:
    """Run a copy of ``model`` in train mode over ``images`` in mini-batches, as the bug does.

    Every BN layer normalises each batch with that batch's own statistics, and updates its
    running averages from it. ``model`` itself is not touched.

    Args:
        model: the trained network.
        images: (N, ...) inputs.
        batch_size: images per forward pass (the last batch may be smaller).
        order_seed: ``None`` keeps the given order (the DHCD test set is sorted by class);
            a seed shuffles the images before batching.

    Returns:
        ``(logits, copy)``: logits (N, classes) in the order of ``images``, and the copy of the
        model (in train mode) whose running statistics the pass has updated.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    copy_ = copy.deepcopy(model).train()
    # Many tiny forward passes: a second torch thread costs more to wake than it saves (measured
    # 0.5 s on one thread against 18 s on two for 300 single images on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _forward_in_batches(copy_, images, batch_size, order_seed), copy_
    finally:
        torch.set_num_threads(threads)


def _forward_in_batches(
    model: nn.Module, images: Tensor, batch_size: int, order_seed: int | None
) -> Tensor:
    """Logits of ``model`` over ``images`` in mini-batches (optionally shuffled), in input order."""
    order = torch.arange(len(images))
    if order_seed is not None:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(order_seed))
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            outputs.append(model(images[order[start : start + batch_size]]))
    logits = torch.empty_like(torch.cat(outputs))
    logits[order] = torch.cat(outputs)
    return logits


# --------------------------------------------------------------------------- batch vs population


def bn_input_moments(model: nn.Module, images: Tensor, batch_size: int = 250) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-image moments of every BN layer's input, with the model in eval mode.

    Returns one ``(means, squares)`` pair per BN layer (in :func:`batch_norm_layers` order), each a
    float64 array (N, C): the mean of the input over its spatial positions, and the mean of its
    square. The statistics of any group of images follow exactly: a batch's mean is the average of
    its rows of ``means``, its (biased) variance the average of ``squares`` minus the mean squared.
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError("the model has no BN layer")
    collected: list[list[tuple[Tensor, Tensor]]] = [[] for _ in layers]

    def hook(index: int):
        def record(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            if x.dim() > 2:
                # Reduced in float64 without copying the activations (to float64, or to another
                # memory format): such 1-32 MB copies fragmented the heap so that 2,000 images
                # left up to 1.4 GB behind in the process.
                if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
                    values, axis = x.permute(0, 2, 3, 1).reshape(len(x), -1, x.shape[1]), 1
                else:
                    values, axis = x.reshape(len(x), x.shape[1], -1), 2
                size = values.shape[axis]
                squares = torch.linalg.vector_norm(values, 2, axis, dtype=torch.float64) ** 2 / size
                collected[index].append((values.mean(axis, dtype=torch.float64), squares))
            else:
                x = x.double()
                collected[index].append((x, x * x))

        return record

    handles = [layer.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [(torch.cat([m for m, _ in parts]).numpy(), torch.cat([s for _, s in parts]).numpy())
            for parts in collected]


def batch_statistics_gap(
    moments: Sequence[tuple[np.ndarray, np.ndarray]],
    batch_sizes: Sequence[int],
    draws: int = 200,
    seed: int = 0,
) -> list[dict]:
    """How far a mini-batch's statistics fall from the population's, per batch size.

    For each batch size m, ``draws`` batches of m distinct images are drawn at random; for every
    BN layer and channel the batch mean and biased batch variance (what BN uses in training) are
    compared with the population mean and variance over all images of ``moments``.

    Returns one dict per batch size: ``batch_size``, ``mean_error`` (average over draws, layers and
    channels of ``|mu_B - mu| / sigma``), ``variance_ratio`` (average of ``var_B / var``) and
    ``log_variance_error`` (average of ``|log(var_B / var)|``).
    """
    rng = np.random.default_rng(seed)
    n = len(moments[0][0])
    populations = []
    for means, squares in moments:
        mu = means.mean(0)
        populations.append((mu, squares.mean(0) - mu**2))
    rows = []
    for m in batch_sizes:
        if not 1 <= m <= n:
            raise ValueError(f"batch size {m} must lie in 1..{n} (the number of images)")
        mean_errors, ratios = [], []
        for _ in range(draws):
            pick = rng.choice(n, size=m, replace=False)
            for (means, squares), (mu, var) in zip(moments, populations):
                mu_b = means[pick].mean(0)
                var_b = squares[pick].mean(0) - mu_b**2
                mean_errors.append(np.abs(mu_b - mu) / np.sqrt(var))
                ratios.append(var_b / var)
        ratio = np.concatenate(ratios)
        with np.errstate(divide="ignore"):  # a batch of one constant image has variance 0
            log_error = float(np.abs(np.log(ratio)).mean())
        rows.append({"batch_size": int(m), "mean_error": float(np.concatenate(mean_errors).mean()),
                     "variance_ratio": float(ratio.mean()),
                     "log_variance_error": log_error})
    return rows


# --------------------------------------------------------------------------- precise BN


def recalibration_curve(
    model: nn.Module,
    train_images: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    sizes: Sequence[int],
    draws: int = 3,
    seed: int = 0,
    batch_size: int = 250,
) -> list[dict]:
    """Test accuracy after recomputing population statistics from ``n`` random training images.

    For each ``n`` in ``sizes`` and each of ``draws`` random draws (without replacement), a copy
    of ``model`` is recalibrated with :func:`bnlib.inference.recalibrate` on the drawn images
    (in batches of ``batch_size``) and evaluated in eval mode on the test images.

    Returns one dict per (size, draw): ``samples``, ``draw``, ``test_loss`` (nats),
    ``test_accuracy``.
    """
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for n in sizes:
        if not 1 <= n <= len(train_images):
            raise ValueError(f"sample size {n} must lie in 1..{len(train_images)}")
        for draw in range(draws):
            pick = torch.randperm(len(train_images), generator=generator)[:n]
            images = train_images[pick]
            batches = [images[s : s + batch_size] for s in range(0, n, batch_size)]
            calibrated = recalibrate(copy.deepcopy(model), batches)
            loss, acc = training.evaluate(calibrated, test_images, test_labels)
            rows.append({"samples": int(n), "draw": draw, "test_loss": loss, "test_accuracy": acc})
    return rows


# --------------------------------------------------------------------------- frozen BN


from bnlib.nn import FrozenBatchNorm2d  # moved


def freeze_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BN layer replaced by a :class:`FrozenBatchNorm2d` of it.

    Fine-tuning the copy in train mode leaves the normalisation exactly as in eval mode: batch
    statistics are never used and the population statistics are never updated.
    """
    frozen = copy.deepcopy(model)
    targets = {id(m) for m in batch_norm_layers(frozen)}

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if id(child) in targets:
                setattr(parent, name, FrozenBatchNorm2d.from_batch_norm(child))
            else:
                replace(child)

    replace(frozen)
    return frozen
