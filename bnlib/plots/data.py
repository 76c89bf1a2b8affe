"""Figures of the data itself."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from bnlib.plots.style import describe



def digit_grid(images: torch.Tensor, labels: torch.Tensor, per_class: int = 8) -> Figure:
    """A grid of the first ``per_class`` images of each class, one row per digit 0..9.

    Args:
        images: float (N, 1, H, W) in [0, 1].
        labels: int (N,) in 0..9.
        per_class: images shown per row.
    """
    classes = sorted(int(k) for k in torch.unique(labels))
    fig, axes = plt.subplots(
        len(classes), per_class, figsize=(per_class * 0.7, len(classes) * 0.72), squeeze=False
    )
    for row, k in enumerate(classes):
        picks = torch.nonzero(labels == k).flatten()[:per_class]
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(picks):
                ax.imshow(images[picks[col], 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        axes[row, 0].set_ylabel(f"digit {k}", rotation=0, ha="right", va="center")
    fig.suptitle("DHCD digits: one row per class (32 x 32 pixels, white stroke on black)")
    fig.tight_layout()
    return describe(fig, (
        f"A grid of {len(classes) * per_class} small grayscale pictures in {len(classes)} rows "
        f"of {per_class}: handwritten digits as white strokes on black, one digit per row, "
        f"from {classes[0]} at the top to {classes[-1]} at the bottom, each row labelled with "
        "its digit on the left."))
