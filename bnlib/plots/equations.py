"""Figures of chapter 02 (the BN equations): which axes are averaged, the computational graph,
and how batch size, eps, gamma and beta change a normalised batch."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from bnlib import reference
from bnlib.plots.style import describe
from bnlib.prose import number

__all__ = [
    "affine_frame",
    "affine_preset_frame",
    "batch_size_frame",
    "computational_graph",
    "normalised_axes",
]

_SHADE = "tab:orange"
_GRID = "0.55"


def normalised_axes(n: int = 4, c: int = 5, hw: int = 3, channel: int = 2) -> Figure:
    """Which elements share one mean and variance: (N, C) and (N, C, H, W) inputs side by side.

    Left: a fully connected batch as an N x C grid; channel ``channel``'s column is shaded (its
    statistics run over N). Right: a convolutional batch, each (n, c) cell an H x W patch of
    ``hw`` x ``hw`` pixels; every pixel of channel ``channel`` in every sample is shaded (its
    statistics run over N, H and W: m x H x W values).
    """
    fig, (ax_fc, ax_conv) = plt.subplots(1, 2, figsize=(9.0, 3.9))
    for j in range(c):
        for i in range(n):
            ax_fc.add_patch(Rectangle((j, n - 1 - i), 1, 1, facecolor=_SHADE if j == channel
                                      else "white", edgecolor="black", lw=1.0))
            for u in range(hw):
                for v in range(hw):
                    x0 = j * (hw + 1) + v
                    y0 = (n - 1 - i) * (hw + 1) + (hw - 1 - u)
                    ax_conv.add_patch(Rectangle((x0, y0), 1, 1, lw=0.5, edgecolor=_GRID,
                                                facecolor=_SHADE if j == channel else "white"))
    ax_fc.set_xlim(-0.2, c + 0.2)
    ax_fc.set_ylim(-0.2, n + 0.2)
    ax_fc.set_xticks(np.arange(c) + 0.5, [str(k) for k in range(c)])
    ax_fc.set_yticks(np.arange(n) + 0.5, [str(k) for k in reversed(range(n))])
    ax_fc.set_xlabel("channel (feature) c")
    ax_fc.set_ylabel("sample n in the mini-batch")
    ax_fc.set_title(f"fully connected, (N, C): one mean and\nvariance per column, over m = N = {n}")
    size = hw + 1
    ax_conv.set_xlim(-0.5, c * size)
    ax_conv.set_ylim(-0.5, n * size)
    ax_conv.set_xticks(np.arange(c) * size + hw / 2, [str(k) for k in range(c)])
    ax_conv.set_yticks(np.arange(n) * size + hw / 2, [str(k) for k in reversed(range(n))])
    ax_conv.set_xlabel(f"channel c (each cell: one H x W = {hw} x {hw} feature map)")
    ax_conv.set_ylabel("sample n in the mini-batch")
    ax_conv.set_title(f"convolutional, (N, C, H, W): one mean and variance\nper channel, over "
                      f"N x H x W = {n} x {hw} x {hw} = {n * hw * hw} values")
    for ax in (ax_fc, ax_conv):
        ax.set_aspect("equal")
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    fig.tight_layout()
    return describe(fig, (
        f"Two grids of boxes side by side. Left: {n} rows of samples by {c} columns of "
        f"channels, the whole column of channel {channel} shaded orange. Right: the same rows "
        f"and columns with every cell a {hw} by {hw} patch of pixels, and all the pixels of "
        f"channel {channel} in all {n} samples shaded orange."))


def computational_graph() -> Figure:
    """The forward pass of BN as a graph, for one channel; the backward pass runs the arrows
    in reverse, and x reaches the loss along three paths (direct, through mu, through sigma^2)."""
    nodes = {
        "x": (0.0, 1.0, r"$x_i$"),
        "mu": (1.6, 2.0, r"$\mu_B$"),
        "var": (3.2, 2.0, r"$\sigma_B^2$"),
        "xhat": (4.8, 1.0, r"$\hat x_i$"),
        "y": (6.4, 1.0, r"$y_i$"),
        "loss": (8.0, 1.0, r"$\ell$"),
        "gamma": (5.6, 0.0, r"$\gamma$"),
        "beta": (7.0, 0.0, r"$\beta$"),
    }
    edges = [("x", "mu", "C0"), ("x", "var", "C1"), ("mu", "var", "C1"), ("x", "xhat", "C2"),
             ("mu", "xhat", "C0"), ("var", "xhat", "C1"), ("xhat", "y", "k"), ("gamma", "y", "k"),
             ("beta", "y", "k"), ("y", "loss", "k")]
    fig, ax = plt.subplots(figsize=(8.5, 3.0))
    for start, end, colour in edges:
        (x0, y0, _), (x1, y1, _) = nodes[start], nodes[end]
        bend = 0.25 if (start, end) == ("x", "var") else 0.0
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=14,
                                     shrinkA=16, shrinkB=16, color=colour, lw=1.6,
                                     connectionstyle=f"arc3,rad={bend}"))
    for key, (x, y, label) in nodes.items():
        parameter = key in ("gamma", "beta")
        ax.text(x, y, label, ha="center", va="center", fontsize=15,
                bbox={"boxstyle": "round,pad=0.4", "fc": "#fde9d0" if parameter else "#e8eef7",
                      "ec": "0.3"})
    ax.text(0.8, 0.35, "three paths from $x_i$ to $\\hat x_i$:\ndirect (green), through $\\mu_B$"
            " (blue),\nthrough $\\sigma_B^2$ (orange)", fontsize=9, ha="center", va="center")
    ax.set_xlim(-0.6, 8.6)
    ax.set_ylim(-0.5, 2.6)
    ax.axis("off")
    ax.set_title("Batch norm for one channel: every $x_i$ of the batch feeds $\\mu_B$ and "
                 "$\\sigma_B^2$; parameters shaded")
    fig.tight_layout()
    return describe(fig, (
        "A graph of boxes joined by arrows, left to right: x i points to the batch mean mu B, "
        "to the batch variance sigma B squared and straight to x hat i; mu B points to the "
        "variance and to x hat i; the variance points to x hat i; x hat i, gamma and beta "
        "point to y i, and y i points to the loss."))


def _channel_batch_norm(values: np.ndarray, batch: np.ndarray, eps: float) -> np.ndarray:
    """``values`` normalised with the mean and biased variance of ``batch`` (both 1-D)."""
    return (values - batch.mean()) / np.sqrt(batch.var() + eps)


def batch_size_frame(
    activations: np.ndarray, batch_size: int, channel: int = 0, eps: float = 1e-5
) -> Figure:
    """How the batch size changes the normalisation of one image's feature map.

    Args:
        activations: (N, C, H, W) activations of a pool of images; the first ``batch_size``
            images form the mini-batch, the whole pool stands in for the population.
        batch_size: m, the number of images in the mini-batch (image 0 is always in it).
        channel: the channel shown.
        eps: BN's epsilon.

    Left: the channel's values in the pool and in the batch, with both means. Right: image 0's
    values normalised with the batch's statistics (what BN computes in training) and with the
    pool's (what it should approach); the farther apart, the noisier BN is at this batch size.
    """
    pool = np.asarray(activations, dtype=np.float64)[:, channel]
    if not 1 <= batch_size <= len(pool):
        raise ValueError(f"batch_size must be in 1..{len(pool)} (the pool size), got {batch_size}")
    batch = pool[:batch_size]
    image = pool[0].ravel()
    # one BN over the batch (reference implementation), then image 0's normalised values
    y, _ = reference.batch_norm_forward(batch[:, None], np.ones(1), np.zeros(1), eps)
    with_batch = y[0, 0].ravel()
    with_pool = _channel_batch_norm(image, pool.ravel(), eps)

    fig, (ax_raw, ax_norm) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    bins = np.linspace(pool.min(), pool.max(), 40)
    ax_raw.hist(pool.ravel(), bins=bins, density=True, color="0.75",
                label=f"pool of {len(pool)} images")
    ax_raw.hist(batch.ravel(), bins=bins, density=True, histtype="step", lw=1.8, color="C0",
                label=f"batch of m = {batch_size}")
    ax_raw.axvline(pool.mean(), color="0.3", ls="--", label="pool mean")
    ax_raw.axvline(batch.mean(), color="C0", ls="-", label=r"batch mean $\mu_B$")
    ax_raw.set_yscale("log")
    ax_raw.set_xlabel(f"activation of channel {channel} (conv output)")
    ax_raw.set_ylabel("density (log scale)")
    ax_raw.legend(fontsize=7, loc="upper right")
    ax_raw.set_title(f"channel {channel}: m x H x W = {batch.size} values", fontsize=10)

    lo, hi = float(with_pool.min()) - 1.0, float(with_pool.max()) + 1.0
    ax_norm.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1, label="equal (large batch)")
    ax_norm.scatter(with_pool, np.clip(with_batch, lo, hi), s=5, color="C0",
                    label=f"the {image.size} pixels of image 0")
    ax_norm.set_xlim(lo, hi)
    ax_norm.set_ylim(lo, hi)
    ax_norm.set_xlabel(r"$\hat x$ with the pool's mean and variance")
    ax_norm.set_ylabel(rf"$\hat x$ with the batch's (m = {batch_size})")
    shift = float(np.abs(with_batch - with_pool).max())
    ax_norm.set_title(f"image 0, normalised: largest difference {shift:.2f}", fontsize=10)
    ax_norm.legend(fontsize=7, loc="upper left")
    # A fixed layout: the frames are drawn once and shown in turn.
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.17, top=0.9, wspace=0.3)
    return describe(fig, (
        f"Two panels for a mini-batch of m = {batch_size} images. Left: histograms, on a "
        f"logarithmic density axis, of channel {channel}'s activations in the pool of "
        f"{len(pool)} images (grey) and in the batch (blue outline), with the pool's mean, "
        f"{pool.mean():.3g}, and the batch's, {batch.mean():.3g}, as vertical lines. Right: "
        f"the {image.size} pixels of image 0 normalised with the batch's statistics against "
        f"the same pixels normalised with the pool's, around a dashed diagonal; the largest "
        f"difference is {shift:.2f}."))


def affine_frame(values: np.ndarray, gamma: float, beta: float, eps: float = 1e-5) -> Figure:
    """One channel's batch of values before and after BN with the given gamma, beta and eps.

    Args:
        values: the channel's values over the batch (any shape; flattened).
        gamma, beta: BN's scale and shift for this channel.
        eps: BN's epsilon; it matters once it is comparable with the batch variance.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    y, cache = reference.batch_norm_forward(x, np.array([gamma]), np.array([beta]), eps)
    y = y.ravel()
    fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(8.0, 2.9))
    ax_in.hist(x.ravel(), bins=40, density=True, color="0.6")
    ax_in.set_xlabel("activation x (conv output)")
    ax_in.set_ylabel("density")
    ax_in.set_title(rf"input: mean {number(x.mean(), '.3f')}, variance $\sigma_B^2$ = "
                    f"{x.var():.4f}",
                    fontsize=10)
    bins = np.linspace(-6, 6, 61)
    ax_out.hist(np.clip(y, bins[0], bins[-1]), bins=bins, density=True, color="C0")
    ax_out.axvline(beta, color="C3", ls="--", label=r"$\beta$")
    ax_out.set_xlim(bins[0], bins[-1])
    ax_out.set_ylim(0, 1.5)
    ax_out.set_xlabel(r"output $y = \gamma\hat x + \beta$")
    ax_out.set_ylabel("density")
    ax_out.set_title(rf"$\gamma$ = {gamma:g}, $\beta$ = {beta:g}, $\epsilon$ = {eps:g}: "
                     f"mean {number(y.mean(), '.2f')}, std {y.std():.2f}", fontsize=10)
    ax_out.legend(fontsize=8, loc="upper left")
    # A fixed layout: the frames are drawn once and shown in turn.
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.17, top=0.9, wspace=0.3)
    return describe(fig, (
        f"Two histograms. Left: the {x.size} input activations of one channel, mean "
        f"{x.mean():.3f} and variance {x.var():.4f}. Right: batch norm's output for them with "
        f"gamma {gamma:g}, beta {beta:g} and epsilon {eps:g}, on a fixed axis from -6 to 6: "
        f"mean {y.mean():.2f}, standard deviation {y.std():.2f}, beta marked by a dashed red "
        "line."))


def affine_preset_frame(values: np.ndarray, gamma_beta: tuple[float, float],
                        eps: float = 1e-5) -> Figure:
    """:func:`affine_frame` with ``gamma`` and ``beta`` given as one pair (one slider)."""
    gamma, beta = gamma_beta
    return affine_frame(values, gamma, beta, eps=eps)
