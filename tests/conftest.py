"""The book built once per test session, from a clean output folder, in the short setting.

The build is what `make book` runs, with BNBOOK_QUICK=1 (each chapter's short setting) and a
fresh training-result cache, so every chapter really executes. It writes to _build/test-book/.
"""

from __future__ import annotations

import os

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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Every test on one torch thread. The tensors are tiny: on a busy machine torch's kernels
    wait longer for a second thread than they compute (150 ms for an 8x3 batch norm), and no
    result depends on the thread count."""
    from bnlib.settings import torch_threads

    with torch_threads(1):
        yield


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


def chapter_pages() -> list[str]:
    """The introduction and the chapters (the pages expected to show figures)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = [
        entry["file"]
        for part in toc.get("parts", [])
        if part.get("caption") == "Chapters"
        for entry in part.get("chapters", [])
    ]
    return [toc["root"], *chapters]


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
        **os.environ,
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
