"""bnlib.widgets: sliders linked to precomputed frames, checked against figures drawn directly."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ipywidgets.widgets.widget_link import Link  # noqa: E402

from bnlib.widgets import InteractiveFigure, interactive_figure  # noqa: E402

DPI = 20


def draw_line(slope, offset=0.0):
    fig, ax = plt.subplots(figsize=(1.5, 1.0))
    ax.plot([0, 1], [offset, offset + slope])
    ax.set_ylim(-4, 4)
    return fig


def png_drawn_directly(**params) -> bytes:
    """The frame expected for ``params``, rendered with matplotlib alone."""
    fig = draw_line(**params)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def pixels(png: bytes) -> np.ndarray:
    """The decoded image (the PNG's metadata, such as its smallest text size, aside)."""
    return plt.imread(io.BytesIO(png), format="png")


def same_image(a: bytes, b: bytes) -> bool:
    return bool(np.array_equal(pixels(a), pixels(b)))


def shown_png(output: ipywidgets.Output) -> bytes:
    (item,) = output.outputs
    assert item["output_type"] == "display_data"
    return base64.b64decode(item["data"]["image/png"])


def test_one_slider_stacks_one_frame_per_value():
    slopes = [-2.0, 0.0, 1.0, 3.0]
    widget = interactive_figure(draw_line, {"slope": slopes}, dpi=DPI)
    assert isinstance(widget, InteractiveFigure)
    slider = widget.sliders["slope"]
    assert isinstance(slider, ipywidgets.SelectionSlider)
    assert [value for _, value in slider.options] == slopes
    assert slider.index == 0 and widget.stack.selected_index == 0
    assert len(widget.stack.children) == len(slopes)
    for i, slope in enumerate(slopes):
        assert same_image(shown_png(widget.stack.children[i]), png_drawn_directly(slope=slope))
    assert len({shown_png(out) for out in widget.stack.children}) == len(slopes)
    (link,) = widget.links
    assert isinstance(link, Link)
    assert link.source == (slider, "index")
    assert link.target == (widget.stack, "selected_index")
    assert widget.children == (slider, widget.stack)


def test_two_sliders_nest_stacks_over_the_grid():
    slopes, offsets = [1.0, 2.0, 3.0], [-1.0, 1.0]
    widget = interactive_figure(
        draw_line, {"slope": slopes, "offset": offsets}, initial={"offset": 1.0}, dpi=DPI
    )
    assert len(widget.frames) == 6
    outer = widget.stack
    assert len(outer.children) == 3
    for i, slope in enumerate(slopes):
        inner = outer.children[i]
        assert isinstance(inner, ipywidgets.Stack)
        assert inner.selected_index == 1  # initial offset 1.0 is the second value
        for j, offset in enumerate(offsets):
            expected = png_drawn_directly(slope=slope, offset=offset)
            assert same_image(shown_png(inner.children[j]), expected)
    linked = {(link.source[0].description, id(link.target[0])) for link in widget.links}
    assert ("slope", id(outer)) in linked
    assert all(("offset", id(inner)) in linked for inner in outer.children)
    assert len(widget.links) == 1 + len(slopes)


def test_mapping_gives_labels_and_descriptions_apply():
    widget = interactive_figure(
        draw_line,
        {"slope": {"flat": 0.0, "steep": 3.0}},
        descriptions={"slope": "line slope"},
        dpi=DPI,
    )
    slider = widget.sliders["slope"]
    assert slider.options == (("flat", 0.0), ("steep", 3.0))
    assert slider.description == "line slope"
    assert "line slope in {flat, steep}" in repr(widget)
    assert widget._repr_mimebundle_()["text/plain"].startswith("Interactive figure")


def test_numpy_values_are_accepted():
    widget = interactive_figure(draw_line, {"slope": np.array([1.0, 2.0])}, dpi=DPI)
    assert len(widget.stack.children) == 2


def test_live_mode_redraws_on_slider_move():
    widget = interactive_figure(draw_line, {"slope": [0.0, 2.0]}, mode="live", dpi=DPI)
    assert widget.mode == "live" and widget.stack is None
    out = widget.children[-1]
    assert same_image(shown_png(out), png_drawn_directly(slope=0.0))
    widget.sliders["slope"].index = 1
    assert same_image(shown_png(out), png_drawn_directly(slope=2.0))


def test_mode_from_environment(monkeypatch):
    monkeypatch.setenv("BNLIB_WIDGETS", "live")
    assert interactive_figure(draw_line, {"slope": [1.0]}, dpi=DPI).mode == "live"
    monkeypatch.setenv("BNLIB_WIDGETS", "sometimes")
    with pytest.raises(ValueError, match="mode must be one of"):
        interactive_figure(draw_line, {"slope": [1.0]})


def test_figures_are_closed():
    before = plt.get_fignums()
    interactive_figure(draw_line, {"slope": [1.0, 2.0, 3.0]}, dpi=DPI)
    assert plt.get_fignums() == before


@pytest.mark.parametrize(
    ("sliders", "kwargs", "error", "message"),
    [
        ({}, {}, ValueError, "sliders is empty"),
        ({"slope": []}, {}, ValueError, r"sliders\['slope'\] is empty"),
        ({"slope": 2.0}, {}, TypeError, "must be a list of values"),
        ({"slope": "steep"}, {}, TypeError, "must be a list of values"),
        ({"slope": [1.0, 1.0]}, {}, ValueError, "repeated values"),
        ({"slope": [1.0, 2.0]}, {"initial": {"slope": 5.0}}, ValueError, "not among"),
        ({"slope": [1.0, 2.0]}, {"initial": {"tilt": 1.0}}, ValueError, "are not sliders"),
        ({"slope": [1.0, 2.0], "offset": [0.0, 1.0, 2.0]}, {"max_frames": 5}, ValueError,
         "2 x 3 = 6 frames exceed max_frames=5"),
        ({"slope": [1.0]}, {"mode": "movie"}, ValueError, "mode must be one of"),
    ],
)
def test_bad_arguments_say_what_is_wrong(sliders, kwargs, error, message):
    with pytest.raises(error, match=message):
        interactive_figure(draw_line, sliders, dpi=DPI, **kwargs)


def test_draw_must_return_a_figure():
    def forgets_return(slope):
        draw_line(slope)

    with pytest.raises(TypeError, match=r"draw\(slope=1.0\) returned NoneType.*return fig"):
        interactive_figure(forgets_return, {"slope": [1.0]})
    with pytest.raises(TypeError, match="draw must be a function"):
        interactive_figure("draw_line", {"slope": [1.0]})
    plt.close("all")


def test_show_source_is_the_real_source():
    import inspect

    from bnlib.widgets import show_source

    shown = show_source(draw_line, png_drawn_directly).data
    assert shown.startswith("```python\n") and shown.endswith("\n```")
    assert inspect.getsource(draw_line).rstrip() in shown
    assert inspect.getsource(png_drawn_directly).rstrip() in shown
    with pytest.raises(ValueError, match="at least one function"):
        show_source()


def test_frames_show_as_images_with_their_figures_descriptions():
    import html
    import re

    from bnlib.plots.style import describe

    def described(slope):
        return describe(draw_line(slope), f"A line of slope {slope:g} & more, on a fixed axis")

    widget = interactive_figure(described, {"slope": [1.0, 2.0]}, dpi=DPI)
    for out, slope in zip(widget.stack.children, (1.0, 2.0)):
        (item,) = out.outputs
        page = item["data"]["text/html"]
        alt = html.unescape(re.search(r'alt="([^"]*)"', page).group(1))
        assert alt == f"A line of slope {slope:g} & more, on a fixed axis"
        assert "&amp;" in page
        src = re.search(r'src="data:image/png;base64,([^"]*)"', page).group(1)
        assert base64.b64decode(src) == shown_png(out)
    # a figure without a description falls back on its parameters (too short for the book)
    plain = interactive_figure(draw_line, {"slope": [1.0]}, dpi=DPI)
    assert 'alt="Figure for slope=1"' in plain.stack.children[0].outputs[0]["data"]["text/html"]
