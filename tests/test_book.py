"""Checks of every page of the built book (see conftest.py for the build)."""

from __future__ import annotations

import re

import pytest
from conftest import chapter_pages, parse, toc_files


def test_every_toc_page_is_built(built_book):
    missing = [page for page in toc_files() if not (built_book / f"{page}.html").is_file()]
    assert not missing, f"pages in _toc.yml that were not built: {missing}"
    assert (built_book / "index.html").is_file()


def test_no_execution_reports(built_book):
    reports = built_book / "reports"
    logs = sorted(reports.glob("*")) if reports.exists() else []
    assert not logs, f"cells failed; tracebacks in {[str(p) for p in logs]}"


@pytest.mark.parametrize("page", toc_files())
def test_no_error_output_or_traceback(built_book, page):
    text, parsed = parse(page)
    assert "Traceback (most recent call last)" not in text
    bad = [c for c in parsed.classes if re.search(r"\b(traceback|stderr|output error)\b", c)]
    assert not bad, f"{page} shows error or stderr output: {bad}"
    # An unresolved role shows as raw text in the prose; the API page may show one as code.
    prose = re.sub(r"<(pre|code)\b.*?</\1>", "", text, flags=re.S)
    assert not re.search(r"\{glue:[a-z]+\}", prose), f"{page} has an unresolved glue role"
    # A glued number that rounds to zero has no sign (_ext/glued_numbers.py).
    signed_zeros = re.findall(r'class="pasted-text">([+-][0.,]+(?:e[+-]?\d+)?%?)<', text)
    assert not signed_zeros, f"{page} shows signed zeros: {signed_zeros}"


def test_toc_lists_the_chapters():
    chapters = chapter_pages()[1:]
    numbers = [c.split("/")[-1][:2] for c in chapters]
    assert numbers == ["01", "02", "03", "04", "05", "06", "07", "08"], chapters


@pytest.mark.parametrize("page", chapter_pages())
def test_chapters_have_figures_that_exist(built_book, page):
    _, parsed = parse(page)
    figures = [src for src in parsed.images if "_images/" in src]
    assert figures, f"{page} has no figure"
    page_dir = (built_book / page).parent
    broken = [src for src in figures if not (page_dir / src).resolve().is_file()]
    assert not broken, f"{page} links to missing images: {broken}"
