"""Chapter 03's experiment: the statistics a trained batch norm network uses at inference.

The book's network with BN (the article's three convolutions) is trained once; the chapter then
measures, on that network and the DHCD digits, how the running averages track the population,
what train mode at inference costs, what serving in train mode does to the buffers, how Keras's
and PyTorch's running statistics differ, precise BN, batch against population statistics, train
vs eval mode after training with small batches, folding and frozen BN.

:data:`SETTINGS` holds the full and the short setting (``BNBOOK_QUICK=1``); the measuring
functions return plain dicts and lists; :func:`findings` turns them into the numbers and
verdict words the chapter glues.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bnlib import training
from bnlib.inference import batch_norm_layers, recalibrate
from bnlib.probes import FinalWeightsProbe
from bnlib.prose import comparison, count_of
from bnlib.running import CONVENTIONS, running_average, running_statistics
from bnlib.settings import full_or_quick, torch_threads

__all__ = [
    "BATCH_SIZES",
    "GAP_SIZES",
    "MOMENTA",
    "SETTINGS",
    "batch_statistics_only",
    "findings",
    "keras_versus_torch",
    "largest_difference",
    "momentum_choices",
    "network_config",
    "precise_bn",
    "precise_effect",
    "recalibration_curve",
    "spread_word",
    "trend_word",
    "rule_differences",
    "running_var_ratios",
    "setting",
    "small_batch_runs",
    "tracking_errors",
    "train_mode_accuracy",
    "train_versus_eval",
    "versus_eval",
]

#: Full setting (the published numbers) and short setting (``BNBOOK_QUICK=1``).
SETTINGS = {
    "full": {"epochs": 3, "train_subset": None, "trace_steps": 1000, "check_stride": 1,
             "precise_images": None, "sizes": (10, 100, 1000, 10000), "draws": 3,
             "gap_images": 8000, "small_epochs": 2, "small_images": 4000, "fold_repeats": 20,
             "keras_images": None},
    "short": {"epochs": 2, "train_subset": 3000, "trace_steps": 188, "check_stride": 3,
              "precise_images": 2000, "sizes": (10, 100, 1000), "draws": 2,
              "gap_images": 2000, "small_epochs": 1, "small_images": 1000, "fold_repeats": 3,
              "keras_images": 9600},
}
#: Momenta (PyTorch's meaning; None: cumulative average) the chapter compares.
MOMENTA = (None, 0.001, 0.01, 0.1, 0.5)
#: Test batch sizes of the train-mode bug, and of the batch-statistics gap.
BATCH_SIZES = (1, 2, 8, 32, 256)
GAP_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def setting() -> dict:
    """The full setting, or the short one under ``BNBOOK_QUICK=1``, with its ``name``."""
    name = full_or_quick("full", "short")
    return {"name": name, **SETTINGS[name]}


def network_config(chosen: Mapping[str, Any]) -> training.RunConfig:
    """The network the chapter studies: the article's BN network, SGD with momentum 0.9 and
    learning rate 0.01, batches of 32, seed 5842 (the article's)."""
    return training.RunConfig(
        model_kwargs={"batch_norm": True}, optimizer="momentum", lr=0.01, momentum=0.9,
        batch_size=32, seed=5842, epochs=chosen["epochs"], train_subset=chosen["train_subset"])


# --------------------------------------------------------------------------- running averages


def rule_differences(bn: nn.Module, batches: Sequence[Tensor], keras_momentum: float = 0.9) -> dict:
    """How closely :func:`bnlib.running.running_statistics` reproduces ``bn``'s buffers after
    ``bn`` saw ``batches`` in train mode, and how far Keras's rule with ``keras_momentum`` lies
    from PyTorch's with ``1 - keras_momentum`` (largest absolute differences)."""
    mean, var = running_statistics(batches, "pytorch", momentum=bn.momentum)
    keras_mean, _ = running_statistics(batches, "keras", momentum=keras_momentum)
    torch_diff = max(np.abs(mean - bn.running_mean.double().numpy()).max(),
                     np.abs(var - bn.running_var.double().numpy()).max())
    return {"torch_rule_diff": float(torch_diff),
            "keras_rule_diff": float(np.abs(keras_mean - mean).max())}


def momentum_choices() -> dict:
    """Slider labels -> momenta of :data:`MOMENTA` (``"None (cumulative)"`` for None)."""
    return {("None (cumulative)" if m is None else f"{m:g}"): m for m in MOMENTA}


def tracking_errors(trace: Mapping[str, Sequence]) -> dict:
    """How well running averages of each momentum in :data:`MOMENTA` track the population mean.

    ``trace``: a :class:`bnlib.probes.FirstLayerStatisticsProbe` result. The channel studied
    is the one whose population mean drifts most (in population standard deviations); errors are
    mean absolute differences over the second half of the recorded steps (after the start-up).

    Returns ``channel``, ``settle`` (first step compared), ``steps``, ``errors`` (momentum ->
    error), ``batch_noise`` (a single batch mean's error) and ``trace_match`` (largest
    difference between the recorded running means and the rule applied to the batch means).
    """
    batch_mean = np.asarray(trace["batch_mean"])
    population = np.asarray(trace["population_mean"])
    spread = np.asarray(trace["population_var"]).mean(0) ** 0.5
    channel = int(np.argmax(np.abs(population[-1] - population[0]) / spread))
    settle = len(batch_mean) // 2
    target = population[settle:, channel]
    errors = {m: float(np.abs(running_average(batch_mean[:, channel], m)[settle:] - target).mean())
              for m in MOMENTA}
    recorded = np.asarray(trace["running_mean"])
    match = float(np.abs(running_average(batch_mean, trace["momentum"]) - recorded).max())
    return {"channel": channel, "settle": settle, "steps": len(batch_mean), "errors": errors,
            "batch_noise": float(np.abs(batch_mean[settle:, channel] - target).mean()),
            "trace_match": match}


# --------------------------------------------------------------------------- Keras and PyTorch


def keras_versus_torch(conv: nn.Module, images: Tensor, batch_size: int = 32) -> dict:
    """Feed the same batches, ``conv``'s outputs for consecutive batches of ``images``, to
    ``keras.layers.BatchNormalization`` (Keras 3 on the torch backend, defaults: momentum 0.99,
    epsilon 1e-3) and ``torch.nn.BatchNorm2d`` with the equivalent momentum 0.01, both in
    training mode, and compare what they store.

    Also feeds them to ``torch.nn.BatchNorm2d(momentum=0.99)``, Keras's number copied literally,
    and measures the eval-mode output of PyTorch's layer with Keras's statistics when ``eps`` is
    left at PyTorch's 1e-5 instead of Keras's 1e-3.

    Returns per-channel float64 arrays ``keras_mean``, ``keras_var``, ``torch_mean``,
    ``torch_var``, ``rule_mean``, ``rule_var`` (:func:`bnlib.running.running_statistics`, Keras
    convention), ``literal_mean``, ``population_mean``, ``population_std`` (over every value
    fed), and ``steps`` (batches), ``m`` (values per channel in one batch), ``keras_eps``,
    ``torch_eps`` and ``eps_effect`` (largest absolute output difference, last batch).
    """
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    def batches():
        with torch.no_grad():
            for x in images.split(batch_size):
                if len(x) == batch_size:
                    yield conv(x)

    keras_bn = keras.layers.BatchNormalization(axis=1)
    torch_bn = nn.BatchNorm2d(conv.out_channels, momentum=1 - keras_bn.momentum)
    literal = nn.BatchNorm2d(conv.out_channels, momentum=keras_bn.momentum)
    total, squares, count, steps = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for x in batches():
            keras_bn(x, training=True)
            torch_bn(x)
            literal(x)
            total = total + x.double().sum((0, 2, 3))
            squares = squares + (x.double() ** 2).sum((0, 2, 3))
            count, steps, last = count + x.numel() // x.shape[1], steps + 1, x
    rule_mean, rule_var = running_statistics(batches(), "keras")
    mean = total / count
    out = {"keras_mean": keras_bn.moving_mean.value.detach().double().numpy(),
           "keras_var": keras_bn.moving_variance.value.detach().double().numpy(),
           "torch_mean": torch_bn.running_mean.double().numpy(),
           "torch_var": torch_bn.running_var.double().numpy(),
           "rule_mean": rule_mean, "rule_var": rule_var,
           "literal_mean": literal.running_mean.double().numpy(),
           "population_mean": mean.numpy(),
           "population_std": (squares / count - mean**2).sqrt().numpy(),
           "steps": steps, "m": last.numel() // last.shape[1],
           "momentum": keras_bn.momentum, "keras_eps": keras_bn.epsilon, "torch_eps": torch_bn.eps}
    out["eps_effect"] = _eps_effect(out, last)
    return out


def _eps_effect(stats: Mapping[str, Any], x: Tensor) -> float:
    """Largest output difference of eval-mode BN with Keras's statistics, eps 1e-5 vs 1e-3."""
    mean = torch.as_tensor(stats["keras_mean"]).view(1, -1, 1, 1)
    var = torch.as_tensor(stats["keras_var"]).view(1, -1, 1, 1)
    x = x.double()
    return float(((x - mean) * (torch.rsqrt(var + CONVENTIONS["pytorch"]["eps"])
                                - torch.rsqrt(var + CONVENTIONS["keras"]["eps"]))).abs().max())


# --------------------------------------------------------------------------- train vs eval mode


def batch_statistics_only(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BN layers keep no running statistics, so that they normalise
    every batch with its own statistics in eval mode too: train mode's normalisation, without
    train mode's buffer updates (PyTorch uses batch statistics when the buffers are None)."""
    copied = copy.deepcopy(model)
    for bn in batch_norm_layers(copied):
        bn.running_mean, bn.running_var, bn.num_batches_tracked = None, None, None
        bn.track_running_stats = False
    return copied


def train_mode_accuracy(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int, order_seed: int | None
) -> float:
    """Accuracy (fraction) of ``model`` normalising each test batch with its own statistics, as
    when ``model.eval()`` is forgotten; ``order_seed`` None keeps the stored order, a seed
    shuffles first. One torch thread (many tiny passes)."""
    order = torch.arange(len(images))
    if order_seed is not None:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(order_seed))
    with torch_threads(1):
        return training.accuracy(batch_statistics_only(model), images[order], labels[order],
                                 batch_size)


def train_versus_eval(model: nn.Module, images: Tensor, labels: Tensor) -> dict:
    """Train-mode accuracy for every batch size of :data:`BATCH_SIZES`, on the images shuffled
    and in their stored order, and eval-mode accuracy: ``{"rows": [{"order", "batch_size",
    "accuracy"}], "eval": accuracy}``."""
    rows = [{"order": order, "batch_size": size,
             "accuracy": train_mode_accuracy(model, images, labels, size, seed)}
            for order, seed in (("shuffled", 0), ("sorted by class", None))
            for size in BATCH_SIZES]
    return {"rows": rows, "eval": training.accuracy(model, images, labels)}


def versus_eval(value: float, reference: float) -> str:
    """"0.53 points below", "0.53 points above" or "exactly as in" (accuracies as fractions;
    the words read before "eval mode")."""
    difference = 100 * (value - reference)
    if difference == 0:
        return "exactly as in"
    return f"{abs(difference):.2f} points {comparison(difference, 0, 'below', 'above')}"


def precise_effect(accuracy: float, running_accuracy: float, loss: float,
                   running_loss: float) -> str:
    """What precise BN did to the test accuracy and loss against the running averages, worded
    to follow "precise BN"."""
    better = (accuracy > running_accuracy) + (loss < running_loss)
    worse = (accuracy < running_accuracy) + (loss > running_loss)
    if better == 2:
        return "helped on both measures"
    if worse == 2:
        return "did worse than the running averages on both measures"
    if better == worse == 0:
        return "changed neither measure"
    return "helped on one measure and not on the other"


#: A batch that sees at least this share of the population variance, at every batch size,
#: misses only a small part of it: the part between images.
MOST_OF_THE_SPREAD = 0.9


def spread_word(smallest_ratio: float) -> str:
    """Where a channel's spread lies, from the smallest ratio of a batch's biased variance to
    the population's over the batch sizes (one image included)."""
    if smallest_ratio >= MOST_OF_THE_SPREAD:
        return ("in a convolutional channel most of the spread is between the positions of one "
                "image, which every batch sees, and only a small part between images")
    return "a large part of the spread is between images, which a batch of few images misses"


def trend_word(slope: float) -> str:
    """"falls", "grows" or "stays flat": a fitted exponent of the batch size, as a verb."""
    return comparison(slope, 0.0, "falls", "grows", "stays flat")


def running_var_ratios(before: nn.Module, after: nn.Module) -> np.ndarray:
    """Mean over channels of ``running_var`` after / before, one value per BN layer."""
    return np.array([float((b.running_var / a.running_var).mean())
                     for a, b in zip(batch_norm_layers(before), batch_norm_layers(after))])


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




def small_batch_runs(config: training.RunConfig, chosen: Mapping[str, Any], images: Tensor,
                     labels: Tensor, batch_sizes: Sequence[int] = (4, 32)) -> list[dict]:
    """The network trained with each training batch size (learning rate scaled by size / 32,
    the same epochs), tested in train mode on shuffled test batches of that size and in eval
    mode: rows ``batch_size``, ``train_mode_accuracy``, ``eval_mode_accuracy``."""
    small = config.replace(epochs=chosen["small_epochs"], train_subset=chosen["small_images"])
    configs = [small.replace(batch_size=b, lr=config.lr * b / 32) for b in batch_sizes]
    histories = training.run_many(configs, probes=[[FinalWeightsProbe()]] * len(configs))
    rows = []
    for run_config, history in zip(configs, histories):
        net = training.model_from_history(history)
        size = run_config.batch_size
        rows.append({"batch_size": size,
                     "train_mode_accuracy": train_mode_accuracy(net, images, labels, size, 0),
                     "eval_mode_accuracy": training.accuracy(net, images, labels)})
    return rows


def largest_difference(model: nn.Module, other: nn.Module, images: Tensor) -> float:
    """Largest absolute output difference of two models in eval mode over ``images`` (500 at a
    time: the whole test set at once would take about 1 GB)."""
    model.eval(), other.eval()
    with torch.no_grad():
        return max(float((model(x) - other(x)).abs().max()) for x in images.split(500))


def precise_bn(model: nn.Module, train_images: Tensor, images: Tensor, labels: Tensor) -> dict:
    """Test loss and accuracy with the running averages and after :func:`recalibrate` on
    ``train_images`` (in batches of 250): ``images`` (count), ``accuracy``, ``loss``,
    ``running_accuracy``, ``running_loss``."""
    precise = recalibrate(copy.deepcopy(model), train_images.split(250))
    loss, accuracy = training.evaluate(precise, images, labels)
    running_loss, running_accuracy = training.evaluate(model, images, labels)
    return {"images": len(train_images), "accuracy": accuracy, "loss": loss,
            "running_accuracy": running_accuracy, "running_loss": running_loss}


# --------------------------------------------------------------------------- findings


def _keras_findings(ports: Mapping[str, Any]) -> dict:
    m, std = ports["m"], ports["population_std"]
    start = ports["momentum"] ** ports["steps"]  # the weight the initial variance 1 keeps
    return {
        "keras_mean_diff": float(np.abs(ports["keras_mean"] - ports["torch_mean"]).max()),
        "keras_var_ratio": float(np.mean((ports["keras_var"] - start) / (ports["torch_var"] - start))),
        "keras_start_weight": start, "keras_steps": ports["steps"],
        "keras_m": int(m), "keras_bias": (m - 1) / m, "dense_bias": 31 / 32,
        "keras_rule_real": float(max(np.abs(ports["rule_mean"] - ports["keras_mean"]).max(),
                                     np.abs(ports["rule_var"] - ports["keras_var"]).max())),
        "proper_error": float(np.mean(np.abs(ports["torch_mean"] - ports["population_mean"]) / std)),
        "literal_error": float(np.mean(np.abs(ports["literal_mean"] - ports["population_mean"]) / std)),
        "eps_effect": float(ports["eps_effect"]),
        "keras_eps": float(ports["keras_eps"]), "torch_eps": float(ports["torch_eps"]),
    }


def _train_mode_findings(result: Mapping[str, Any]) -> dict:
    reference = result["eval"]
    out = {"check_accuracy": reference}
    names = {"shuffled": "shuffled", "sorted by class": "sorted"}
    for row in result["rows"]:
        key = f"{names[row['order']]}_{row['batch_size']}"
        out[f"train_{key}"] = row["accuracy"]
        out[f"vs_{key}"] = versus_eval(row["accuracy"], reference)
    worst = min(result["rows"], key=lambda r: r["accuracy"])
    above = sum(r["accuracy"] > reference for r in result["rows"])
    out |= {"worst_label": f"batches of {worst['batch_size']} {worst['order']}",
            "worst_accuracy": worst["accuracy"],
            "worst_vs": versus_eval(worst["accuracy"], reference),
            "above_phrase": count_of(above, len(result["rows"]), "settings")}
    return out


def _precise_findings(precise: Mapping[str, Any], curve: Sequence[Mapping[str, Any]]) -> dict:
    sizes = sorted({r["samples"] for r in curve})
    by_size = {n: [r["test_accuracy"] for r in curve if r["samples"] == n] for n in sizes}
    return {
        "precise_accuracy": precise["accuracy"], "precise_loss": precise["loss"],
        "n_precise": precise["images"], "check_loss": precise["running_loss"],
        "precise_word": comparison(precise["accuracy"], precise["running_accuracy"],
                                   "lower than", "higher than", "the same as"),
        "precise_loss_word": comparison(precise["loss"], precise["running_loss"],
                                        "lower", "higher", "the same"),
        "precise_effect": precise_effect(precise["accuracy"], precise["running_accuracy"],
                                         precise["loss"], precise["running_loss"]),
        "n_small": sizes[0], "acc_small_min": min(by_size[sizes[0]]),
        "acc_small_max": max(by_size[sizes[0]]), "draws": len(by_size[sizes[0]]),
        "n_enough": 1000, "acc_1000_min": min(by_size[1000]), "acc_1000_max": max(by_size[1000]),
        "spread_1000": max(abs(a - precise["accuracy"]) for a in by_size[1000]),
    }


def _gap_findings(gap: Sequence[Mapping[str, float]]) -> dict:
    by_size = {r["batch_size"]: r for r in gap}
    out = {}
    for m in (1, 4, 32, 256):
        out[f"gap_mean_{m}"] = by_size[m]["mean_error"]
        out[f"gap_var_{m}"] = by_size[m]["variance_ratio"]
    sizes = np.log([r["batch_size"] for r in gap])
    out["gap_slope"] = float(np.polyfit(sizes, np.log([r["mean_error"] for r in gap]), 1)[0])
    out["gap_trend"] = trend_word(out["gap_slope"])
    ratios = [r["variance_ratio"] for r in gap]
    return out | {"var_ratio_min": min(ratios), "var_ratio_max": max(ratios),
                  "spread_word": spread_word(min(ratios))}


def _mode_findings(rows: Sequence[Mapping[str, float]]) -> dict:
    out = {}
    for row in rows:
        b = row["batch_size"]
        out[f"mode_train_{b}"] = row["train_mode_accuracy"]
        out[f"mode_eval_{b}"] = row["eval_mode_accuracy"]
        out[f"mode_gap_{b}"] = abs(row["eval_mode_accuracy"] - row["train_mode_accuracy"])
        out[f"mode_gap_points_{b}"] = 100 * out[f"mode_gap_{b}"]  # percentage points
        out[f"mode_word_{b}"] = comparison(row["eval_mode_accuracy"], row["train_mode_accuracy"],
                                           "lower", "higher", "equal")
    small, large = min(r["batch_size"] for r in rows), max(r["batch_size"] for r in rows)
    out["mode_gap_trend"] = comparison(out[f"mode_gap_{small}"], out[f"mode_gap_{large}"],
                                       "smaller", "larger", "the same")
    return out


def _speed_findings(speed: Mapping[str, Any]) -> dict:
    out = {"speed_repeats": speed["repeats"]}
    for row in speed["results"]:
        b = row["batch_size"]
        out |= {f"speedup_{b}": row["speedup"], f"folded_ms_{b}": row["folded_ms"],
                f"unfolded_ms_{b}": row["unfolded_ms"]}
    return out


def findings(results: Mapping[str, Any]) -> dict:
    """The numbers and words chapter 03 glues, from the chapter's measurements: ``setting``,
    ``counts`` (``n_train``, ``n_test``, ``n_check``), ``rule`` (:func:`rule_differences`),
    ``eval_accuracy``, ``tracking`` (:func:`tracking_errors`), ``keras``
    (:func:`keras_versus_torch`), ``train_mode`` (:func:`train_versus_eval`),
    ``served_accuracy``, ``served_ratios`` (:func:`running_var_ratios`), ``instance_diff``,
    ``precise`` (:func:`precise_bn`), ``curve`` (:func:`recalibration_curve`), ``gap``
    (:func:`bnlib.batch_statistics.batch_statistics_gap`), ``mode_rows``
    (:func:`small_batch_runs`), ``fold_difference``, ``speed``
    (:func:`bnlib.timing.fold_speedup`) and ``frozen`` (accuracies ``unfrozen`` and ``frozen``
    after a train-mode pass over ``zeros`` images in batches of ``batch_size``).
    """
    chosen, tracking = results["setting"], results["tracking"]
    errors = tracking["errors"]
    best = min(errors, key=errors.get)
    out = dict(results["counts"])
    out |= {"epochs": chosen["epochs"],
            "train_images": chosen["train_subset"] or results["counts"]["n_train"],
            "eval_accuracy": results["eval_accuracy"], **results["rule"],
            "channel": tracking["channel"], "settle": tracking["settle"],
            "trace_steps": tracking["steps"], "trace_match": tracking["trace_match"],
            "err_cum": errors[None], "err_0001": errors[0.001], "err_001": errors[0.01],
            "err_01": errors[0.1], "err_05": errors[0.5], "batch_noise": tracking["batch_noise"],
            "best_momentum": next(k for k, v in momentum_choices().items() if v == best),
            "served_accuracy": results["served_accuracy"],
            "served_word": comparison(results["served_accuracy"], results["eval_accuracy"],
                                      "went down", "went up", "stayed the same,"),
            "instance_diff": results["instance_diff"],
            "small_epochs": chosen["small_epochs"], "small_images": chosen["small_images"],
            "fold_difference": results["fold_difference"]}
    for i, ratio in enumerate(results["served_ratios"], 1):
        out[f"served_var_ratio_{i}"] = float(ratio)
    frozen = results["frozen"]
    out |= {"unfrozen_accuracy": frozen["unfrozen"], "frozen_accuracy": frozen["frozen"],
            "n_zeros": frozen["zeros"],
            "zeros_weight": 1 - 0.9 ** -(-frozen["zeros"] // frozen["batch_size"]),
            "unfrozen_word": comparison(frozen["unfrozen"], results["eval_accuracy"],
                                        "fell to", "rose to", "stayed at")}
    out |= _keras_findings(results["keras"]) | _train_mode_findings(results["train_mode"])
    out |= _precise_findings(results["precise"], results["curve"]) | _gap_findings(results["gap"])
    return out | _mode_findings(results["mode_rows"]) | _speed_findings(results["speed"])
