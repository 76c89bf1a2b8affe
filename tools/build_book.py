"""Build the book: ``make book`` (full setting) and the test build (``--quick``).

Jupyter Book re-executes a chapter only when its code cells change, not when ``bnlib`` does.
Nor does it know the setting: a page executed in the short setting would be served again in a
full build. This script stamps the cache with a hash of bnlib's source and the setting; when
either differs, the cache is cleared, so every chapter runs again against the new code in the
setting asked for.
Training results have their own cache (``bnlib.training``), keyed by configuration and code,
so unchanged runs still come back instantly.

At the end the build prints how long each page took to execute (from the notebook cache's
records: pages executed by an earlier build show as cached) and how many training runs it
trained and how many it found in the result store (from the store's ledger).

    python tools/build_book.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from vendor_js import vendor

from bnlib.settings import cache_dir, is_quick
from bnlib.training.store import LEDGER, outcome_counts

ROOT = Path(__file__).resolve().parent.parent


def source_hash(package: Path = ROOT / "bnlib") -> str:
    """SHA-256 over the path and content of every file of ``package`` and its subpackages
    (code and shipped data; byte-code caches left out)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def execution_times(build_dir: Path, since: datetime) -> list[tuple[str, float, bool]]:
    """``(page, seconds, executed_now)`` per notebook in the jupyter-cache records of
    ``build_dir``, in page order; ``executed_now`` is False for a page an earlier build ran."""
    database = build_dir / ".jupyter_cache" / "global.db"
    if not database.is_file():
        return []
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT uri, data, created FROM nbcache").fetchall()
    times = []
    for uri, data, created in rows:
        seconds = float((json.loads(data or "{}") or {}).get("execution_seconds", 0.0))
        made = datetime.fromisoformat(created).replace(tzinfo=timezone.utc)
        times.append((Path(uri).stem, seconds, made >= since))
    return sorted(times)


def ledger_size(folder: Path) -> int:
    """Bytes in the training store's ledger now (a build counts the lines written after)."""
    path = folder / LEDGER
    return path.stat().st_size if path.is_file() else 0


def report(times: list[tuple[str, float, bool]], counts: Mapping[str, int], wall: float) -> str:
    """The table printed at the end of a build."""
    lines = [f"{'page':<34} {'executed (s)':>12}"]
    for page, seconds, now in times:
        lines.append(f"{page:<34} {seconds:>12.0f}" + ("" if now else "  (cached: an earlier build)"))
    total = sum(seconds for _, seconds, now in times if now)
    lines.append(f"{'executed in this build':<34} {total:>12.0f}")
    lines.append(f"whole build: {wall:.0f} s; training runs: {counts.get('trained', 0)} trained, "
                 f"{counts.get('cached', 0)} found in the result store")
    return "\n".join(lines)


def clear_stale_notebook_cache(build_dir: Path, setting: str) -> None:
    """Drop the executed-notebook cache if bnlib or the setting changed since it was filled."""
    stamp = build_dir / ".bnlib-source-hash"
    current = f"{source_hash()} {setting}"
    if stamp.exists() and stamp.read_text().strip() == current:
        return
    cache = build_dir / ".jupyter_cache"
    if cache.exists():
        print(f"bnlib or the setting changed since the last build: clearing {cache}", flush=True)
        shutil.rmtree(cache)
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current + "\n")


def build(output: Path, quick: bool) -> int:
    """Run jupyter-book with warnings as errors; return its exit code."""
    build_dir = output / "_build"
    vendor()
    # The kernels inherit this environment: BNBOOK_QUICK set here or by the caller picks the setting.
    os.environ.setdefault("BNLIB_PROGRESS", "0")
    if quick:
        os.environ["BNBOOK_QUICK"] = "1"
    clear_stale_notebook_cache(build_dir, "quick" if is_quick() else "full")
    command = [
        str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT),
        "--path-output", str(output), "--builder", "html",
        "-W", "-n", "--keep-going", "--all",
    ]
    print(" ".join(command), flush=True)
    started, ledger = datetime.now(timezone.utc), ledger_size(cache_dir())
    code = subprocess.call(command, cwd=ROOT)
    wall = (datetime.now(timezone.utc) - started).total_seconds()
    counts = outcome_counts(cache_dir(), since=ledger)
    print("\n" + report(execution_times(build_dir, started), counts, wall), flush=True)
    index = build_dir / "html" / "index.html"
    if code == 0:
        print(f"\nThe book is ready: open file://{index}")
    else:
        print(f"\nThe build failed (exit {code}); see the messages above and "
              f"{build_dir / 'html' / 'reports'} for cell tracebacks.", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short setting of every long experiment (BNBOOK_QUICK=1)")
    parser.add_argument("--output", type=Path, default=ROOT,
                        help="folder that receives _build/ (default: the repository)")
    args = parser.parse_args(argv)
    return build(args.output.resolve(), args.quick)


if __name__ == "__main__":
    sys.exit(main())
