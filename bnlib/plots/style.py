"""One look for every figure of the book, sized for the column that shows it.

The book's article column is 896 px wide at a 1280 px window (measured by
``tests/test_browser.py``). A figure is drawn at :data:`DPI` dots per inch and shown at its natural
size when it fits, so ``COLUMN_INCHES`` wide fills the column and a point of text is
``DPI / 72`` pixels on screen: the 10-point tick labels and legends of :data:`STYLE` are about
14 px, like the page's own small print.

Importing :mod:`bnlib.plots` applies :data:`STYLE` to matplotlib and, inside IPython, makes
every figure display through :func:`figure_png`: an opaque white background (figures stay
readable when the page is in dark mode) and, in the PNG's metadata, the size of the smallest
text the figure holds (:data:`SMALLEST_TEXT_KEY`), which the browser test turns into pixels.

Every figure also carries its alternative text, for a reader who cannot see it:
:func:`describe` gives it, the functions of :mod:`bnlib.plots` call it on the figures they
return, and :func:`figure_png` writes it into the PNG as the PNG standard's ``Description``
text (:data:`DESCRIPTION_KEY`), where the book's pages take it for the image's ``alt``.
"""

from __future__ import annotations

import base64
import importlib
import io
import math
import re
import weakref

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = [
    "COLUMN_INCHES",
    "DPI",
    "SMALLEST_TEXT_KEY",
    "STYLE",
    "DESCRIPTION_KEY",
    "MIN_DESCRIPTION_WORDS",
    "apply_style",
    "describe",
    "description",
    "figure_png",
    "panel_grid",
    "show_figures_with_style",
    "smallest_text_points",
]

#: Dots per inch of every figure shown in the book (inline figures and precomputed frames).
DPI = 100
#: Width (inches) of a figure that fills the article column at DPI.
COLUMN_INCHES = 8.6
#: PNG text key holding the smallest font size (points) drawn in the figure.
SMALLEST_TEXT_KEY = "bnlib smallest text pt"
#: PNG text keyword holding the figure's alternative text (a keyword the PNG standard defines).
DESCRIPTION_KEY = "Description"
#: Fewest words of an alternative text: enough to say what is plotted against what.
MIN_DESCRIPTION_WORDS = 5
_FILE_LIKE = re.compile(r"[/\\]|\.(png|jpe?g|gif|svg|pdf)\b", re.I)
_DESCRIPTIONS: weakref.WeakKeyDictionary[Figure, str] = weakref.WeakKeyDictionary()

#: matplotlib settings of the book: text sizes in points for a figure shown at DPI.
STYLE: dict[str, object] = {
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 12,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.transparent": False,
}


def apply_style() -> None:
    """Set :data:`STYLE` in matplotlib's rcParams (figures created afterwards follow it)."""
    matplotlib.rcParams.update(STYLE)


def panel_grid(
    count: int, panel_height: float = 3.2, columns: int = 2, sharey: bool = False,
    span_first: bool = False, **subplot_kw: object,
) -> tuple[Figure, list[Axes]]:
    """A figure ``COLUMN_INCHES`` wide holding ``count`` panels in rows of ``columns`` (2x2
    rather than 1x4, so each panel keeps a readable size in the column); constrained layout.

    Args:
        count: number of panels; a last row that is not full is left short.
        panel_height: height of one row of panels (inches).
        columns: panels per row.
        sharey: every panel shares the first one's y axis.
        span_first: when the panels do not fill the last row, the first panel takes a whole
            row of its own instead (e.g. an overview above the panels it summarises).
        subplot_kw: passed to ``Figure.add_subplot`` (e.g. ``projection="3d"``).

    Returns:
        The figure and its ``count`` axes, row by row.
    """
    if count < 1 or columns < 1:
        raise ValueError(f"count={count} and columns={columns} must be at least 1")
    cols = min(columns, count)
    spans = span_first and count % cols != 0
    rows = 1 + math.ceil((count - 1) / cols) if spans else math.ceil(count / cols)
    fig = plt.figure(figsize=(COLUMN_INCHES, panel_height * rows), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    cells = [grid[0, :]] if spans else []
    cells += [grid[i // cols, i % cols] for i in range(cols if spans else 0, rows * cols)]
    axes = [fig.add_subplot(cell, **subplot_kw) for cell in cells[:count]]
    if sharey:
        for ax in axes[1:]:
            ax.sharey(axes[0])
    return fig, axes


def describe(fig: Figure, text: str) -> Figure:
    """Give ``fig`` its alternative text and return ``fig``.

    The text says what the figure shows to a reader who cannot see it: what is plotted against
    what, the series, what the eye would notice (numbers computed from the data are welcome).
    A screen reader reads it and then the caption, so it complements the caption and does not
    repeat it. :func:`figure_png` writes it into every PNG of the figure; the book's pages show
    it as the image's ``alt`` (``_ext/accessibility.py`` for inline figures, :mod:`bnlib.widgets`
    for the frames of an interactive figure). A later call replaces the text.

    Raises:
        ValueError: fewer than :data:`MIN_DESCRIPTION_WORDS` words, or a file name or path.
    """
    words = " ".join(str(text).split())
    if len(words.split()) < MIN_DESCRIPTION_WORDS:
        raise ValueError(f"an alternative text needs at least {MIN_DESCRIPTION_WORDS} words "
                         f"saying what the figure shows, got {text!r}")
    if _FILE_LIKE.search(words):
        raise ValueError(f"an alternative text describes the figure, not a file: {text!r}")
    _DESCRIPTIONS[fig] = words
    return fig


def description(fig: Figure) -> str | None:
    """The alternative text given to ``fig`` by :func:`describe`, or None."""
    return _DESCRIPTIONS.get(fig)


def smallest_text_points(fig: Figure) -> float:
    """The smallest font size (points) among the figure's visible, non-empty texts (nan if none)."""
    sizes = [
        text.get_fontsize()
        for text in fig.findobj(Text)
        if text.get_visible() and text.get_text().strip()
    ]
    return float(min(sizes)) if sizes else math.nan


def figure_png(fig: Figure, dpi: float = DPI, bbox_inches: str | None = "tight") -> bytes:
    """The figure as PNG bytes on an opaque white background, its smallest text size recorded
    (:data:`SMALLEST_TEXT_KEY`), and its alternative text (:data:`DESCRIPTION_KEY`) if it has one.

    Args:
        fig: the figure (not closed).
        dpi: dots per inch.
        bbox_inches: ``"tight"`` (crop to the drawn content, as Jupyter's inline display does)
            or ``None`` (keep the figure's own size and layout, e.g. for frames of one slider).
    """
    fig.canvas.draw()  # lays out tick labels, so the texts measured are the ones drawn
    buffer = io.BytesIO()
    alpha = fig.patch.get_alpha()
    fig.patch.set_alpha(1.0)  # a figure made transparent by hand comes out white too
    metadata = {SMALLEST_TEXT_KEY: f"{smallest_text_points(fig):.2f}"}
    if description(fig):
        metadata[DESCRIPTION_KEY] = description(fig)
    try:
        fig.savefig(
            buffer, format="png", dpi=dpi, bbox_inches=bbox_inches, facecolor="white",
            edgecolor="white", transparent=False, metadata=metadata,
        )
    finally:
        fig.patch.set_alpha(alpha)
    return buffer.getvalue()


def _display_png(fig: Figure) -> str | None:
    """IPython's PNG formatter for figures: base64 text, nothing for an empty figure."""
    if not fig.axes:
        return None
    return base64.b64encode(figure_png(fig)).decode("ascii")


def show_figures_with_style() -> bool:
    """Inside IPython, display every matplotlib figure with :func:`figure_png`; False outside.

    Jupyter's inline backend registers its own PNG formatter when its module is first imported,
    which matplotlib does lazily; importing it here first makes this registration the last one.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    backend = matplotlib.rcParams._get("backend")
    if isinstance(backend, str) and backend.startswith("module://"):
        importlib.import_module(backend.removeprefix("module://"))
    shell.display_formatter.formatters["image/png"].for_type(Figure, _display_png)
    return True
