"""The whole book, built from a clean output folder in the short setting, then checked page by page.

The build is what `make book` runs, with BNBOOK_QUICK=1 (each chapter's short setting) and a
fresh training-result cache, so every chapter really executes. It writes to _build/test-book/.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "_build" / "test-book"
HTML = OUTPUT / "_build" / "html"


def toc_files() -> list[str]:
    """Every page named in _toc.yml, in order, without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def executed_pages() -> list[str]:
    """The toc pages that are notebooks (jupytext front matter), i.e. that execute code."""
    return [f for f in toc_files() if "jupytext:" in (ROOT / f"{f}.md").read_text()[:300]]


class PageParser(HTMLParser):
    """Collects images and the classes of every element of a built page."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if attrs.get("class"):
            self.classes.append(attrs["class"])


def parse(page: str) -> tuple[str, PageParser]:
    text = (HTML / f"{page}.html").read_text(encoding="utf-8")
    parser = PageParser()
    parser.feed(text)
    return text, parser


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """Build once for the whole session; fail with the build's own output if it breaks."""
    shutil.rmtree(OUTPUT, ignore_errors=True)
    env = {
        **__import__("os").environ,
        "BNLIB_CACHE_DIR": str(tmp_path_factory.mktemp("bnlib-cache")),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_book.py"), "--quick", "--output", str(OUTPUT)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    log = result.stdout + result.stderr
    (OUTPUT / "build.log").write_text(log)
    assert result.returncode == 0, f"the book build failed:\n{log[-6000:]}"
    return HTML


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
    assert not re.search(r"\{glue:[a-z]+\}", text), f"{page} has an unresolved glue role"


@pytest.mark.parametrize("page", executed_pages())
def test_executed_pages_have_figures_that_exist(built_book, page):
    _, parsed = parse(page)
    figures = [src for src in parsed.images if "_images/" in src]
    assert figures, f"{page} has no figure"
    page_dir = (built_book / page).parent
    broken = [src for src in figures if not (page_dir / src).resolve().is_file()]
    assert not broken, f"{page} links to missing images: {broken}"
