"""Sphinx extension: the book's HTML for readers with a screen reader.

Three things the page would otherwise get wrong, each fixed where the markup is made:

* **Figures.** A figure drawn by ``bnlib.plots`` carries a short description of what it shows
  (``bnlib.plots.style.describe``), written into its PNG as the PNG standard's ``Description``
  text. myst-nb turns a notebook's image output into an image without alternative text (of an
  output's metadata it reads only the width and height), so a screen reader would read out the
  file's hash. When a document has been read, each image without ``alt`` takes the
  ``Description`` of its PNG; an ``alt`` given on the page (a ``figure`` directive's ``:alt:``,
  a cell's ``mystnb: image: alt:``) is kept.
* **Hidden code cells.** myst-nb's "Show code cell source" toggle is a ``<summary>`` named
  "Toggle hidden content" by an ``aria-label``, so its accessible name leaves out the words it
  shows (WCAG 2.5.3, label in name). Here it is the same markup without that label: the
  summary is named by its visible text.
* **The bibliography.** docutils writes each citation with ``role="doc-biblioentry"``, which
  DPUB-ARIA 1.1 deprecates and which is not a list item of the ``role="list"`` around it;
  here each citation is a ``listitem`` of that list.
"""

from __future__ import annotations

import os
from html import escape

from docutils import nodes
from PIL import Image

#: The PNG text keyword holding the description (the same as ``bnlib.plots.style``'s).
DESCRIPTION_KEY = "Description"


def png_description(path: str) -> str | None:
    """The ``Description`` text of a PNG file, or None (no such file, not a PNG, no text)."""
    if not path.lower().endswith(".png") or not os.path.isfile(path):
        return None
    with Image.open(path) as image:
        return (getattr(image, "text", None) or {}).get(DESCRIPTION_KEY)


def image_file(app, node: nodes.image) -> str:
    """The file an image node shows. Sphinx's image collector (also on ``doctree-read``) may
    have run first and rewritten ``uri`` relative to the source folder, keeping that path in
    ``candidates``; before it, ``uri`` is relative to the document, or to the source folder if
    it starts with ``/`` (as myst-nb writes the outputs it extracts)."""
    candidate = (node.get("candidates") or {}).get("*")
    if candidate and "://" not in candidate:
        return os.path.normpath(os.path.join(app.srcdir, candidate))
    return app.env.relfn2path(node["uri"], app.env.docname)[1]


def add_alternative_texts(app, doctree: nodes.document) -> None:
    """Give every image of the document that has no ``alt`` its PNG's description."""
    for node in doctree.findall(nodes.image):
        uri = node.get("uri", "")
        if node.get("alt") or uri.startswith("data:") or "://" in uri:
            continue
        description = png_description(image_file(app, node))
        if description:
            node["alt"] = description


def visit_hidden_cell(self, node) -> None:
    """myst-nb's ``visit_HideCellInput`` without the summary's ``aria-label``."""
    self.body.append(f'<details class="admonition hide {" ".join(node["classes"])}">\n')
    self.body.append("<summary>\n")
    self.body.append(f'<p class="collapsed admonition-title">{escape(node["prompt_show"])}</p>\n')
    self.body.append(f'<p class="expanded admonition-title">{escape(node["prompt_hide"])}</p>\n')
    self.body.append("</summary>\n")


def depart_hidden_cell(self, node) -> None:
    self.body.append("</details>\n")


def visit_citation(self, node: nodes.citation) -> None:
    """docutils' ``visit_citation`` with each entry a ``listitem`` of the citation list."""
    if not isinstance(node.previous_sibling(), type(node)):
        self.body.append('<div role="list" class="citation-list">\n')
    self.body.append(self.starttag(node, "div", classes=[node.tagname], role="listitem"))


def depart_citation(self, node: nodes.citation) -> None:
    self.body.append("</div>\n")
    if not isinstance(node.next_node(descend=False, siblings=True), type(node)):
        self.body.append("</div>\n")


def setup(app):
    app.setup_extension("myst_nb")
    from myst_nb.sphinx_ import HideCodeCellNode

    app.connect("doctree-read", add_alternative_texts)
    app.add_node(HideCodeCellNode, override=True, html=(visit_hidden_cell, depart_hidden_cell))
    app.add_node(nodes.citation, override=True, html=(visit_citation, depart_citation))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
