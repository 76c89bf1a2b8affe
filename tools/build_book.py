"""Build the book: ``make book`` (full setting) and the test build (``--quick``).

Jupyter Book re-executes a chapter only when its code cells change, not when ``bnlib`` does.
Nor does it know the setting: a page executed in the short setting would be served again in a
full build. This script stamps the cache with a hash of bnlib's source and the setting; when
either differs, the cache is cleared, so every chapter runs again against the new code in the
setting asked for.
Training results have their own cache (``bnlib.training``), keyed by configuration and code,
so unchanged runs still come back instantly.

    python tools/build_book.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from vendor_js import vendor

from bnlib.settings import is_quick

ROOT = Path(__file__).resolve().parent.parent


def source_hash(package: Path = ROOT / "bnlib") -> str:
    """SHA-256 over the path and content of every .py file in ``package``."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


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
    code = subprocess.call(command, cwd=ROOT)
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
