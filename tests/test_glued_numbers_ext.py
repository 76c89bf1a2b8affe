"""_ext/glued_numbers.py: a pasted glue number that shows a signed zero loses the sign."""

from __future__ import annotations

import sys
from pathlib import Path

from docutils import nodes
from docutils.utils import new_document

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
import glued_numbers  # noqa: E402


def pasted(text: str, classes=("pasted-text",)) -> nodes.inline:
    return nodes.inline(text, text, classes=list(classes))


def test_only_pasted_signed_zeros_change():
    doctree = new_document("page")
    paragraph = nodes.paragraph()
    cells = [pasted("-0.000"), pasted("-0.013"), pasted("+0.0%"), pasted("-0.0", classes=()),
             nodes.Text("-0.0")]
    paragraph.extend(cells)
    doctree.append(paragraph)
    glued_numbers.unsign_glued_zeros(None, doctree, "page")
    assert [c.astext() for c in paragraph.children] == ["0.000", "-0.013", "0.0%", "-0.0",
                                                          "-0.0"]
