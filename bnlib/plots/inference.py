"""Figures of chapter 03 (inference-time statistics): running averages against the population,
accuracy in train vs eval mode, batch vs population statistics, and precise BN's sample curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnlib.plots.style import describe
from bnlib.prose import listed
from bnlib.running import running_average

__all__ = ["batch_gap_figure", "mode_gap_figure", "recalibration_figure", "running_average_frame",
           "train_mode_accuracy_figure"]


def _momentum_label(momentum: float | None) -> str:
    return "cumulative (momentum=None)" if momentum is None else f"momentum={momentum:g}"


def running_average_frame(trace: Mapping, channel: int, momentum: float | None) -> Figure:
    """The first BN layer's running mean and variance of one channel over training steps.

    ``trace`` is a :class:`bnlib.probes.FirstLayerStatisticsProbe` result. Grey dots: the
    statistic of each mini-batch (unbiased variance, as PyTorch feeds it); black: the exact
    population value with that step's weights; colour: PyTorch's running average of the batch
    values with ``momentum`` (from 0 for the mean and 1 for the variance, as PyTorch starts).
    Axis limits depend on the data only, so frames for different momenta line up.
    """
    steps = np.arange(1, len(trace["batch_mean"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.6), constrained_layout=True)
    ends = []
    for ax, key, initial, label in ((axes[0], "mean", 0.0, "mean"), (axes[1], "var", 1.0, "variance")):
        batch = np.asarray(trace[f"batch_{key}"])[:, channel]
        population = np.asarray(trace[f"population_{key}"])[:, channel]
        running = running_average(batch, momentum, initial)
        ends.append(f"running {label} {running[-1]:.3g} against the population's "
                    f"{population[-1]:.3g}")
        ax.plot(steps, batch, ".", color="0.65", ms=3, label="mini-batch statistic")
        ax.plot(steps, population, color="black", lw=2, label="population (all 17,000 images)")
        ax.plot(steps, running, color="tab:orange", lw=1.6, label=f"running average, {_momentum_label(momentum)}")
        low, high = np.percentile(np.concatenate([batch, population]), [0.5, 99.5])
        pad = 0.25 * (high - low)
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("training step (mini-batch of 32)")
        ax.set_ylabel(f"{label} of channel {channel} (pre-BN activation)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    return describe(fig, (
        f"Two line charts over {len(steps)} training steps of channel {channel}'s mean (left) "
        "and variance (right) in the first batch norm layer: grey dots for each mini-batch's "
        "value, a black line for the population's, an orange line for the running average "
        f"with {_momentum_label(momentum)}; after the last step, {listed(ends)}."))


def train_mode_accuracy_figure(rows: Sequence[Mapping], eval_accuracy: float) -> Figure:
    """Test accuracy when the network is (wrongly) run in train mode, against batch size.

    ``rows``: dicts with ``batch_size``, ``order`` (a label, one line per order) and
    ``accuracy`` (fraction); ``eval_accuracy``: the same network in eval mode (dashed line).
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    for order in dict.fromkeys(r["order"] for r in rows):
        mine = [r for r in rows if r["order"] == order]
        ax.plot([r["batch_size"] for r in mine], [100 * r["accuracy"] for r in mine], "o-",
                label=f"train mode, test set {order}")
    ax.axhline(100 * eval_accuracy, color="black", ls="--", label="eval mode (any batch size)")
    sizes = sorted({r["batch_size"] for r in rows})
    smallest = [f"{r['order']} {100 * r['accuracy']:.1f}%" for r in rows
                if r["batch_size"] == sizes[0]]
    largest = [f"{r['order']} {100 * r['accuracy']:.1f}%" for r in rows
               if r["batch_size"] == sizes[-1]]
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("batch size at test time")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return describe(fig, (
        f"Line chart of test accuracy in percent against the test batch size, {sizes[0]} to "
        f"{sizes[-1]} on a logarithmic axis, one line per order of the test set in train "
        f"mode, and a dashed line at {100 * eval_accuracy:.1f}% for eval mode; at batch size "
        f"{sizes[0]}: {listed(smallest)}; at {sizes[-1]}: {listed(largest)}."))


def batch_gap_figure(rows: Sequence[Mapping]) -> Figure:
    """How far mini-batch statistics fall from the population's, against batch size.

    ``rows`` from :func:`bnlib.batch_statistics.batch_statistics_gap`: left, the mean error
    ``|mu_B - mu| / sigma``; right, the ratio of the biased batch variance to the population
    variance (1: no bias).
    """
    sizes = [r["batch_size"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.6), constrained_layout=True)
    left.plot(sizes, [r["mean_error"] for r in rows], "o-")
    left.set_ylabel("mean |batch mean - population mean| / population std")
    right.plot(sizes, [r["variance_ratio"] for r in rows], "o-", color="tab:red")
    right.axhline(1.0, color="black", ls="--", lw=1)
    right.set_ylabel("mean (batch variance / population variance)")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("batch size m (images)")
        ax.grid(alpha=0.3)
    left.set_yscale("log")
    first, last = rows[0], rows[-1]
    return describe(fig, (
        f"Two line charts against the batch size m, {sizes[0]} to {sizes[-1]} on a logarithmic "
        "axis. Left, on a logarithmic axis: how far the batch mean falls from the population "
        f"mean in population standard deviations, {first['mean_error']:.3g} at m = "
        f"{sizes[0]} and {last['mean_error']:.3g} at m = {sizes[-1]}. Right: the biased batch "
        f"variance divided by the population variance, {first['variance_ratio']:.3g} and "
        f"{last['variance_ratio']:.3g}, with a dashed line at 1."))


def mode_gap_figure(rows: Sequence[Mapping]) -> Figure:
    """Test accuracy of networks trained at different batch sizes, in train vs eval mode.

    ``rows``: dicts with ``batch_size`` (training batch size), ``train_mode_accuracy`` (test set
    in shuffled batches of that size, train mode) and ``eval_mode_accuracy``.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    x = np.arange(len(rows))
    width = 0.38
    ax.bar(x - width / 2, [100 * r["train_mode_accuracy"] for r in rows], width,
           label="train mode (batch statistics, batches of the training size)")
    ax.bar(x + width / 2, [100 * r["eval_mode_accuracy"] for r in rows], width,
           label="eval mode (running averages)")
    ax.set_xticks(x, [f"batch {r['batch_size']}" for r in rows])
    ax.set_xlabel("batch size the network was trained with")
    ax.set_ylabel("test accuracy (%)")
    low = min(min(r["train_mode_accuracy"], r["eval_mode_accuracy"]) for r in rows)
    ax.set_ylim(max(0.0, 100 * low - 10), 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    pairs = [f"trained with batches of {r['batch_size']}, {100 * r['train_mode_accuracy']:.1f}% "
             f"in train mode and {100 * r['eval_mode_accuracy']:.1f}% in eval mode" for r in rows]
    return describe(fig, (
        "Bar chart of test accuracy in percent, a pair of bars per training batch size, the "
        f"left bar in train mode and the right in eval mode: {listed(pairs)}."))


def recalibration_figure(rows: Sequence[Mapping], running_accuracy: float, full_accuracy: float,
                         full_samples: int) -> Figure:
    """Test accuracy after recomputing BN statistics from n training images (precise BN).

    ``rows`` from :func:`bnlib.experiments.inference.recalibration_curve` (dots: draws; line: their median);
    horizontal lines: the running averages kept during training, and all ``full_samples`` images.
    """
    sizes = sorted({r["samples"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    for r in rows:
        ax.plot(r["samples"], 100 * r["test_accuracy"], "o", color="tab:blue", alpha=0.5, ms=4)
    medians = [np.median([r["test_accuracy"] for r in rows if r["samples"] == n]) for n in sizes]
    ax.plot(sizes, 100 * np.asarray(medians), "-", color="tab:blue", label="recalibrated on n images (median of draws)")
    ax.axhline(100 * running_accuracy, color="tab:orange", ls="--", label="running averages from training")
    ax.axhline(100 * full_accuracy, color="black", ls=":", label=f"recalibrated on all {full_samples:,} images")
    ax.set_xscale("log")
    ax.set_xlabel("training images used to recompute the statistics, n")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return describe(fig, (
        "Scatter of test accuracy in percent against the number n of training images the "
        f"statistics are recomputed from, {sizes[0]:,} to {sizes[-1]:,} on a logarithmic axis, "
        f"a dot per draw and a line through their medians, {100 * medians[0]:.1f}% at the "
        f"fewest images and {100 * medians[-1]:.1f}% at the most; a dashed line at "
        f"{100 * running_accuracy:.1f}% for the running averages and a dotted line at "
        f"{100 * full_accuracy:.1f}% for all {full_samples:,} images."))
