"""Chapter 08's figures: what each bug does to the running statistics and the accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnlib.plots.style import describe

__all__ = ["shift_by_cause_figure"]


def shift_by_cause_figure(worse: Mapping[str, Sequence[Mapping]], labels: Mapping[str, str],
                          threshold: float) -> Figure:
    """Left: Li et al.'s shift per BN layer (mean over seeds, log scale) for each cause;
    right: eval-mode, train-mode and recalibrated test accuracy per cause (mean over seeds).

    ``worse``: cause -> per-seed outcomes with ``shift`` (one value per layer), ``eval``,
    ``train_mode``, ``recalibrated`` (fractions); ``labels``: cause -> legend text;
    ``threshold``: the doctor's threshold (dashed).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.6), constrained_layout=True)
    causes = list(labels)
    width = 0.8 / len(causes)
    for i, cause in enumerate(causes):
        shifts = np.mean([r["shift"] for r in worse[cause]], axis=0)
        layers = np.arange(1, len(shifts) + 1)
        left.bar(layers + (i - (len(causes) - 1) / 2) * width, shifts, width, label=labels[cause])
    left.axhline(threshold, color="black", ls="--", lw=1, label="doctor's threshold")
    left.set_yscale("log")
    left.set_xticks(layers, [f"BN {k}" for k in layers])
    left.set_xlabel("batch norm layer (in forward order)")
    left.set_ylabel("shift max(r/v, v/r) (ratio, log)")
    left.legend(fontsize=8)
    kinds = (("eval", "eval mode"), ("train_mode", "train mode"), ("recalibrated", "recalibrated"))
    for j, (key, name) in enumerate(kinds):
        values = [100 * np.mean([r[key] for r in worse[c]]) for c in causes]
        right.bar(np.arange(len(causes)) + (j - 1) * 0.27, values, 0.27, label=name)
    right.set_xticks(np.arange(len(causes)), [labels[c] for c in causes], rotation=20,
                     ha="right")
    right.set_ylabel("test accuracy (%)")
    right.set_ylim(0, 100)
    right.legend(fontsize=8, loc="lower left")
    largest = {c: float(np.max(np.mean([r["shift"] for r in worse[c]], axis=0)))
               for c in causes}
    worst = max(largest, key=largest.get)
    return describe(fig, (
        f"Two bar charts. Left: the shift of each batch norm layer for {len(causes)} runs "
        f"({', '.join(labels[c] for c in causes)}), on a log scale, with a dashed line at the "
        f"doctor's threshold {threshold:g}; the largest is {largest[worst]:.1f}, for "
        f"{labels[worst]}. Right: test accuracy in percent in eval mode, train mode and after "
        "recalibration, for the same runs."))
