"""tools/build_book.py: the executed-notebook cache is dropped when bnlib or the setting changes."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402


def filled_cache(build_dir):
    (build_dir / ".jupyter_cache").mkdir(parents=True, exist_ok=True)
    (build_dir / ".jupyter_cache" / "executed.ipynb").write_text("{}")


def test_cache_kept_while_code_and_setting_stay(tmp_path):
    build_book.clear_stale_notebook_cache(tmp_path, "full")
    filled_cache(tmp_path)
    build_book.clear_stale_notebook_cache(tmp_path, "full")
    assert (tmp_path / ".jupyter_cache" / "executed.ipynb").exists()


def test_cache_cleared_when_the_setting_changes(tmp_path):
    build_book.clear_stale_notebook_cache(tmp_path, "quick")
    filled_cache(tmp_path)
    build_book.clear_stale_notebook_cache(tmp_path, "full")
    assert not (tmp_path / ".jupyter_cache").exists()


def test_cache_cleared_when_bnlib_changes(tmp_path, monkeypatch):
    build_book.clear_stale_notebook_cache(tmp_path, "full")
    filled_cache(tmp_path)
    monkeypatch.setattr(build_book, "source_hash", lambda: "edited bnlib")
    build_book.clear_stale_notebook_cache(tmp_path, "full")
    assert not (tmp_path / ".jupyter_cache").exists()
