"""Every quotation of a source in the book is word for word, and a reader can find it.

**How a quotation is recognised.** A passage in double quotes ("..." or “...”) is a quotation
of a source when the sentence it stands in cites that source: a ``{cite}`` role
(``{cite}`key```, ``{cite:p}``, ``{cite:t}``), or the source's authors ("Ioffe and Szegedy",
"Wu & He's", "Li et al. (2019)", "Ioffe 2017"), resolved through references.bib; a sentence
that refers back with "their", "they", "the authors" or "the paper" cites the source its
paragraph named last. The quotation's key is the first citation after the closing quote in
its sentence, else the last one before it. The chapters (every ``book/*.md``, so new chapters
are checked as they arrive), their figure captions, table titles and Markdown tables, and the
string literals of bnlib (docstrings included) are scanned; code cells, inline code and math
are not. A quoted passage whose sentence cites nothing is the book's own term or a scare quote,
unless its words appear in a registered source sentence: then it is an uncited quotation and
fails. A quoted passage next to a citation that quotes nothing (a misconception stated to be
corrected, a network's name) is listed under ``not_quotations`` in the registry.

**What is checked.** ``book/quotations.yml`` holds, per quotation: the key, a location (section,
figure, page or URL), the quoted words, the whole source sentence as copied from the source,
and where it was verified. The book's words must lie within a registered quote of the same
key, and the quote within its sentence (case, quote and dash forms and line breaks aside; "..."
in the book stands for omitted words). A changed word fails, naming the file and line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import quotations as Q  # noqa: E402

REGISTRY = Q.load_registry()
EXCEPTIONS = Q.load_exceptions()
FOUND = Q.all_quotations()


def test_every_quotation_in_the_book_is_registered_word_for_word():
    problems = Q.problems(FOUND, REGISTRY, EXCEPTIONS)
    assert not problems, "\n".join(problems)


def test_the_book_quotes_its_sources():
    """The scan finds the quotations (a scanner that found none would pass the test above)."""
    checked = Q.checked(FOUND, EXCEPTIONS)
    assert len(checked) >= 20
    assert {q.path.split("/")[0] for q in checked} == {"book", "bnlib"}


def test_registry_entries_are_complete_known_and_within_their_sentences():
    problems = Q.entry_problems(REGISTRY, Q.bibliography_keys())
    assert not problems, "\n".join(problems)


def test_every_listed_non_quotation_is_still_in_the_book():
    stale = Q.stale_exceptions(FOUND, EXCEPTIONS)
    assert not stale, "\n".join(stale)


# --------------------------------------------------------------------------- the scanner


ENTRY = {"key": "ioffe2015batch", "location": "Abstract",
         "quote": "allows us to use much higher learning rates and be less careful about "
                  "initialization",
         "sentence": "Batch Normalization allows us to use much higher learning rates and be "
                     "less careful about initialization.", "verified": "the abstract"}


def scan(tmp_path: Path, text: str) -> list[Q.Quotation]:
    page = tmp_path / "99_test.md"
    page.write_text(text)
    return Q.chapter_quotations(page)


def test_a_quotation_next_to_a_cite_role_is_found_with_its_key_and_line(tmp_path):
    found = scan(tmp_path, "Intro.\n\nIt says BN \"allows us to use much higher\nlearning "
                           "rates\" {cite}`ioffe2015batch`. Next sentence.\n")
    assert [(q.line, q.key, q.text) for q in found] == [
        (3, "ioffe2015batch", "allows us to use much higher\nlearning rates")]
    assert Q.problems(found, [ENTRY]) == []


def test_a_changed_word_fails_naming_file_and_line(tmp_path):
    found = scan(tmp_path, "It \"allows us to use far higher learning rates\" "
                           "{cite}`ioffe2015batch`.\n")
    problems = Q.problems(found, [ENTRY])
    assert len(problems) == 1 and "99_test.md:1" in problems[0] and "far higher" in problems[0]


def test_the_right_key_is_required(tmp_path):
    found = scan(tmp_path, "It \"allows us to use much higher learning rates\" "
                           "{cite}`wu2018group`.\n")
    assert len(Q.problems(found, [ENTRY])) == 1


def test_authors_and_back_references_attribute_a_quotation(tmp_path):
    found = scan(tmp_path, "Ioffe and Szegedy say it \"allows us to use much higher learning "
                           "rates\". Their abstract adds \"be less careful about "
                           "initialization\".\n")
    assert [q.key for q in found] == ["ioffe2015batch", "ioffe2015batch"]
    assert Q.problems(found, [ENTRY]) == []


def test_each_quotation_takes_the_first_citation_after_it(tmp_path):
    found = scan(tmp_path, "BN \"a\" {cite}`wu2018group`; it \"b\" {cite}`ba2016layer`.\n")
    assert [q.key for q in found] == ["wu2018group", "ba2016layer"]


def test_code_cells_math_and_scare_quotes_are_not_quotations(tmp_path):
    found = scan(tmp_path, "```{code-cell} ipython3\nprint(\"allows us\")  # ioffe2015batch\n"
                           "```\n\nA run \"trains\" if it reaches 50%.\n\n"
                           "$$\n\\text{\"x\"}\n$$\n")
    assert found == []


def test_a_caption_and_a_table_title_are_scanned(tmp_path):
    found = scan(tmp_path, "```{code-cell} ipython3\n---\nmystnb:\n  figure:\n"
                           "    caption: \"As in {cite}`ioffe2015batch`, \\\"be less careful"
                           "\\\" here.\"\n---\nfigure = 1\n```\n\n"
                           "````{table} Rates that \"be less careful about initialization\" "
                           "{cite}`ioffe2015batch`.\n:name: t\n\n| a |\n|---|\n| 1 |\n````\n")
    assert [q.text for q in found] == ["be less careful",
                                       "be less careful about initialization"]
    assert Q.problems(found, [ENTRY]) == []


def test_an_ellipsis_stands_for_omitted_words():
    assert Q.within("allows us to use ... learning rates", ENTRY["quote"])
    assert not Q.within("learning rates ... allows us", ENTRY["quote"])  # order matters


def test_an_uncited_quotation_of_a_registered_sentence_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(Q, "_SENTENCES", [ENTRY["sentence"]])
    found = scan(tmp_path, "Famously, BN \"allows us to use much higher learning rates\".\n")
    assert [q.key for q in found] == [None]
    assert "cites no source" in Q.problems(found, [ENTRY])[0]


def test_docstrings_are_scanned_with_author_year_references(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""Ioffe & Szegedy (2015): BN "allows us to use much higher learning '
                      'rates"."""\n\nX = 1\n')
    found = Q.code_quotations(module, Q.bibliography_keys())
    assert [(q.line, q.key) for q in found] == [(1, "ioffe2015batch")]
    assert Q.problems(found, [ENTRY]) == []


def test_a_registry_entry_whose_quote_is_not_in_its_sentence_fails():
    bad = dict(ENTRY, quote="allows us to use much larger learning rates")
    assert Q.entry_problems([bad], Q.bibliography_keys())
    assert Q.entry_problems([dict(ENTRY, key="nobody2099")], Q.bibliography_keys())
    assert Q.entry_problems([dict(ENTRY, verified="")], Q.bibliography_keys())
    assert Q.entry_problems([ENTRY], Q.bibliography_keys()) == []


@pytest.mark.parametrize("text", ["’", "“", "—"])
def test_typographic_forms_compare_equal(text):
    plain = {"’": "'", "“": '"', "—": "-"}[text]
    assert Q.normalise(f"a{text}b") == Q.normalise(f"a{plain}b")
