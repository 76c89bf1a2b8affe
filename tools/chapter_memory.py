"""Peak memory of each chapter, executed as a reader would on Binder (short setting).

Each chapter of ``_toc.yml`` that is a notebook is executed in a fresh kernel (with
``BNBOOK_QUICK=1``), while the resident memory of the kernel and all its child processes
(parallel training workers included) is sampled every 0.1 s; the largest sum is the peak.
Binder gives about 2 GB, so every chapter must stay well below that.

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


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def peak_memory(chapter: Path) -> tuple[float, float]:
    """(peak MiB of kernel + children, seconds) for one chapter."""
    notebook = jupytext.read(chapter)
    client = NotebookClient(
        notebook, timeout=1800, kernel_name="python3",
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            manager = client.km
            pid = getattr(getattr(manager, "provisioner", None), "pid", None) if manager else None
            if pid:
                try:
                    peak = max(peak, tree_rss(psutil.Process(pid)))
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
    return peak / 2**20, time.perf_counter() - start


def main(argv: list[str]) -> int:
    os.environ["BNBOOK_QUICK"] = "1"
    os.environ.setdefault("BNLIB_PROGRESS", "0")
    chapters = [Path(a).resolve() for a in argv] or notebook_chapters()
    print(f"{'chapter':40s} {'peak MiB':>9s} {'seconds':>8s}")
    for chapter in chapters:
        mib, seconds = peak_memory(chapter)
        print(f"{chapter.relative_to(ROOT).as_posix():40s} {mib:9.0f} {seconds:8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
