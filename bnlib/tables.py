"""Tables of results that fit the page: HTML in the book and in Jupyter, Markdown for a
numbered table, plain text in a terminal.

A chapter shows rows of results as the last value of a cell::

    from bnlib.tables import table
    table(rows, {"model": "", "seed": "d", "final_accuracy": ".2%"})

and the page renders an HTML table the width of its content (it wraps long cells instead of
scrolling sideways). For a numbered, captioned table ("Table 5.1"), glue its Markdown form and
place it inside a MyST ``{table}`` directive::

    glue_table("tbl_final", table(rows, formats))

    ````{table} Final test accuracy of each seed.
    :name: tbl-final
    ```{glue:md} tbl_final
    :format: myst
    ```
    ````
"""

from __future__ import annotations

import html
import math
import numbers
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from bnlib.prose import number

__all__ = ["Table", "glue_table", "table"]


class Table:
    """Rows of values formatted column by column (what :func:`table` returns).

    Attributes:
        header: the column titles, in order.
        cells: one list of formatted strings per row ("" where a row has no value).
        numeric: per column, whether every non-empty cell reads as a number (right-aligned).
        caption: a title shown above the table ("" for none).
        notes: sentences shown below it, one paragraph each.

    The caption and notes belong to a table shown as a cell's value; the Markdown form leaves
    them out (a numbered table's caption is its ``{table}`` directive's).
    """

    def __init__(self, header: Sequence[str], cells: Sequence[Sequence[str]],
                 caption: str = "", notes: Sequence[str] = ()):
        self.header = list(header)
        self.cells = [list(row) for row in cells]
        self.caption = caption
        self.notes = list(notes)
        if any(len(row) != len(self.header) for row in self.cells):
            raise ValueError(f"every row needs {len(self.header)} cells, one per column")
        columns = [[row[i] for row in self.cells if row[i]] for i in range(len(self.header))]
        self.numeric = [bool(filled) and all(map(_looks_numeric, filled)) for filled in columns]

    def _repr_html_(self) -> str:
        """An HTML table styled by the book's theme (Jupyter and the book display this)."""

        def cell(tag: str, text: str, numeric: bool) -> str:
            align = ' style="text-align: right"' if numeric else ""
            return f"<{tag}{align}>{html.escape(text)}</{tag}>"

        head = "".join(cell("th", h, n) for h, n in zip(self.header, self.numeric))
        body = "".join(
            "<tr>" + "".join(cell("td", c, n) for c, n in zip(row, self.numeric)) + "</tr>"
            for row in self.cells
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        notes = "".join(f'<p class="bnlib-table-note">{html.escape(note)}</p>'
                        for note in self.notes)
        return (f'<table class="bnlib-table">{caption}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>{notes}")

    def markdown(self) -> Any:
        """The table as a Markdown pipe table (an ``IPython.display.Markdown``), for ``glue``."""
        from IPython.display import Markdown

        return Markdown(self.markdown_text())

    def markdown_text(self) -> str:
        """The table as a Markdown pipe table (text)."""

        def row(values: Sequence[str]) -> str:
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

        rule = "|" + "|".join("---:" if n else ":---" for n in self.numeric) + "|"
        return "\n".join([row(self.header), rule, *(row(r) for r in self.cells)])

    def __str__(self) -> str:
        """Plain text: the caption, the columns separated by two spaces (numbers
        right-aligned), then the notes wrapped at 79 characters."""
        widths = [max([len(h), *(len(row[i]) for row in self.cells)])
                  for i, h in enumerate(self.header)]

        def line(values: Sequence[str]) -> str:
            return "  ".join(
                v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, self.numeric)
            ).rstrip()

        notes = [textwrap.fill(note, 79) for note in self.notes]
        caption = [self.caption] if self.caption else []
        return "\n".join([*caption, line(self.header), *(line(r) for r in self.cells), *notes])

    __repr__ = __str__


def table(
    rows: Sequence[Mapping[str, Any]],
    formats: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
    caption: str = "",
    notes: Sequence[str] = (),
    missing: Mapping[str, str] | None = None,
) -> Table:
    """A :class:`Table` of ``rows`` with the columns of ``formats`` (column -> format spec).

    Args:
        rows: one mapping per row; a row without a column shows an empty cell.
        formats: column key -> format spec (``".2%"``, ``"d"``, ``""`` for ``str()``), in order;
            a number that rounds to zero shows no sign (:func:`bnlib.prose.number`).
        headers: column key -> title shown (default: the key, ``_`` as spaces).
        caption, notes: a title above the table and sentences below it (:class:`Table`).
        missing: column key -> what a NaN in that column shows instead of ``nan`` (say,
            ``"one seed"`` for a spread over a single seed).
    """
    headers, missing = dict(headers or {}), dict(missing or {})
    header = [headers.get(c, c.replace("_", " ")) for c in formats]
    cells = [[_cell(row[c], f, missing.get(c)) if c in row else "" for c, f in formats.items()]
             for row in rows]
    return Table(header, cells, caption=caption, notes=notes)


def _cell(value: Any, spec: str, missing: str | None = None) -> str:
    """A number through :func:`bnlib.prose.number` (a rounded zero has no sign; a NaN shows
    ``missing`` when given); anything else through ``format``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if missing is not None and math.isnan(value):
            return missing
        return number(value, spec)
    return format(value, spec)


def glue_table(name: str, rows: Table | str) -> None:
    """Glue ``rows`` (a :class:`Table`, or a Markdown pipe table as text) as Markdown under
    ``name`` (not displayed in place), for a MyST ``{table}`` directive holding
    ```{glue:md} name``` with ``:format: myst``."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(rows if isinstance(rows, str) else rows.markdown_text()), display=False)


def _looks_numeric(text: str) -> bool:
    """True for "12", "-0.5", "97.31%", "1e-05", "nan", "inf"."""
    try:
        float(text.rstrip("%").replace(",", ""))
    except ValueError:
        return False
    return True
