"""Figures of training histories: curves per epoch across seeds, and the two-weight descent path.

Each function takes ``runs``: a mapping from a model's name (``"with_bn"``, ``"without_bn"``, or
any) to its histories (one per seed, :class:`bnlib.training.History`), and returns a Figure.
Curves show the mean across seeds and, with two seeds or more, a band from the lowest to the
highest seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bnlib.plots.style import describe
from bnlib.prose import listed
from bnlib.training import History

__all__ = ["LABELS", "accuracy_per_epoch", "descent_path", "metric_per_epoch",
           "train_loss_per_epoch"]

#: Display names of the article's two models.
LABELS = {"with_bn": "with BN", "without_bn": "without BN"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _axes(ax: Axes | None, size=(6.4, 4.0)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def metric_per_epoch(
    runs: Mapping[str, Sequence[History]],
    metric: str,
    ylabel: str,
    scale: float = 1.0,
    ax: Axes | None = None,
    log: bool = False,
    article: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
) -> Figure:
    """``metric`` (an :class:`~bnlib.training.EpochRecord` field) over epochs, one curve per model.

    Args:
        runs: model name -> histories of several seeds (same number of epochs).
        metric: e.g. ``"test_accuracy"``, ``"train_loss"``.
        ylabel: the y-axis label, with units.
        scale: multiplies the values (100 for percent).
        ax: draw here instead of a new figure.
        log: logarithmic y axis.
        article: published curves to overlay, model name -> (epochs, values in the units of
            ``metric``), drawn dashed in the colour of the model's curve, up to the last epoch
            of ``runs`` (:func:`bnlib.experiments.hindi_digits.article_curves`).
    """
    fig, ax = _axes(ax)
    colours = {}
    for name, histories in runs.items():
        values = np.array([h.column(metric) for h in histories], dtype=float) * scale
        epochs = np.arange(1, values.shape[1] + 1)
        seeds = len(histories)
        label = _label(name) + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
        (line,) = ax.plot(epochs, values.mean(axis=0), marker="o", markersize=3, label=label)
        colours[name] = line.get_color()
        if seeds > 1:
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(),
                            alpha=0.2, linewidth=0, label=f"{_label(name)}: lowest to highest seed")
    last = max(len(h.epochs) for histories in runs.values() for h in histories)
    for name, (epochs, values) in (article or {}).items():
        shown = [(e, v * scale) for e, v in zip(epochs, values) if e <= last]
        ax.plot(*zip(*shown), linestyle="--", linewidth=1.2, color=colours.get(name, "black"),
                label=f"the article, {_label(name)}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    seeds = max(len(histories) for histories in runs.values())
    finals = [f"{_label(name)} {np.mean([h.column(metric)[-1] for h in hs]) * scale:.3g}"
              for name, hs in runs.items()]
    return describe(fig, (
        f"Line chart of {ylabel} against epoch, 1 to {last}, one line per network "
        f"({listed(_label(n) for n in runs)})"
        + (f", each the mean of {seeds} seeds in a shaded band from the lowest to the highest "
           "seed" if seeds > 1 else "")
        + (", with the article's run as dashed lines" if article else "")
        + (", on a logarithmic scale" if log else "")
        + f"; at the last epoch: {listed(finals)}."))


def accuracy_per_epoch(
    runs: Mapping[str, Sequence[History]],
    ax: Axes | None = None,
    article: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
) -> Figure:
    """Test accuracy (%) per epoch; ``article`` overlays published curves, model name ->
    (epochs, accuracies as fractions), dashed."""
    fig = metric_per_epoch(runs, "test_accuracy", "test accuracy (%)", scale=100.0, ax=ax,
                           article=article)
    (ax or fig.axes[0]).set_title("Test accuracy per epoch")
    fig.tight_layout()
    return fig


def train_loss_per_epoch(
    runs: Mapping[str, Sequence[History]],
    ax: Axes | None = None,
    article: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
) -> Figure:
    """Train loss (mean cross-entropy over each epoch's mini-batches, nats) per epoch, log
    scale; ``article`` overlays published curves, dashed."""
    fig = metric_per_epoch(runs, "train_loss", "train loss (cross-entropy, nats)", ax=ax,
                           log=True, article=article)
    (ax or fig.axes[0]).set_title("Train loss per epoch")
    fig.tight_layout()
    return fig


def descent_path(
    histories: Mapping[str, History],
    weight_names: Sequence[str] = ("w[3, 4, 1, 0]", "w[3, 8, 1, 0]"),
) -> Figure:
    """The path of two tracked weights, one panel per model, points coloured by epoch.

    Each panel shows the change of the two weights since epoch 0 (before training), on its own
    scale (the paths of different models can differ in length by orders of magnitude).

    Args:
        histories: model name -> one history whose configuration tracked two weights.
        weight_names: names of the first and second tracked weight, for the axis labels.
    """
    count = len(histories)
    fig, axes = plt.subplots(
        1, count, figsize=(4.6 * count + 0.8, 4.2), squeeze=False, layout="constrained"
    )
    paths = {name: np.array(h.weight_path(), dtype=float) for name, h in histories.items()}
    for name, path in paths.items():
        if path.ndim != 2 or path.shape[1] < 2:
            raise ValueError(f"{name}: the run tracked {path.shape[-1]} weight(s); two are needed")
    last_epoch = max(len(p) - 1 for p in paths.values())
    shapes = []
    for name, path in paths.items():
        steps = np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1).sum()
        straight = float(np.linalg.norm(path[-1, :2] - path[0, :2]))
        shapes.append(f"{_label(name)} travels {steps:.2g} to end {straight:.2g} from its start"
                      f" ({steps / straight:.1f} times the straight distance)" if straight > 0
                      else f"{_label(name)} does not move")
    scatter = None
    for ax, (name, path) in zip(axes[0], paths.items()):
        moved = path[:, :2] - path[0, :2]
        ax.plot(moved[:, 0], moved[:, 1], color="0.6", linewidth=1, zorder=1)
        scatter = ax.scatter(moved[:, 0], moved[:, 1], c=np.arange(len(path)), cmap="viridis",
                             vmin=0, vmax=last_epoch, s=18, zorder=2)
        ax.annotate("start", moved[0], textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.annotate(f"epoch {len(path) - 1}", moved[-1], textcoords="offset points",
                    xytext=(5, -10), fontsize=8)
        ax.ticklabel_format(style="sci", scilimits=(-2, 3), useOffset=False)
        ax.set_title(f"{_label(name)} (start: {path[0, 0]:.4f}, {path[0, 1]:.4f})", fontsize=10)
        ax.set_xlabel(f"change of {weight_names[0]} since epoch 0")
        ax.set_ylabel(f"change of {weight_names[1]} since epoch 0")
        ax.grid(alpha=0.3)
    fig.suptitle("Descent path of two weights of the last convolution (one point per epoch)")
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=axes[0].tolist(), label="epoch")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return describe(fig, (
        f"{count} scatter paths side by side, one per network, of the change of two weights "
        f"since epoch 0, one point per epoch from 0 to {last_epoch}, coloured from dark purple "
        f"to yellow and joined by a grey line, each on its own scale: {listed(shapes)}."))
