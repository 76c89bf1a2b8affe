"""bnlib.plots.style: the book's figure style, the PNG every figure is shown as, the panel grid.

Checked against matplotlib and Pillow themselves: text sizes set by hand, pixels and PNG text
chunks read back with Pillow, subplot geometry read from matplotlib's own subplot specs.
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from bnlib.plots import shift, style, variants  # noqa: E402

#: The browser test's threshold: no text smaller than this many pixels on screen at 1280 px.
SMALLEST_PIXELS = 9.0


def read_png(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def grid_shape(axes) -> list[tuple[int, int]]:
    """(row, column) of every axes, from matplotlib's subplot specs."""
    return [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in axes]


def test_importing_the_package_applies_the_style():
    for key, value in style.STYLE.items():
        assert matplotlib.rcParams[key] == matplotlib.rcParams.validate[key](value), key


def test_smallest_text_is_the_smallest_visible_non_empty_text():
    fig, ax = plt.subplots()
    ax.set_xticks([0, 1], ["a", "b"], fontsize=12)
    ax.set_yticks([0, 1], ["c", "d"], fontsize=12)
    ax.set_title("title", fontsize=14)
    ax.text(0.5, 0.5, "tiny", fontsize=6.5)
    ax.text(0.5, 0.2, "hidden", fontsize=3).set_visible(False)
    ax.text(0.5, 0.2, "   ", fontsize=2)
    assert style.smallest_text_points(fig) == 6.5
    plt.close(fig)


def test_smallest_text_of_a_figure_without_text_is_nan():
    fig = plt.figure()
    assert math.isnan(style.smallest_text_points(fig))
    plt.close(fig)


def test_figure_png_is_opaque_white_and_records_its_smallest_text():
    fig, ax = plt.subplots(figsize=(2.0, 1.5))
    fig.patch.set_alpha(0.0)  # a transparent figure must still come out white
    ax.plot([0, 1], [0, 1])
    ax.legend(["line"], fontsize=7.5)
    image = read_png(style.figure_png(fig, dpi=50, bbox_inches=None))
    plt.close(fig)
    assert image.size == (100, 75)  # 2.0 x 1.5 inches at 50 dpi
    assert image.getpixel((0, 0))[:3] == (255, 255, 255)
    assert image.mode == "RGB" or image.getpixel((0, 0))[3] == 255
    assert float(image.text[style.SMALLEST_TEXT_KEY]) == 7.5


def test_panel_grid_puts_four_panels_in_two_rows_of_two():
    fig, axes = style.panel_grid(4)
    assert grid_shape(axes) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert fig.get_size_inches()[0] == pytest.approx(style.COLUMN_INCHES)
    plt.close(fig)


def test_panel_grid_leaves_a_short_last_row_and_a_single_panel_alone():
    fig, axes = style.panel_grid(3, columns=2)
    assert grid_shape(axes) == [(0, 0), (0, 1), (1, 0)]
    plt.close(fig)
    fig, axes = style.panel_grid(1)
    assert grid_shape(axes) == [(0, 0)]
    plt.close(fig)


def test_panel_grid_gives_the_first_panel_a_row_when_the_last_would_be_short():
    fig, axes = style.panel_grid(3, span_first=True)
    specs = [ax.get_subplotspec() for ax in axes]
    assert [(s.rowspan, s.colspan) for s in specs] == [
        (range(0, 1), range(0, 2)), (range(1, 2), range(0, 1)), (range(1, 2), range(1, 2))]
    plt.close(fig)
    fig, axes = style.panel_grid(4, span_first=True)  # full rows: nothing spans
    assert grid_shape(axes) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(len(ax.get_subplotspec().colspan) == 1 for ax in axes)
    plt.close(fig)


def test_panel_grid_shares_y_when_asked():
    fig, axes = style.panel_grid(3, sharey=True)
    axes[0].set_ylim(-3, 7)
    assert all(ax.get_ylim() == (-3, 7) for ax in axes)
    plt.close(fig)


@pytest.mark.parametrize("count, columns", [(0, 2), (2, 0)])
def test_panel_grid_refuses_no_panel_or_no_column(count, columns):
    with pytest.raises(ValueError, match="at least 1"):
        style.panel_grid(count, columns=columns)


def test_figures_display_through_figure_png_in_ipython():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        assert style.show_figures_with_style()
        fig, ax = plt.subplots(figsize=(2.0, 1.0))
        ax.plot([0, 1], [1, 0])
        data, _ = shell.display_formatter.format(fig)
        plt.close(fig)
    finally:
        InteractiveShell.clear_instance()
    image = read_png(base64.b64decode(data["image/png"]))
    assert float(image.text[style.SMALLEST_TEXT_KEY]) == style.STYLE["xtick.labelsize"]


def test_figures_are_not_redirected_outside_ipython():
    assert style.show_figures_with_style() is False


class FakeHistory:
    """What shift's figures read from a run: initial accuracy, step evaluations, probes."""

    def __init__(self, offset: float):
        steps = list(range(0, 50, 10))
        self.initial = {"test_accuracy": 0.1}
        self.step_evals = [{"step": s, "test_accuracy": 0.5 + offset} for s in steps]
        band = {"step": steps, "p15": [-1.0 + offset] * 5, "p50": [offset] * 5,
                "p85": [1.0 + offset] * 5}
        self.probes = {"bands": band}


def landscape(offset: float) -> dict[str, list[float]]:
    steps = [0, 10, 20]
    return {"step": steps, "loss_min": [1.0 + offset] * 3, "loss_max": [2.0 + offset] * 3,
            "grad_change_min": [0.1] * 3, "grad_change_max": [0.5] * 3,
            "beta_smoothness": [3.0 + offset] * 3}


NAMES = ("standard", "BN", "noisy BN")


def multi_panel_figures():
    histories = {name: FakeHistory(i / 10) for i, name in enumerate(NAMES)}
    bands = {name: h.probes["bands"] for name, h in histories.items()}
    ics = {name: {"step": [0, 10], "relative": [0.5, 0.4], "cosine": [0.9, 0.8]} for name in NAMES}
    return {
        "figure1": shift.figure1(histories, "bands", "input to sigmoid 0"),
        "percentile_bands": shift.percentile_bands(bands, "input to sigmoid 0"),
        "ics_over_steps": shift.ics_over_steps(ics, "layer 2"),
        "landscape_over_steps": shift.landscape_over_steps(
            {name: landscape(i / 10) for i, name in enumerate(NAMES)}),
        "normalisation_blocks": variants.normalisation_blocks(),
    }


def test_multi_panel_figures_have_at_most_two_panels_a_row_and_fit_the_column():
    figures = multi_panel_figures()
    try:
        for name, fig in figures.items():
            columns = {column for _, column in grid_shape(fig.axes)}
            assert columns <= {0, 1}, name
            assert fig.get_size_inches()[0] <= style.COLUMN_INCHES + 1e-9, name
        assert grid_shape(figures["figure1"].axes) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert len(figures["normalisation_blocks"].axes) == 4
    finally:
        for fig in figures.values():
            plt.close(fig)


def test_multi_panel_figures_text_is_readable_at_the_column_width():
    """At most COLUMN_INCHES wide, a figure is shown at its natural size, so a point of text is
    DPI / 72 pixels on screen; the PNG's recorded size is the one measured."""
    figures = multi_panel_figures()
    try:
        for name, fig in figures.items():
            image = read_png(style.figure_png(fig))
            points = float(image.text[style.SMALLEST_TEXT_KEY])
            assert points * style.DPI / 72 >= SMALLEST_PIXELS, (name, points)
            assert np.asarray(image)[0, 0, :3].tolist() == [255, 255, 255], name
    finally:
        for fig in figures.values():
            plt.close(fig)


def test_describe_gives_the_figure_an_alternative_text_written_into_its_png():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert style.description(fig) is None
    assert "Description" not in read_png(style.figure_png(fig)).text
    assert style.describe(fig, "A rising  line from\n(0, 0) to (1, 1).") is fig
    assert style.description(fig) == "A rising line from (0, 0) to (1, 1)."
    assert read_png(style.figure_png(fig)).text["Description"] == style.description(fig)
    style.describe(fig, "A straight line through the origin, slope 1.")
    frame = read_png(style.figure_png(fig, bbox_inches=None))
    assert frame.text["Description"].startswith("A straight")
    plt.close(fig)


@pytest.mark.parametrize("text", ["", "Test accuracy per epoch", "../_images/439a.png and more",
                                  "the figure saved as loss.png shows"])
def test_describe_refuses_short_texts_and_file_names(text):
    fig = plt.figure()
    with pytest.raises(ValueError):
        style.describe(fig, text)
    plt.close(fig)


def test_every_figure_of_a_plotting_module_carries_a_description():
    """Two plotting functions picked from different modules, drawn on synthetic data."""
    steps = [0, 10, 20]
    band = {"step": steps, "p15": [0.0, 0.1, 0.2], "p50": [0.5, 0.5, 0.6], "p85": [1.0, 1.1, 1.2]}
    fig = shift.percentile_bands({"standard": band, "BN": band}, "input of sigmoid 3")
    text = style.description(fig)
    assert "2 panels" in text and "standard and BN" in text and "median 0.6" in text
    plt.close(fig)
    fig = variants.normalisation_blocks(n=2, c=4, hw=3, groups=2)
    assert "2 channels of its group" in style.description(fig)
    plt.close(fig)
