"""Figures of chapter 04 (variants): the axes each normalisation averages over, and test error
against the number of images batch norm averages over."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure

from bnlib.plots.style import describe, panel_grid
from bnlib.prose import listed

__all__ = ["batch_size_curve", "normalisation_blocks"]

_SHADE = "#f28e2b"
_PLAIN = "#dce6f2"


def _shaded(
    method: str, n: int, c: int, hw: int, sample: int, channel: int, groups: int
) -> np.ndarray:
    """Boolean (N, C, HW) mask: the values sharing one mean and variance with (sample, channel)."""
    mask = np.zeros((n, c, hw), dtype=bool)
    if method == "batch":
        mask[:, channel, :] = True
    elif method == "layer":
        mask[sample, :, :] = True
    elif method == "instance":
        mask[sample, channel, :] = True
    elif method == "group":
        size = c // groups
        first = channel // size * size
        mask[sample, first:first + size, :] = True
    else:
        raise ValueError(f"unknown method {method!r}: use 'batch', 'layer', 'instance' or 'group'")
    return mask


def normalisation_blocks(n: int = 4, c: int = 6, hw: int = 5, groups: int = 3) -> Figure:
    """The (N, C, H*W) block of a convolutional batch, four times: the values batch, layer,
    instance and group norm average over to normalise one value are shaded (after Wu & He 2018,
    Figure 2); the other values are drawn translucent. Sample 1 and channel 2 are the value's;
    group norm uses ``groups`` groups of
    ``c // groups`` channels."""
    if c % groups:
        raise ValueError(f"groups={groups} must divide c={c}")
    titles = {"batch": "Batch norm\nover (N, H, W)", "layer": "Layer norm\nover (C, H, W)",
              "instance": "Instance norm\nover (H, W)",
              "group": f"Group norm ({groups} groups)\nover (C/G, H, W)"}
    fig, axes = panel_grid(len(titles), panel_height=3.1, projection="3d")
    for ax, (method, title) in zip(axes, titles.items()):
        mask = _shaded(method, n, c, hw, sample=1, channel=2, groups=groups)
        # voxel axes: x = H*W, y = C, z = N (sample 0 on top)
        shaded = mask.transpose(2, 1, 0)[:, :, ::-1]
        ax.voxels(~shaded, facecolors=to_rgba_array([_PLAIN], 0.15)[0],
                  edgecolor=(0.3, 0.3, 0.3, 0.3), linewidth=0.4)
        ax.voxels(shaded, facecolors=_SHADE, edgecolor="0.25", linewidth=0.5)
        ax.set_box_aspect((hw, c, n))
        ax.view_init(elev=22, azim=-58)
        ax.set_xlabel("H, W", labelpad=-12)
        ax.set_ylabel("C", labelpad=-12)
        ax.set_zlabel("N", labelpad=-14)
        ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
        ax.set_title(title)
    return describe(fig, (
        f"Four 3D blocks of a batch of {n} samples by {c} channels by {hw} pixel positions, "
        "each shading in orange the values averaged to normalise one value of sample 1, "
        "channel 2: for batch norm, channel 2 in every sample; for layer norm, every channel "
        "of sample 1; for instance norm, channel 2 of sample 1 alone; for group norm, the "
        f"{c // groups} channels of its group in sample 1."))


def batch_size_curve(
    summary: Mapping[tuple[str, int], Mapping[str, float]],
    batch_norm: str = "batch norm",
    group_norm: str = "group norm",
    others: tuple[str, ...] = ("batch renorm", "batch norm, real batch of k"),
) -> Figure:
    """Test error (%) against the images each normalisation averages over, k (log scale, large
    to small as in Wu & He's Figure 1).

    Args:
        summary: ``{(method, k): SeedSummary}`` of the test error (fractions), as
            :func:`bnlib.experiments.variants.summarise` returns; group norm's k is 0 (it does not depend
            on k and is drawn as a horizontal band).
        batch_norm, group_norm: the method names of the two curves.
        others: further methods drawn as markers at their k.

    Points are means over seeds; bars and the band run from the smallest to the largest seed.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    bn = sorted((k, s) for (m, k), s in summary.items() if m == batch_norm)
    if not bn:
        raise ValueError(f"the summary has no {batch_norm!r} rows")
    ks = np.array([k for k, _ in bn], dtype=float)
    seeds = max(s.n for _, s in bn)

    def errorbar(points, label, fmt, colour):
        k = np.array([p[0] for p in points], dtype=float)
        mean = np.array([p[1].mean for p in points]) * 100
        low = mean - np.array([p[1].low for p in points]) * 100
        high = np.array([p[1].high for p in points]) * 100 - mean
        ax.errorbar(k, mean, yerr=(low, high), fmt=fmt, color=colour, capsize=3, lw=1.6, ms=6,
                    label=label)

    errorbar(bn, "batch norm, ghost batches of k in a batch of 32", "-o", "C0")
    gn = summary.get((group_norm, 0))
    if gn is not None:
        ax.axhline(gn.mean * 100, color="C2", lw=1.6, label="group norm (independent of k)")
        ax.axhspan(gn.low * 100, gn.high * 100, color="C2", alpha=0.15, lw=0)
    for j, method in enumerate(others):
        points = sorted((k, s) for (m, k), s in summary.items() if m == method)
        if points:
            errorbar(points, method, ["^", "--s", "D"][j % 3], f"C{3 + j}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.set_xlim(ks.max() * 1.4, ks.min() / 1.4)  # large to small, as in Wu & He
    ax.set_xlabel("images k over which batch norm's statistics are taken")
    ax.set_ylabel("test error after training (%)")
    ax.set_title(f"Mean of {seeds} seed(s); bars: smallest to largest seed")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    drawn = [m for m in others if any(method == m for method, _ in summary)]
    ends = [f"{100 * bn[-1][1].mean:.1f}% at k = {bn[-1][0]}",
            f"{100 * bn[0][1].mean:.1f}% at k = {bn[0][0]}"]
    return describe(fig, (
        "Line chart with error bars of test error in percent against k, the images batch "
        f"norm's statistics are taken over, from {int(ks.max())} down to {int(ks.min())} on a "
        f"logarithmic axis: batch norm with ghost batches, {listed(ends)}"
        + (f"; group norm as a horizontal band at {100 * gn.mean:.1f}%" if gn else "")
        + (f"; {listed(drawn)} as markers" if drawn else "") + "."))
