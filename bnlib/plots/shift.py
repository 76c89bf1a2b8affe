"""Figures of chapter 01 (internal covariate shift): accuracy over steps, percentile bands of a
sigmoid's input, Santurkar et al.'s gradient ICS and the loss landscape along the gradient.

Every function takes a mapping from a network's name (the legend label) to its measurements:
either a run's history (anything with ``initial`` and ``step_evals``, as
:class:`bnlib.training.History`) or a probe's result (a dict of lists with a ``"step"`` list, as
``history.probes[name]``), and returns a ``matplotlib.figure.Figure``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bnlib.plots.style import describe, panel_grid
from bnlib.prose import listed

__all__ = [
    "accuracy_over_steps",
    "figure1",
    "ics_over_steps",
    "landscape_over_steps",
    "percentile_bands",
]

_COLORS = {"standard": "tab:blue", "BN": "tab:orange", "noisy BN": "tab:green"}


def _color(name: str, index: int) -> str:
    return _COLORS.get(name, f"C{index}")


def _accuracy_curve(history: Any) -> tuple[list[float], list[float]]:
    """Test accuracy over steps: the value before training (step 0), then ``step_evals``."""
    steps = [0.0] + [float(e["step"]) for e in history.step_evals]
    accuracy = [float(history.initial["test_accuracy"])]
    accuracy += [float(e["test_accuracy"]) for e in history.step_evals]
    return steps, accuracy


def _draw_accuracy(ax: Axes, histories: Mapping[str, Any]) -> None:
    for i, (name, history) in enumerate(histories.items()):
        if not history.step_evals:
            raise ValueError(f"{name!r} has no step evaluations: run it with eval_every_steps set")
        steps, accuracy = _accuracy_curve(history)
        ax.plot(steps, [100 * a for a in accuracy], color=_color(name, i), label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def _final_accuracies(histories: Mapping[str, Any]) -> str:
    """``"standard 91.2%, BN 97.0%"``: each network's test accuracy at its last evaluation."""
    return listed(f"{name} {100 * _accuracy_curve(h)[1][-1]:.1f}%" for name, h in histories.items())


def _final_bands(results: Mapping[str, Mapping[str, list[float]]]) -> str:
    """Each network's median and 15th-85th percentile range at the last step."""
    return listed(f"{name}: median {r['p50'][-1]:.3g}, band {r['p15'][-1]:.3g} to "
                  f"{r['p85'][-1]:.3g}" for name, r in results.items())


def _draw_band(ax: Axes, result: Mapping[str, list[float]], color: str, title: str) -> None:
    steps = result["step"]
    ax.fill_between(steps, result["p15"], result["p85"], color=color, alpha=0.25,
                    label="15th-85th percentile")
    ax.plot(steps, result["p15"], color=color, lw=0.8)
    ax.plot(steps, result["p85"], color=color, lw=0.8)
    ax.plot(steps, result["p50"], color=color, lw=1.8, label="median")
    ax.set_title(title)
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)


def accuracy_over_steps(histories: Mapping[str, Any]) -> Figure:
    """Test accuracy (%) against training step, one line per network."""
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    _draw_accuracy(ax, histories)
    ax.set_title("Test accuracy during training")
    fig.tight_layout()
    return describe(fig, (
        f"Line chart of test accuracy in percent against training step, one line per network "
        f"({listed(histories)}); at the last step: {_final_accuracies(histories)}."))


def percentile_bands(results: Mapping[str, Mapping[str, list[float]]], unit_label: str) -> Figure:
    """One panel per network: the 15th/50th/85th percentiles of one unit's input over steps.

    Args:
        results: name -> :class:`bnlib.probes.ActivationPercentileProbe` result (``step``,
            ``p15``, ``p50``, ``p85``).
        unit_label: what was measured, for the y axis (e.g. "input to sigmoid 0 of layer 3").
    """
    fig, axes = panel_grid(len(results), sharey=True)
    for i, (ax, (name, result)) in enumerate(zip(axes, results.items())):
        _draw_band(ax, result, _color(name, i), name)
    for ax in axes[::2]:
        ax.set_ylabel(unit_label)
    axes[0].legend(loc="best")
    return describe(fig, (
        f"{len(results)} panels on one y axis, one per network ({listed(results)}): the "
        f"{unit_label} against training step, its median as a thick line inside a shaded band "
        f"from the 15th to the 85th percentile; at the last step, {_final_bands(results)}."))


def figure1(histories: Mapping[str, Any], probe: str, unit_label: str) -> Figure:
    """A miniature of Ioffe & Szegedy's Figure 1: (a) test accuracy over steps for every network,
    then (b), (c), ... the percentile band of ``history.probes[probe]`` for each network, with
    a common y axis."""
    fig, axes = panel_grid(len(histories) + 1, span_first=True)
    _draw_accuracy(axes[0], histories)
    axes[0].set_title("(a) test accuracy")
    for i, (name, history) in enumerate(histories.items()):
        _draw_band(axes[i + 1], history.probes[probe], _color(name, i),
                   f"({chr(ord('b') + i)}) {name}")
    for ax in axes[1:]:
        ax.set_ylabel(unit_label)
    axes[1].legend(loc="best")
    low = min(ax.get_ylim()[0] for ax in axes[1:])
    high = max(ax.get_ylim()[1] for ax in axes[1:])
    for ax in axes[1:]:
        ax.set_ylim(low, high)
    bands = {name: history.probes[probe] for name, history in histories.items()}
    return describe(fig, (
        "A wide panel (a) of test accuracy in percent against training step, one line per "
        f"network ({listed(histories)}), above one panel per network of the {unit_label} "
        "against training step, its median inside a shaded band from the 15th to the 85th "
        f"percentile, on a common y axis; at the last step, accuracy {_final_accuracies(histories)}"
        f", and {_final_bands(bands)}."))


def ics_over_steps(results: Mapping[str, Mapping[str, list[float]]], layer_label: str) -> Figure:
    """Santurkar et al.'s ICS over training: ``||G - G'|| / ||G||`` (left) and ``cos(G, G')``
    (right), one line per network (results of :class:`bnlib.probes.ICSProbe`)."""
    fig, (ax_rel, ax_cos) = panel_grid(2)
    for i, (name, result) in enumerate(results.items()):
        color = _color(name, i)
        ax_rel.plot(result["step"], result["relative"], color=color, label=name)
        ax_cos.plot(result["step"], result["cosine"], color=color, label=name)
    ax_rel.set_ylabel("||G - G'|| / ||G||")
    ax_rel.set_title(f"relative change of the gradient, {layer_label}")
    ax_cos.set_ylabel("cos(G, G')")
    ax_cos.set_title("cosine between G and G'")
    ax_cos.set_ylim(-1.05, 1.05)
    for ax in (ax_rel, ax_cos):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    ax_rel.legend(loc="best")
    means = listed(f"{name} {sum(r['relative']) / len(r['relative']):.3g} and "
                   f"{sum(r['cosine']) / len(r['cosine']):.3g}" for name, r in results.items())
    return describe(fig, (
        "Two line charts against training step, one line per network: left, the norm of the "
        f"change of the gradient of {layer_label}, G minus G prime, divided by the norm of G; "
        "right, the cosine between G and G prime, on an axis from -1 to 1; mean over the steps "
        f"of the change and the cosine: {means}."))


def landscape_over_steps(results: Mapping[str, Mapping[str, list[float]]]) -> Figure:
    """Santurkar et al.'s Figure 4, over training: the range of the loss along the gradient
    (shaded between min and max over the step sizes), the range of the gradient change
    ``||grad L(w - eta g) - grad L(w)||`` and the effective beta-smoothness (results of
    :class:`bnlib.probes.LandscapeProbe`)."""
    fig, axes = panel_grid(3, span_first=True)
    for i, (name, r) in enumerate(results.items()):
        color = _color(name, i)
        axes[0].fill_between(r["step"], r["loss_min"], r["loss_max"], color=color, alpha=0.35,
                             label=name)
        axes[1].fill_between(r["step"], r["grad_change_min"], r["grad_change_max"], color=color,
                             alpha=0.35, label=name)
        axes[2].plot(r["step"], r["beta_smoothness"], color=color, label=name)
    axes[0].set_ylabel("loss L(w - eta g) (nats)")
    axes[0].set_title("(a) loss along the gradient")
    axes[1].set_ylabel("||grad L(w - eta g) - grad L(w)||")
    axes[1].set_title("(b) gradient predictiveness")
    axes[2].set_ylabel("max ||change of gradient|| / ||eta g||")
    axes[2].set_title("(c) effective beta-smoothness")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    widths = listed(f"{name} {max(hi - lo for lo, hi in zip(r['loss_min'], r['loss_max'])):.3g}"
                    for name, r in results.items())
    return describe(fig, (
        "Three panels against training step, one colour per network "
        f"({listed(results)}): (a) the loss along the gradient, shaded between its smallest "
        "and largest value over the step sizes; (b) the change of the gradient along it, "
        "shaded the same way; (c) the effective beta-smoothness as a line. Widest loss range "
        f"of a step: {widths}."))
