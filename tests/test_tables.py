"""bnlib.tables: rows of results as an HTML table, a Markdown pipe table and plain text.

The HTML is read back with Python's own HTML parser and the Markdown with markdown-it (the
parser MyST uses), so the checks do not depend on how bnlib.tables builds its strings.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from bnlib.tables import Table, glue_table, table

ROWS = [
    {"model": "with BN", "seed": 0, "final_accuracy": 0.97314},
    {"model": "without BN", "seed": 1, "final_accuracy": 0.9},
    {"model": "a<b & c", "seed": 2},
]
FORMATS = {"model": "", "seed": "d", "final_accuracy": ".2%"}


class Cells(HTMLParser):
    """Collects the text of every th/td, row by row, and each cell's style."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.styles: list[list[str | None]] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
            self.styles.append([])
        elif tag in ("th", "td"):
            self._in_cell = True
            self.rows[-1].append("")
            self.styles[-1].append(dict(attrs).get("style"))

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.rows[-1][-1] += data


def test_cells_are_formatted_by_their_column_spec():
    t = table(ROWS, FORMATS)
    assert t.header == ["model", "seed", "final accuracy"]
    assert t.cells == [["with BN", "0", "97.31%"], ["without BN", "1", "90.00%"],
                       ["a<b & c", "2", ""]]


def test_headers_can_be_renamed():
    assert table(ROWS, FORMATS, headers={"seed": "random seed"}).header[1] == "random seed"


def test_html_holds_every_cell_escaped_with_numbers_right_aligned():
    parser = Cells()
    parser.feed(table(ROWS, FORMATS)._repr_html_())
    assert parser.rows == [["model", "seed", "final accuracy"], ["with BN", "0", "97.31%"],
                           ["without BN", "1", "90.00%"], ["a<b & c", "2", ""]]
    assert parser.styles[1] == [None, "text-align: right", "text-align: right"]


def test_markdown_parses_as_a_table_with_the_same_cells():
    from markdown_it import MarkdownIt

    md = table(ROWS[:2], {"model": "", "final_accuracy": ".1%"}).markdown_text()
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    texts = [t.content for t in tokens if t.type == "inline"]
    assert texts == ["model", "final accuracy", "with BN", "97.3%", "without BN", "90.0%"]
    aligns = [t.attrGet("style") for t in tokens if t.type == "th_open"]
    assert aligns == ["text-align:left", "text-align:right"]


def test_markdown_escapes_a_pipe_inside_a_cell():
    from markdown_it import MarkdownIt

    md = Table(["a", "b"], [["x | y", "1"]]).markdown_text()
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    assert [t.content for t in tokens if t.type == "inline"][2] == "x | y"
    assert sum(t.type == "td_open" for t in tokens) == 2


def test_plain_text_aligns_numbers_right_and_words_left():
    text = str(Table(["name", "n"], [["a", "5"], ["longer", "12"]]))
    assert text.splitlines() == ["name     n", "a        5", "longer  12"]


def test_rows_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="2 cells"):
        Table(["a", "b"], [["1"]])


@pytest.mark.parametrize("text, numeric", [
    ("12", True), ("-0.5", True), ("97.31%", True), ("1e-05", True), ("1,024", True),
    ("nan", True), ("BN", False), ("", False), ("12 ms", False),
])
def test_a_column_is_numeric_when_every_filled_cell_is_a_number(text, numeric):
    assert Table(["c"], [[text], [""]]).numeric == [numeric and bool(text)]


def _glued(name, rows):
    """What ``glue_table(name, rows)`` publishes through myst_nb's own glue in a real IPython
    shell: ``(data, metadata)`` of each published output."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    # a Jupyter kernel formats every MIME type; a terminal shell only plain text
    shell.display_formatter.active_types = shell.display_formatter.format_types
    published = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: published.append((data, metadata))
    try:
        glue_table(name, rows)
    finally:
        InteractiveShell.clear_instance()
    return published


def test_glue_table_stores_the_markdown_for_a_numbered_table():
    """The glued output is the Markdown table under the name, tagged for myst-nb, and nothing
    is shown in place."""
    rows = table(ROWS[:2], {"model": "", "final_accuracy": ".1%"})
    published = _glued("tbl_final", rows)
    assert len(published) == 1
    data, metadata = published[0]
    # "display=False": myst-nb hides the output under its record prefix
    assert data["application/papermill.record/text/markdown"] == rows.markdown_text()
    assert "text/markdown" not in data
    assert metadata["scrapbook"]["name"] == "tbl_final"


def test_glue_table_takes_markdown_text_as_it_is():
    text = "| method | difference |\n|---|---|\n| `a` | 1.0e-16 |"
    [(data, metadata)] = _glued("tbl_text", text)
    assert data["application/papermill.record/text/markdown"] == text
    assert metadata["scrapbook"]["name"] == "tbl_text"


def test_caption_and_notes_frame_the_html_and_the_text_but_not_the_markdown():
    t = table(ROWS[:1], FORMATS, caption="Final accuracy", notes=["one seed & " + "long " * 20])
    page = t._repr_html_()
    assert page.index("<caption>Final accuracy</caption>") < page.index("<thead>")
    assert page.endswith("</table>" + '<p class="bnlib-table-note">one seed &amp; '
                         + "long " * 20 + "</p>")
    text = str(t).splitlines()
    assert text[0] == "Final accuracy" and text[1].startswith("model")
    assert text[3].startswith("one seed & long") and max(map(len, text)) <= 79
    assert "Final accuracy" not in t.markdown_text() and "one seed" not in t.markdown_text()
    plain = table(ROWS[:1], FORMATS)._repr_html_()
    assert "<caption>" not in plain and "<p" not in plain


def test_a_number_that_rounds_to_zero_shows_no_sign():
    rows = [{"change": -0.0004, "count": -3, "name": "-0.0"}, {"change": 0.012}]
    t = table(rows, {"change": "+.1%", "count": "d", "name": ""})
    assert t.cells == [["0.0%", "-3", "-0.0"], ["+1.2%", "", ""]]  # text stays as it is


def test_a_nan_shows_the_column_s_missing_text_and_only_there():
    rows = [{"mean": 0.0285, "sd": float("nan"), "other": float("nan")}]
    t = table(rows, {"mean": ".2%", "sd": ".2%", "other": ".2%"}, missing={"sd": "one seed"})
    assert t.cells == [["2.85%", "one seed", "nan%"]]
    assert table([{"sd": 0.0012}], {"sd": ".2%"}, missing={"sd": "one seed"}).cells == [["0.12%"]]
