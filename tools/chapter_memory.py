"""Peak memory of each chapter, executed as a reader would on Binder (short setting).

Each chapter of ``_toc.yml`` that is a notebook is executed in a fresh kernel (with
``BNBOOK_QUICK=1``), while the memory of the kernel and all its child processes (parallel
training workers included) is sampled every 0.1 s; the largest sum is the peak. Each process
counts its proportional set size (PSS: its private pages plus its share of pages it shares with
others, such as torch's libraries mapped by every worker), so the sum is the memory the tree
really holds; summing resident sizes (RSS) would count every shared library once per process.
Binder gives about 2 GB, so every chapter must stay well below that.

The kernel gets the variables that ``binder/start`` exports on Binder (``BNBOOK_QUICK=1``,
``BNLIB_WORKERS=1``), except those already set: ``BNLIB_WORKERS=2 python
tools/chapter_memory.py`` measures with two training worker processes instead.

    python tools/chapter_memory.py [book/02_equations.md ...]
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import jupytext
import psutil
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def notebook_chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [
        chapter["file"] for part in toc.get("parts", []) for chapter in part.get("chapters", [])
    ]
    paths = [ROOT / f"{name}.md" for name in files]
    return [p for p in paths if "jupytext:" in p.read_text()[:300]]


def pss(process: psutil.Process) -> int:
    """Proportional set size of one process in bytes (0 if it has just ended)."""
    try:
        return process.memory_full_info().pss
    except psutil.Error:
        return 0


def tree_pss(process: psutil.Process) -> tuple[int, int, int]:
    """(PSS bytes of a process and all its descendants, of the process alone, descendants)."""
    children = process.children(recursive=True)
    own = pss(process)
    return own + sum(pss(child) for child in children), own, len(children)


def peak_memory(chapter: Path) -> tuple[float, float, float, int]:
    """(peak MiB of kernel + children, MiB of the kernel at that moment, seconds, the number of
    child processes at that moment) for one chapter."""
    notebook = jupytext.read(chapter)
    client = NotebookClient(
        notebook, timeout=1800, kernel_name="python3",
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    peak, done = (0, 0, 0), threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            manager = client.km
            pid = getattr(getattr(manager, "provisioner", None), "pid", None) if manager else None
            if pid:
                try:
                    peak = max(peak, tree_pss(psutil.Process(pid)))  # by the total
                except psutil.Error:
                    pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    try:
        client.execute()
    finally:
        done.set()
        sampler.join()
    total, kernel, children = peak
    return total / 2**20, kernel / 2**20, time.perf_counter() - start, children


def binder_environment() -> dict[str, str]:
    """The variables ``binder/start`` exports (lines ``export NAME=VALUE``)."""
    found = {}
    for line in (ROOT / "binder" / "start").read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line.removeprefix("export ").split("=", 1)
            found[name.strip()] = value.strip().strip("'\"")
    return found


def main(argv: list[str]) -> int:
    for name, value in binder_environment().items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("BNLIB_PROGRESS", "0")
    print(f"BNBOOK_QUICK={os.environ.get('BNBOOK_QUICK')} "
          f"BNLIB_WORKERS={os.environ.get('BNLIB_WORKERS', '(default)')}")
    chapters = [Path(a).resolve() for a in argv] or notebook_chapters()
    print(f"{'chapter':40s} {'peak MiB':>9s} {'kernel MiB':>10s} {'children':>8s} {'seconds':>8s}")
    for chapter in chapters:
        total, kernel, seconds, children = peak_memory(chapter)
        print(f"{chapter.relative_to(ROOT).as_posix():40s} {total:9.0f} {kernel:10.0f} "
              f"{children:8d} {seconds:8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
