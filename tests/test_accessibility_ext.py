"""_ext/accessibility.py: images take their PNG's description; hidden cells and citations."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from docutils import nodes  # noqa: E402
from docutils.utils import new_document  # noqa: E402

from bnlib.plots.style import describe, figure_png  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
import accessibility  # noqa: E402


def png_file(folder: Path, name: str, text: str | None) -> Path:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    if text:
        describe(fig, text)
    path = folder / name
    path.write_bytes(figure_png(fig))
    plt.close(fig)
    return path


def test_images_without_alt_take_their_pngs_description(tmp_path):
    """Paths as Sphinx gives them: relative to the document, to the source folder with a
    leading ``/`` (myst-nb's outputs), or in ``candidates`` once the image collector ran."""
    source, outputs = tmp_path / "src", tmp_path / "outputs"
    (source / "book").mkdir(parents=True)
    outputs.mkdir()
    text = "A line rising from 0 to 1 across the panel"
    png_file(source / "book", "near.png", text)
    png_file(outputs, "far.png", text)
    png_file(outputs, "plain.png", None)
    document = new_document("page")
    images = [nodes.image(uri="near.png"), nodes.image(uri="/../outputs/far.png"),
              nodes.image(uri="anything", candidates={"*": "../outputs/far.png"}),
              nodes.image(uri="near.png", alt="Given on the page, kept as it is"),
              nodes.image(uri="/../outputs/plain.png"),
              nodes.image(uri="data:image/png;base64,AAAA"), nodes.image(uri="missing.png")]
    for image in images:
        document += image

    def relfn2path(uri, docname):  # Sphinx's rule
        relative = uri[1:] if uri.startswith("/") else str(Path(docname).parent / uri)
        return relative, str(source / relative)

    env = SimpleNamespace(docname="book/page", relfn2path=relfn2path)
    accessibility.add_alternative_texts(SimpleNamespace(env=env, srcdir=str(source)), document)
    assert [image.get("alt") for image in images] == [
        text, text, text, "Given on the page, kept as it is", None, None, None]


def test_png_description_of_a_file_that_is_not_a_png(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    assert accessibility.png_description(str(tmp_path / "notes.txt")) is None
    assert accessibility.png_description(str(tmp_path / "absent.png")) is None


def test_citations_are_list_items_of_one_list():
    from docutils.core import publish_string
    from docutils.writers.html5_polyglot import HTMLTranslator, Writer

    class Translator(HTMLTranslator):
        visit_citation = accessibility.visit_citation
        depart_citation = accessibility.depart_citation

    writer = Writer()
    writer.translator_class = Translator
    source = "See [A]_ and [B]_.\n\n.. [A] The first.\n.. [B] The second.\n\nAfter.\n\n.. [C] Alone.\n"
    page = publish_string(source, writer=writer).decode()
    assert page.count('<div role="list" class="citation-list">') == 2
    assert page.count('role="listitem"') == 3 and "doc-biblioentry" not in page
    body = page[page.index('<div role="list"'):]
    assert body.count("<div") == body.count("</div>")  # every list and entry closed


def test_hidden_cells_are_named_by_their_visible_prompt():
    node = nodes.Element(classes=["above-input"], prompt_show="Show code cell source",
                         prompt_hide="Hide <code>")
    translator = SimpleNamespace(body=[])
    accessibility.visit_hidden_cell(translator, node)
    accessibility.depart_hidden_cell(translator, node)
    page = "".join(translator.body)
    assert page.startswith('<details class="admonition hide above-input">\n<summary>\n')
    assert "aria-label" not in page and "Hide &lt;code&gt;" in page and page.endswith("</details>\n")
