"""Write data/article_logs.csv from the article's notebook: its printed numbers, and the other
epochs read off the two figures it drew.

The article's notebook (kbmurali/hindi_hw_digits, hindi_hw_digits_bnorm2d_cnns.ipynb) prints
only the first five epochs of each run and the last test accuracy; the other epochs exist only
as the seaborn line plots of its cells 13 (test accuracy) and 14 (train loss). This script
reads those plots' PNG outputs: it calibrates the axes from the tick marks, finds each line by
its colour (matplotlib's tab:blue and tab:orange) outside the legend's frame, fits a straight
line to each segment between two epochs and takes each epoch's value where the two segments
beside it meet.

Usage: python tools/article_logs.py NOTEBOOK.ipynb > data/article_logs.csv
"""

from __future__ import annotations

import base64
import io
import json
import sys

import numpy as np
from PIL import Image

COLOURS = {"without_bn": (31, 119, 180), "with_bn": (255, 127, 14)}
FIGURES = {13: ("test_accuracy", [0.825 + 0.025 * i for i in range(8)]),
           14: ("train_loss", [0.0, 0.5, 1.0, 1.5, 2.0])}
X_TICKS = [0, 5, 10, 15, 20, 25, 30]


def image(notebook: dict, cell: int) -> np.ndarray:
    for output in notebook["cells"][cell]["outputs"]:
        if "image/png" in output.get("data", {}):
            png = base64.b64decode(output["data"]["image/png"])
            rgba = Image.open(io.BytesIO(png)).convert("RGBA")
            return np.asarray(rgba).astype(float)
    raise ValueError(f"cell {cell} has no PNG output")


def axes_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """Left, right, top, bottom pixel of the axes' spines (long dark lines)."""
    dark = pixels[:, :, :3].sum(axis=2) < 200
    columns = np.flatnonzero(dark.sum(axis=0) > 0.6 * pixels.shape[0])
    rows = np.flatnonzero(dark.sum(axis=1) > 0.6 * pixels.shape[1])
    return columns[0], columns[-1], rows[0], rows[-1]


def ticks(pixels, box) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of the x ticks (below the bottom spine) and y ticks (left of the left one)."""
    left, right, top, bottom = box
    dark = pixels[:, :, :3].sum(axis=2) < 300
    below = dark[bottom + 2, left:right + 1]
    beside = dark[top:bottom + 1, left - 3]
    return runs(below) + left, runs(beside) + top


def runs(mask: np.ndarray) -> np.ndarray:
    """Centres of the runs of True in a 1-d mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return (starts + stops - 1) / 2


def legend_box(pixels, box) -> tuple[int, int, int, int]:
    """Left, right, top, bottom pixel of the legend's frame (its light grey border)."""
    left, right, top, bottom = box
    rgb = pixels[:, :, :3]
    grey = ((np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max(axis=2) < 6)
            & (rgb.mean(axis=2) > 170) & (rgb.mean(axis=2) < 235))
    grey[:, :left + 2] = grey[:, right - 1:] = False
    rows = np.flatnonzero(grey.sum(axis=1) > 100)
    columns = np.flatnonzero(grey.sum(axis=0) > 30)
    return columns[0], columns[-1], rows[0], rows[-1]


def line_weight(pixels, colour) -> np.ndarray:
    """How much of each pixel is the line's colour over white (0..1), by projection."""
    white = np.array([255.0, 255.0, 255.0])
    direction = np.array(colour, dtype=float) - white
    t = ((pixels[:, :, :3] - white) @ direction) / (direction @ direction)
    residual = np.linalg.norm(pixels[:, :, :3] - white - t[..., None] * direction, axis=2)
    return np.where((t > 0.25) & (residual < 40), np.clip(t, 0, 1), 0.0)


def curve(pixels, box, colour, x_at) -> list[float]:
    """The line's y pixel at each epoch column ``x_at`` (fitted segments, meeting points)."""
    left, right, top, bottom = box
    weight = line_weight(pixels, colour)
    l_left, l_right, l_top, l_bottom = legend_box(pixels, box)
    weight[l_top - 2:l_bottom + 3, l_left - 2:l_right + 3] = 0.0
    weight = weight[top + 2:bottom - 1, :]
    rows = np.arange(top + 2, bottom - 1)
    fits = []
    for a, b in zip(x_at[:-1], x_at[1:]):
        xs = [x for x in range(int(np.ceil(a)) + 2, int(np.floor(b)) - 1)
              if weight[:, x].sum() > 0.5]
        ys = [float((weight[:, x] * rows).sum() / weight[:, x].sum()) for x in xs]
        fits.append(np.polyfit(xs, ys, 1))
    values = []
    for k, x in enumerate(x_at):
        beside = [fits[j] for j in (k - 1, k) if 0 <= j < len(fits)]
        values.append(float(np.mean([np.polyval(f, x) for f in beside])))
    return values


def logged(notebook: dict) -> list[tuple]:
    """The numbers the notebook prints: ``df.head()`` of each run (epochs 1-5, the notebook's
    0-based epoch index plus one) and the last test accuracy of each (cell 12)."""
    rows = []
    for cell, model in ((7, "without_bn"), (11, "with_bn")):
        text = "".join(notebook["cells"][cell]["outputs"][0]["data"]["text/plain"])
        lines = text.splitlines()
        for top, bottom in zip(lines[1:6], lines[8:13]):
            t, b = top.split(), bottom.split()
            values = {"train_loss": t[3], "weight_x": t[4], "weight_y": t[5],
                      "test_loss": t[6], "train_accuracy": b[1], "test_accuracy": b[2]}
            rows += [(model, int(t[1]) + 1, m, v, "log") for m, v in values.items()]
    last = "".join(notebook["cells"][12]["outputs"][0]["text"]).splitlines()
    for line, model in zip(last, ("without_bn", "with_bn")):
        rows.append((model, 30, "test_accuracy", line.split(": ")[1], "log"))
    return rows


def read_figures(notebook: dict) -> list[tuple]:
    rows = []
    for cell, (metric, y_values) in FIGURES.items():
        pixels = image(notebook, cell)
        box = axes_box(pixels)
        x_ticks, y_ticks = ticks(pixels, box)
        x_fit = np.polyfit(X_TICKS, x_ticks, 1)
        y_fit = np.polyfit(y_ticks, sorted(y_values, reverse=True), 1)
        x_at = np.polyval(x_fit, np.arange(30))
        for model, colour in COLOURS.items():
            for epoch, y in enumerate(curve(pixels, box, colour, x_at), start=1):
                rows.append((model, epoch, metric, f"{np.polyval(y_fit, y):.4f}", "figure"))
    return rows


def main(path: str) -> None:
    """Print the CSV: logged numbers where the notebook printed them, else the figures'."""
    notebook = json.load(open(path))
    rows = logged(notebook)
    have = {row[:3] for row in rows}
    rows += [row for row in read_figures(notebook) if row[:3] not in have]
    rows.sort(key=lambda r: (r[0] == "without_bn", r[2], r[1]))
    print("model,epoch,metric,value,source")
    for row in rows:
        print(",".join(str(v) for v in row))


if __name__ == "__main__":
    main(sys.argv[1])
