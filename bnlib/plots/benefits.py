"""Figures of chapter 6 (the claimed benefits of BN), as functions of
:class:`bnlib.experiments.benefits.Results` fields (plain dicts of numbers).

Networks are keyed ``"with_bn"`` / ``"without_bn"``; lists run over seeds. Points show the mean
over seeds, error bars the lowest and highest seed. Accuracies are drawn in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bnlib.plots.style import describe
from bnlib.prose import listed

__all__ = [
    "COLORS", "LABELS", "convergence_figure", "cost_figure", "depth_figure", "init_figure",
    "loss_curves_frame", "lr_sweep_figure", "regularisation_figure",
]

LABELS = {"with_bn": "with BN", "without_bn": "without BN"}
COLORS = {"with_bn": "tab:blue", "without_bn": "tab:orange"}
_VARIANT_LABELS = {"plain": "plain", "bn": "BN", "dropout": "dropout",
                   "dropout_before_bn": "dropout\nbefore BN",
                   "dropout_after_bn": "dropout\nafter BN"}


def _mean_range(ax: Axes, x: Sequence[float], per_x: Sequence[Sequence[float]], network: str,
                **kwargs) -> None:
    """Mean over seeds with min-max error bars, in percent."""
    values = [100 * np.asarray(v, dtype=float) for v in per_x]
    mean = np.array([v.mean() for v in values])
    low = mean - np.array([v.min() for v in values])
    high = np.array([v.max() for v in values]) - mean
    ax.errorbar(x, mean, yerr=[low, high], marker="o", capsize=3, color=COLORS[network],
                label=LABELS[network], **kwargs)


def _accuracy_axis(ax: Axes, chance: bool = True) -> None:
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 100)
    if chance:
        ax.axhline(10, color="grey", lw=0.8, ls=":", label="chance (10%)")
    ax.grid(alpha=0.3)


def _finish(fig: Figure, ax: Axes, xlabel: str, ylabel: str) -> Figure:
    """Label the right-hand panel, add its grid and legend, and lay the figure out."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _accuracy_panel(ax: Axes, per_network: Mapping[str, Mapping[float, Sequence[float]]],
                    xlabel: str, base: int = 10) -> None:
    """Final test accuracy (mean, seed range) against a log-scaled x, one curve per network."""
    for network, by_x in per_network.items():
        xs = sorted(by_x)
        _mean_range(ax, xs, [by_x[x] for x in xs], network)
    ax.set_xscale("log", base=base)
    ax.set_xlabel(xlabel)
    _accuracy_axis(ax)
    ax.legend(loc="lower left", fontsize="small")


def _mean_at_ends(per_network: Mapping[str, Mapping[float, Sequence[float]]], unit: str) -> str:
    """Each network's mean (in percent) at the smallest and the largest x, for a description."""
    return listed(
        f"{LABELS[n]} {100 * np.mean(by_x[min(by_x)]):.1f}% at {min(by_x):g} and "
        f"{100 * np.mean(by_x[max(by_x)]):.1f}% at {max(by_x):g} {unit}"
        for n, by_x in per_network.items())


def lr_sweep_figure(sweep: Mapping, trains_accuracy: float) -> Figure:
    """Final test accuracy against plain SGD's learning rate (log axis), with and without BN;
    crosses mark rates where a seed's loss became not finite (diverged)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for network, by_rate in sweep.items():
        nan = [lr for lr in sorted(by_rate) if any(by_rate[lr]["diverged"])]
        ax.plot(nan, [3] * len(nan), "x", color=COLORS[network], ms=9)
    ax.axhline(100 * trains_accuracy, color="black", lw=0.8, ls="--",
               label=f"trains ({trains_accuracy:.0%})")
    accuracy = {n: {lr: e["accuracy"] for lr, e in by_rate.items()}
                for n, by_rate in sweep.items()}
    _accuracy_panel(ax, accuracy, "learning rate (plain SGD, log scale)")
    best = listed(f"{LABELS[n]} {100 * max(np.mean(v) for v in by.values()):.1f}% at rate "
                  f"{max(by, key=lambda lr: np.mean(by[lr])):g}" for n, by in accuracy.items())
    diverged = sum(any(e["diverged"]) for by in sweep.values() for e in by.values())
    return describe(fig, (
        "Line chart with error bars of final test accuracy in percent against the learning "
        "rate on a logarithmic axis, one line per network, a dotted line at 10% for chance "
        f"and a dashed one at {trains_accuracy:.0%}; crosses near the bottom mark the "
        f"{diverged} network and rate pairs where a seed diverged. Best mean: {best}."))


def loss_curves_frame(sweep: Mapping, rate: float) -> Figure:
    """Test loss over steps at one learning rate, every seed a line, both networks (one frame
    of the interactive figure over the sweep); a loss that is not finite is marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for network, by_rate in sweep.items():
        entry = by_rate[rate]
        for i, loss in enumerate(entry["test_loss"]):
            loss = np.asarray(loss, dtype=float)
            ax.plot(entry["steps"], np.clip(loss, 0, 4.5), color=COLORS[network], alpha=0.8,
                    label=LABELS[network] if i == 0 else None)
            bad = ~np.isfinite(loss)
            if bad.any():
                ax.plot(np.asarray(entry["steps"])[bad], [4.4] * int(bad.sum()), "x",
                        color=COLORS[network])
    ax.axhline(np.log(10), color="grey", lw=0.8, ls=":", label="guessing (ln 10)")
    ax.set_ylim(0, 4.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("test loss (cross-entropy, nats)")
    ax.set_title(f"learning rate {rate:g}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    ends = {n: np.mean([np.asarray(loss, dtype=float)[-1] for loss in by[rate]["test_loss"]])
            for n, by in sweep.items()}
    last = listed(f"{LABELS[n]} {value:.3g}" for n, value in ends.items())
    return describe(fig, (
        f"Line chart of test loss in nats against optimizer step at learning rate {rate:g}, "
        "one line per seed, blue with BN and orange without, cut at 4.5 with crosses where "
        "the loss is not finite, and a dotted line at ln 10 for guessing; mean loss at the "
        f"last step: {last}."))


def convergence_figure(sweep: Mapping, rates: Mapping[str, Sequence[float]],
                       target: float) -> Figure:
    """Test accuracy over steps (mean over seeds), each network at the given rates (its best
    and the article's), with the target accuracy as a line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    styles = ["-", "--", ":"]
    for network, network_rates in rates.items():
        for style, rate in zip(styles, network_rates):
            entry = sweep[network][rate]
            mean = 100 * np.mean(np.asarray(entry["test_accuracy"], dtype=float), axis=0)
            ax.plot(entry["steps"], mean, style, color=COLORS[network],
                    label=f"{LABELS[network]}, rate {rate:g}")
    ax.axhline(100 * target, color="black", lw=0.8, ls="--", label=f"target {target:.0%}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize="small")
    fig.tight_layout()
    final = {(n, r): 100 * np.asarray(sweep[n][r]["test_accuracy"], dtype=float).mean(axis=0)[-1]
             for n, network_rates in rates.items() for r in network_rates}
    last = listed(f"{LABELS[n]} at rate {r:g} {value:.1f}%" for (n, r), value in final.items())
    return describe(fig, (
        "Line chart of mean test accuracy in percent against optimizer step, a solid line for "
        "each network at its first rate and a dashed one at its second, and a dashed black "
        f"line at the target {target:.0%}; at the last step: {last}."))


def init_figure(init: Mapping) -> Figure:
    """Final test accuracy against the factor that scales the default initial weights."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    _accuracy_panel(ax, init, "scale of PyTorch's default initial weights (log scale)")
    return describe(fig, (
        "Line chart with error bars of final test accuracy in percent against the factor "
        "scaling the default initial weights, on a logarithmic axis, one line per network, "
        f"and a dotted line at 10% for chance: {_mean_at_ends(init, 'times the default')}."))


def depth_figure(depth: Mapping, gradients: Mapping) -> Figure:
    """Left: final test accuracy against the number of convolutions (each depth at its better
    rate). Right: per-layer gradient norm at initialisation for the deepest stack (log axis)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    best = {n: {d: max(by_rate.values(), key=np.mean) for d, by_rate in by_depth.items()}
            for n, by_depth in depth.items()}
    _accuracy_panel(left, best, "convolutions in the plain stack", base=2)
    depths = sorted({d for by_depth in depth.values() for d in by_depth})
    left.set_xticks(depths, [str(d) for d in depths])
    for network in depth:
        deepest = max(gradients[network])
        norms = gradients[network][deepest]
        right.plot(range(1, len(norms) + 1), norms, marker=".", color=COLORS[network],
                   label=f"{LABELS[network]}, {deepest} layers")
    right.set_yscale("log")
    fig = _finish(fig, right, "convolution (1 = next to the input)",
                  "weight-gradient norm at initialisation")
    norms = listed(
        f"{LABELS[n]} {gradients[n][max(gradients[n])][0]:.3g} at the first and "
        f"{gradients[n][max(gradients[n])][-1]:.3g} at the last" for n in depth)
    return describe(fig, (
        "Two panels. Left: line chart with error bars of final test accuracy in percent "
        f"against the number of convolutions, {listed(depths)}, one line per network; "
        f"{_mean_at_ends(best, 'convolutions')}. Right: the weight-gradient norm at "
        "initialisation of each convolution of the deepest stack, on a logarithmic axis, one "
        f"line per network: {norms}."))


def regularisation_figure(regularisation: Mapping) -> Figure:
    """Left: train (last epoch, train mode) and test accuracy per variant. Right: the variance
    shift (Li et al.'s max(running/test, test/running), mean over seeds) per BN layer."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    names = list(regularisation)
    x = np.arange(len(names))
    for offset, part, color in ((-0.2, "train", "tab:gray"), (0.2, "test", "tab:green")):
        means = [100 * np.mean(regularisation[n][part]) for n in names]
        left.bar(x + offset, means, width=0.4, color=color, label=f"{part} accuracy")
    left.set_xticks(x, [_VARIANT_LABELS.get(n, n) for n in names], fontsize="small")
    left.set_ylabel("accuracy (%), mean over seeds")
    low = min(100 * min(min(e["train"]), min(e["test"])) for e in regularisation.values())
    left.set_ylim(max(0, low - 5), 112)
    left.legend(loc="upper center", ncol=2, fontsize="small")
    for name in names:
        shifts = [layers for layers in regularisation[name]["shift"] if layers]
        if shifts:
            mean = np.mean(np.asarray(shifts, dtype=float), axis=0)
            right.plot(range(1, len(mean) + 1), mean, marker="o",
                       label=_VARIANT_LABELS.get(name, name).replace("\n", " "))
    right.axhline(1, color="grey", lw=0.8, ls=":")
    right.set_xticks([1, 2, 3])
    fig = _finish(fig, right, "BN layer", "variance shift (ratio, 1 = none)")
    bars = listed(f"{_VARIANT_LABELS.get(n, n).replace(chr(10), ' ')} "
                  f"{100 * np.mean(regularisation[n]['train']):.1f}% and "
                  f"{100 * np.mean(regularisation[n]['test']):.1f}%" for n in names)
    return describe(fig, (
        "Two panels. Left: bar chart of train and test accuracy in percent, mean over seeds, "
        f"a grey and a green bar per network variant: {bars}. Right: the variance shift of "
        "each batch norm layer, one line per variant with batch norm, and a dotted line at 1 "
        "for no shift."))


def cost_figure(cost: Mapping) -> Figure:
    """Time of a training step and of an inference pass with BN, and of an inference pass with
    BN folded, each divided by the network without BN timed interleaved with it (1 = no cost)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ratios = [cost["train_ms"]["with_bn"] / cost["train_ms"]["without_bn"],
              cost["inference_ms"]["with_bn"] / cost["inference_ms"]["without_bn"],
              cost["folded_ms"]["folded"] / cost["folded_ms"]["without_bn"]]
    labels = [f"SGD step, with BN\n({cost['batch_size']} images)",
              f"inference, with BN\n({cost['inference_batch']} images)",
              f"inference, BN folded\n({cost['inference_batch']} images)"]
    ax.bar(labels, ratios, color=[COLORS["with_bn"], COLORS["with_bn"], "tab:purple"])
    ax.axhline(1, color="black", lw=0.8, ls="--", label="network without BN")
    ax.set_ylabel("time / time without BN")
    ax.tick_params(axis="x", labelsize="small")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return describe(fig, (
        "Bar chart of three times divided by the same time without BN, with a dashed line at "
        f"1: a training step with BN {ratios[0]:.2f}, inference with BN {ratios[1]:.2f}, and "
        f"inference with BN folded into the convolutions {ratios[2]:.2f}."))
