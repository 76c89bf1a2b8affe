"""The bibliography: references.bib parses, every cited key exists, the page lists cited works.

Fast checks on the sources, no book build. The build itself (sphinxcontrib-bibtex under
``-W``) fails on a cited key missing from references.bib; these tests say which key, and check
what the build does not: duplicate keys, a year that disagrees with its key, an entry without
a link, and a bibliography page that would list works nothing cites.
"""

from __future__ import annotations

import re
from pathlib import Path

import pybtex.database
import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
REFERENCES = ROOT / "references.bib"

# {cite}`a`, {cite:p}`a,b`, {cite:t}`a`, {cite:ps}`a` ... (sphinxcontrib-bibtex roles)
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def cited_keys(text: str) -> set[str]:
    """The bibliography keys cited by the ``{cite...}`` roles in MyST text."""
    keys = set()
    for targets in CITE_ROLE.findall(text):
        for target in targets.split(","):
            # sphinxcontrib-bibtex allows {pre}key{post} around a key: keep the key
            keys.add(re.sub(r"\{[^}]*\}", "", target).strip())
    return keys


def book_citations() -> dict[str, set[str]]:
    """Cited key -> the book pages that cite it."""
    pages: dict[str, set[str]] = {}
    for page in sorted(BOOK.glob("*.md")):
        for key in cited_keys(page.read_text(encoding="utf-8")):
            pages.setdefault(key, set()).add(page.name)
    return pages


def entries() -> dict:
    """The entries of references.bib (pybtex raises on a repeated key)."""
    return dict(pybtex.database.parse_file(str(REFERENCES)).entries)


def test_cited_keys_reads_every_role_form():
    text = (
        "As {cite}`ioffe2015batch` showed; see {cite:p}`a2001x, b2002y` and\n"
        "{cite:t}`c2003z`, {cite:ps}`{see}d2004w{p. 3}`; `e2005v` is code."
    )
    assert cited_keys(text) == {"ioffe2015batch", "a2001x", "b2002y", "c2003z", "d2004w"}


def test_references_parse_without_repeated_keys():
    assert len(entries()) > 0


def test_repeated_key_is_an_error(tmp_path):
    bib = tmp_path / "dup.bib"
    bib.write_text("@misc{a, title={x}, year={2000}}\n@misc{a, title={y}, year={2001}}\n")
    with pytest.raises(pybtex.database.BibliographyDataError):
        pybtex.database.parse_file(str(bib))


def test_every_cited_key_is_in_references():
    missing = {key: pages for key, pages in book_citations().items() if key not in entries()}
    assert not missing, f"cited but not in references.bib: {missing}"


@pytest.mark.parametrize("key", sorted(entries()))
def test_entry_is_complete(key):
    entry = entries()[key]
    assert entry.fields.get("title"), key
    assert entry.fields.get("year"), key
    assert entry.persons.get("author"), key
    assert entry.fields.get("url") or entry.fields.get("doi"), f"{key}: no url or doi"


@pytest.mark.parametrize("key", sorted(entries()))
def test_year_in_key_matches_year_field(key):
    year_in_key = re.search(r"(19|20)\d\d", key)
    if year_in_key is None:
        pytest.skip(f"{key} carries no year")
    assert entries()[key].fields["year"] == year_in_key.group(0)


def test_bibliography_page_lists_only_cited_works():
    page = (BOOK / "bibliography.md").read_text(encoding="utf-8")
    directive = re.search(r"```\{bibliography\}\n(.*?)```", page, re.S)
    assert directive is not None, "book/bibliography.md holds no {bibliography} directive"
    options = directive.group(1)
    # Without options sphinxcontrib-bibtex lists the entries cited anywhere in the book.
    for option in (":all:", ":notcited:", ":filter:"):
        assert option not in options


def test_every_entry_is_cited():
    """An entry nothing cites would sit in references.bib unchecked (the page lists cited works
    only): each key is cited by a chapter."""
    uncited = sorted(set(entries()) - set(book_citations()))
    assert not uncited, f"in references.bib but cited by no chapter: {uncited}"
