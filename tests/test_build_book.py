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


def test_source_hash_sees_every_file_of_every_subpackage(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "loop.py").write_text("x = 1\n")
    (tmp_path / "__init__.py").write_text("")
    before = build_book.source_hash(tmp_path)
    (tmp_path / "training" / "__pycache__").mkdir()
    (tmp_path / "training" / "__pycache__" / "loop.cpython-311.pyc").write_bytes(b"\0")
    assert build_book.source_hash(tmp_path) == before
    (tmp_path / "training" / "loop.py").write_text("x = 2\n")
    assert build_book.source_hash(tmp_path) != before


def test_the_report_reads_jupyter_cache_records_and_the_ledger(tmp_path):
    import json
    import sqlite3
    from datetime import datetime, timezone

    (tmp_path / ".jupyter_cache").mkdir()
    with sqlite3.connect(tmp_path / ".jupyter_cache" / "global.db") as db:
        db.execute("CREATE TABLE nbcache (uri TEXT, data TEXT, created TEXT)")
        db.executemany("INSERT INTO nbcache VALUES (?, ?, ?)", [
            ("/b/book/05_hindi_digits.md", json.dumps({"execution_seconds": 300.4}), "2030-01-02 10:00:00"),
            ("/b/book/01_ics.md", json.dumps({"execution_seconds": 30.0}), "2020-01-01 10:00:00"),
        ])
    since = datetime(2025, 1, 1, tzinfo=timezone.utc)
    times = build_book.execution_times(tmp_path, since)
    assert times == [("01_ics", 30.0, False), ("05_hindi_digits", 300.4, True)]
    (tmp_path / build_book.LEDGER).write_text("cached a\n")
    size = build_book.ledger_size(tmp_path)
    with open(tmp_path / build_book.LEDGER, "a") as ledger:
        ledger.write("trained b\ntrained c\ncached d\n")
    counts = build_book.outcome_counts(tmp_path, since=size)
    text = build_book.report(times, counts, 400.0)
    assert "05_hindi_digits" in text and "300" in text and "(cached: an earlier build)" in text
    assert "2 trained, 1 found in the result store" in text
    assert build_book.execution_times(tmp_path / "nothing", since) == []
