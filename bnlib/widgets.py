"""Interactive figures that still respond in the static HTML book.

One call says "this figure depends on these parameters"::

    from bnlib.widgets import interactive_figure

    def draw(batch_size: int, eps: float) -> Figure: ...

    interactive_figure(draw, {"batch_size": [2, 8, 32], "eps": [1e-5, 1e-1]})

gives one slider per parameter above the figure. Two modes:

* ``"static"`` (default): every combination of values is drawn once, now, into a PNG frame held
  by an ``ipywidgets.Output``; the frames sit in (nested) ``ipywidgets.Stack`` containers whose
  ``selected_index`` is linked to the sliders with ``ipywidgets.jslink``. The link lives in the
  browser, so the slider keeps working in the built HTML book, where there is no kernel (the
  page needs the Jupyter widget JavaScript), and works the same in a live notebook.
* ``"live"``: nothing is precomputed; each slider move calls ``draw`` again in the kernel and
  replaces the one figure shown. Useful on Binder to explore a long list of values; in the
  static HTML only the first figure would show and the sliders would do nothing.

The default mode is ``"static"``; the environment variable ``BNLIB_WIDGETS=live`` switches every
figure of a notebook to live mode (the book build must not set it).

:func:`show_source` shows a function's source code in a chapter, highlighted.

Where the widget JavaScript is missing, a notebook viewer shows the widget's plain-text
fallback, which names the parameters and their values (see :meth:`InteractiveFigure.__repr__`).

For a reader with a screen reader, each frame is an ``<img>`` whose alternative text is the
description its figure carries (:func:`bnlib.plots.style.describe`; every figure of
:mod:`bnlib.plots` has one), and the book's pages name each slider after its description
(``_theme/widget-names.js``: ipywidgets gives the slider handle no accessible name).
"""

from __future__ import annotations

import base64
import html
import inspect
import itertools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ipywidgets
import matplotlib.pyplot as plt
from ipywidgets.widgets.widget_link import Link
from matplotlib.figure import Figure

from bnlib.plots import style

__all__ = [
    "DEFAULT_DPI",
    "MAX_FRAMES",
    "MODE_ENV",
    "InteractiveFigure",
    "figure_png",
    "interactive_figure",
    "show_source",
]

#: Resolution of precomputed frames: the book's figure resolution, so a frame's text is the
#: size of an inline figure's (see ``bnlib.plots.style``).
DEFAULT_DPI = style.DPI
#: Upper bound on precomputed frames per figure (the product of the slider lengths).
MAX_FRAMES = 64
#: Environment variable choosing the default mode (``static`` or ``live``).
MODE_ENV = "BNLIB_WIDGETS"
_MODES = ("static", "live")


def figure_png(fig: Figure, dpi: int = DEFAULT_DPI) -> bytes:
    """The figure as PNG bytes at ``dpi`` dots per inch (the figure is not closed): white
    background, smallest text size recorded (``bnlib.plots.style.figure_png``).

    The figure is saved as laid out (no ``bbox_inches="tight"``, which would let frames of one
    slider differ in size): lay it out in ``draw`` (``fig.tight_layout()`` or
    ``layout="constrained"``).
    """
    return style.figure_png(fig, dpi, bbox_inches=None)


def _png_output(png: bytes, alt: str) -> dict:
    """A notebook ``display_data`` output showing ``png`` with the alternative text ``alt``.

    The HTML form (an ``<img>`` with ``alt``) is what the widget JavaScript and Jupyter show:
    a plain ``image/png`` output is drawn without alternative text. The PNG and the plain-text
    form stay for other front ends.
    """
    data = base64.b64encode(png).decode("ascii")
    return {
        "output_type": "display_data",
        "data": {
            "text/html": f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">',
            "image/png": data,
            "text/plain": alt,
        },
        "metadata": {},
    }


def _options(name: str, values: Iterable | Mapping) -> list[tuple[str, Any]]:
    """(label, value) pairs for one slider; a Mapping gives its own labels."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Iterable, Mapping)):
        raise TypeError(
            f"sliders[{name!r}] must be a list of values (or a dict label -> value), "
            f"got {type(values).__name__}: {values!r}"
        )
    if isinstance(values, Mapping):
        pairs = [(str(label), value) for label, value in values.items()]
    else:
        pairs = [(_label(value), value) for value in values]
    if not pairs:
        raise ValueError(f"sliders[{name!r}] is empty: give at least one value to draw")
    labels = [label for label, _ in pairs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"sliders[{name!r}] has repeated values {repeated}: each slider position must differ"
        )
    return pairs


def _label(value: Any) -> str:
    """Short slider label: 4 significant digits for floats, str() otherwise."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class InteractiveFigure(ipywidgets.VBox):
    """Sliders above a figure that follows them (what :func:`interactive_figure` returns).

    Attributes:
        sliders: parameter name -> ``ipywidgets.SelectionSlider`` (its ``index`` is the position).
        stack: the outer ``ipywidgets.Stack`` of frames (static mode) or ``None`` (live mode).
        links: the ``ipywidgets.jslink`` objects joining slider indices to stack indices.
        frames: parameter values (a tuple in slider order) -> PNG bytes, for every frame drawn.
        mode: ``"static"`` or ``"live"``.
    """

    def __init__(self, children: Sequence[ipywidgets.Widget], summary: str, **kwargs: Any):
        super().__init__(children=tuple(children), **kwargs)
        self._summary = summary
        self.sliders: dict[str, ipywidgets.SelectionSlider] = {}
        self.stack: ipywidgets.Stack | None = None
        self.links: list[Link] = []
        self.frames: dict[tuple, bytes] = {}
        self.mode = "static"

    def __repr__(self) -> str:
        """Plain-text fallback shown where the widget JavaScript is missing."""
        return self._summary


def interactive_figure(
    draw: Callable[..., Figure],
    sliders: Mapping[str, Iterable | Mapping],
    *,
    initial: Mapping[str, Any] | None = None,
    descriptions: Mapping[str, str] | None = None,
    mode: str | None = None,
    dpi: int = DEFAULT_DPI,
    max_frames: int = MAX_FRAMES,
) -> InteractiveFigure:
    """Sliders over lists of parameter values, driving the figure ``draw(**params)``.

    Args:
        draw: called with one keyword argument per slider; returns a matplotlib ``Figure``
            (which this function closes after rendering it).
        sliders: parameter name -> list of values, in slider order (a dict label -> value gives
            custom labels, e.g. ``{"gamma=1, beta=0": (1.0, 0.0)}``). One slider per parameter;
            static mode draws every combination, so keep the product of the lengths small.
        initial: parameter name -> value shown first (default: each list's first value).
        descriptions: parameter name -> slider label (default: the name, ``_`` as spaces).
        mode: ``"static"`` (precomputed frames, responds without a kernel) or ``"live"`` (calls
            ``draw`` on every move; needs a kernel). Default: ``$BNLIB_WIDGETS`` or ``"static"``.
        dpi: resolution of the PNG frames (dots per inch).
        max_frames: refuse to precompute more frames than this (static mode).

    Returns:
        An :class:`InteractiveFigure` (an ``ipywidgets.VBox``); display it as a cell's last value.

    Raises:
        ValueError: no sliders, an empty or repeated value list, an unknown ``initial`` value or
            name, too many frames, or an unknown mode.
        TypeError: ``draw`` is not callable, a value list is not a list, or ``draw`` returned
            something other than a matplotlib ``Figure``.
    """
    if not callable(draw):
        raise TypeError(f"draw must be a function returning a matplotlib Figure, got {draw!r}")
    if not sliders:
        raise ValueError("sliders is empty: give at least one parameter, e.g. {'eps': [1e-5, 0.1]}")
    mode = mode or os.environ.get(MODE_ENV, "").strip().lower() or "static"
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r} (check ${MODE_ENV})")
    names = list(sliders)
    options = {name: _options(name, sliders[name]) for name in names}
    start = _initial_indices(options, initial or {})
    descriptions = dict(descriptions or {})

    controls = {
        name: ipywidgets.SelectionSlider(
            options=options[name],
            index=start[name],
            description=descriptions.get(name, name.replace("_", " ")),
            continuous_update=True,
            style={"description_width": "initial"},
            layout=ipywidgets.Layout(width="min(100%, 32em)"),
        )
        for name in names
    }
    summary = "Interactive figure (needs the Jupyter widget JavaScript): " + "; ".join(
        f"{controls[name].description} in {{{', '.join(label for label, _ in options[name])}}}"
        for name in names
    )

    def render(indices: Sequence[int]) -> tuple[tuple, bytes, str | None]:
        params = {name: options[name][i][1] for name, i in zip(names, indices)}
        fig = draw(**params)
        if not isinstance(fig, Figure):
            raise TypeError(
                f"draw({_call_text(params)}) returned {type(fig).__name__}, expected a matplotlib "
                "Figure: end draw with `return fig`"
            )
        try:
            png = figure_png(fig, dpi)
        finally:
            plt.close(fig)
        return tuple(params.values()), png, style.description(fig)

    def alt_text(indices: Sequence[int], described: str | None) -> str:
        """The frame's figure's own description, else its parameters (too short for the book)."""
        return described or "Figure for " + _call_text(
            {name: options[name][i][0] for name, i in zip(names, indices)}
        )

    if mode == "live":
        return _live_figure(controls, names, render, alt_text, start, summary)

    n_frames = 1
    for name in names:
        n_frames *= len(options[name])
    if n_frames > max_frames:
        sizes = " x ".join(str(len(options[name])) for name in names)
        raise ValueError(
            f"{sizes} = {n_frames} frames exceed max_frames={max_frames}: use fewer values, "
            "one figure per parameter, or raise max_frames if the page may grow"
        )
    frames: dict[tuple, bytes] = {}
    outputs: dict[tuple[int, ...], ipywidgets.Output] = {}
    for indices in itertools.product(*(range(len(options[name])) for name in names)):
        key, png, described = render(indices)
        frames[key] = png
        out = ipywidgets.Output()
        out.outputs = (_png_output(png, alt_text(indices, described)),)
        outputs[indices] = out

    links: list[Link] = []
    stack = _nested_stack(names, controls, outputs, start, (), links)
    widget = InteractiveFigure([*controls.values(), stack], summary)
    widget.sliders, widget.stack, widget.links, widget.frames = controls, stack, links, frames
    return widget


def _initial_indices(
    options: Mapping[str, list[tuple[str, Any]]], initial: Mapping[str, Any]
) -> dict[str, int]:
    """Slider position of each parameter's first value shown."""
    unknown = sorted(set(initial) - set(options))
    if unknown:
        raise ValueError(f"initial names {unknown} are not sliders (sliders: {sorted(options)})")
    start = {}
    for name, pairs in options.items():
        if name not in initial:
            start[name] = 0
            continue
        values = [value for _, value in pairs]
        matches = [i for i, value in enumerate(values) if _same(value, initial[name])]
        if not matches:
            raise ValueError(
                f"initial[{name!r}] = {initial[name]!r} is not among the slider's values {values}"
            )
        start[name] = matches[0]
    return start


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and the like: compare by identity
        return a is b


def _call_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" if not isinstance(value, str) else f"{name}={value}"
                     for name, value in params.items())


def _nested_stack(
    names: Sequence[str],
    controls: Mapping[str, ipywidgets.SelectionSlider],
    outputs: Mapping[tuple[int, ...], ipywidgets.Output],
    start: Mapping[str, int],
    prefix: tuple[int, ...],
    links: list[Link],
) -> ipywidgets.Stack:
    """A Stack over the values of ``names[len(prefix)]``, each child the Stack of the next name.

    Every Stack at depth d is jslinked to slider d, so the frame on show is the one whose index
    tuple equals the sliders' positions.
    """
    depth = len(prefix)
    name = names[depth]
    n = len(controls[name].options)
    if depth == len(names) - 1:
        children = [outputs[prefix + (i,)] for i in range(n)]
    else:
        children = [
            _nested_stack(names, controls, outputs, start, prefix + (i,), links) for i in range(n)
        ]
    stack = ipywidgets.Stack(children=children, selected_index=start[name])
    links.append(ipywidgets.jslink((controls[name], "index"), (stack, "selected_index")))
    return stack


def _live_figure(
    controls: Mapping[str, ipywidgets.SelectionSlider],
    names: Sequence[str],
    render: Callable[[Sequence[int]], tuple[tuple, bytes, str | None]],
    alt_text: Callable[[Sequence[int], str | None], str],
    start: Mapping[str, int],
    summary: str,
) -> InteractiveFigure:
    """One Output redrawn by ``draw`` in the kernel whenever a slider moves."""
    out = ipywidgets.Output()
    widget = InteractiveFigure([*controls.values(), out], summary)
    widget.sliders, widget.mode = dict(controls), "live"

    def redraw(_change: Any = None) -> None:
        indices = [controls[name].index for name in names]
        key, png, described = render(indices)
        widget.frames[key] = png
        out.outputs = (_png_output(png, alt_text(indices, described)),)

    redraw()
    for slider in controls.values():
        slider.observe(redraw, names="index")
    return widget


def show_source(*functions: Callable) -> Any:
    """The source code of ``functions`` as a highlighted Python block (an IPython display object).

    Chapters show the library's implementation with it instead of re-typing it, so the page
    always shows the code that ran. Renders as Markdown: a fenced ``python`` code block, highlighted by the
    book's own theme in the HTML and by Jupyter in a notebook.
    """
    from IPython.display import Markdown

    if not functions:
        raise ValueError("show_source needs at least one function, e.g. show_source(f)")
    sources = [inspect.getsource(inspect.unwrap(f)) for f in functions]
    return Markdown("```python\n" + "\n\n".join(s.rstrip() for s in sources) + "\n```")
