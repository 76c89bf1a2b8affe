"""Glued numbers that round to zero print without a sign, as every number bnlib formats does.

A ``{glue:text}`key:.3f``` role is formatted by myst-nb, so a small negative value would read
"-0.000". After the doctree is resolved (glue references from other pages included), each
pasted text that is a formatted zero loses its sign (:func:`bnlib.prose.unsigned_zero`).
"""

from __future__ import annotations

from docutils import nodes

from bnlib.prose import unsigned_zero

#: The class myst-nb gives the inline node of a pasted ``{glue:text}``.
PASTED_TEXT = "pasted-text"


def unsign_glued_zeros(app, doctree: nodes.document, docname: str = "") -> None:
    """Replace, in ``doctree``, every pasted text that shows a signed zero by the unsigned one."""
    for node in list(doctree.findall(nodes.inline)):
        if PASTED_TEXT not in node.get("classes", []):
            continue
        text = node.astext()
        fixed = unsigned_zero(text)
        if fixed != text:
            node.children = [nodes.Text(fixed)]


def setup(app):
    app.connect("doctree-resolved", unsign_glued_zeros)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
