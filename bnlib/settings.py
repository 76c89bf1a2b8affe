"""Run-wide switches read from the environment, so the book, Binder and tests share one convention.

* ``BNBOOK_QUICK=1``: every long experiment in the book takes its short setting (Binder, the test
  build, quick checks). The published book is built without it, in the full setting.
* ``BNLIB_PROGRESS=0``: no progress bars (the book build sets it, so pages hold no bar widgets).
* ``BNLIB_CACHE_DIR``: where training results are cached (default ``~/.cache/bnlib``).
* ``BNLIB_COMPILE=1``: training steps compiled by ``torch.compile`` where that is possible
  (:mod:`bnlib.training.engine`; default eager, which measured as fast here).
* ``BNLIB_WORKERS``: how many processes :func:`bnlib.training.run_many` may use (default
  :func:`default_workers`: the CPUs this process may use, fewer if memory is short).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

__all__ = [
    "CACHE_ENV",
    "CGROUP_ROOT",
    "PROGRESS_ENV",
    "QUICK_ENV",
    "WORKERS_ENV",
    "WORKER_MEMORY",
    "available_cpus",
    "available_memory",
    "cache_dir",
    "default_workers",
    "full_or_quick",
    "is_quick",
    "show_progress",
    "torch_threads",
]

T = TypeVar("T")

QUICK_ENV = "BNBOOK_QUICK"
PROGRESS_ENV = "BNLIB_PROGRESS"
CACHE_ENV = "BNLIB_CACHE_DIR"
WORKERS_ENV = "BNLIB_WORKERS"

#: Memory one training worker process holds at its peak (torch, the data, one model), in bytes:
#: 350-380 MiB measured (proportional set size; ``BNLIB_WORKERS=2 tools/chapter_memory.py``
#: on chapters 01 and 03), rounded up.
WORKER_MEMORY = 400 * 2**20
#: Where Linux shows this process's control group (its CPU quota and memory limit).
CGROUP_ROOT = Path("/sys/fs/cgroup")

_FALSE = {"", "0", "false", "no", "off"}


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


def is_quick() -> bool:
    """True when ``BNBOOK_QUICK`` asks for the short setting of long experiments."""
    return _flag(QUICK_ENV, False)


def full_or_quick(full: T, quick: T) -> T:
    """``quick`` in the short setting (``BNBOOK_QUICK=1``), ``full`` otherwise."""
    return quick if is_quick() else full


def show_progress() -> bool:
    """Whether long loops draw a progress bar (``BNLIB_PROGRESS=0`` turns them off)."""
    return _flag(PROGRESS_ENV, True)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the ``with`` block on ``threads`` torch threads, then restore the previous count.

    ``None`` leaves the count as it is. This is the one place bnlib, its benchmarks and its
    tests set torch's thread count.
    """
    import torch

    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_dir() -> Path:
    """Folder of the training-result cache (``BNLIB_CACHE_DIR``, default ``~/.cache/bnlib``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bnlib").expanduser()


def _read_number(path: Path) -> int | None:
    """The first number in a cgroup file (``max`` or a missing file: None)."""
    try:
        first = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def available_cpus() -> int:
    """CPUs this process may use: its CPU affinity, capped by a cgroup CPU quota if there is one.

    Containers (Binder, CI runners) often limit CPU time by a quota while ``os.cpu_count()``
    still reports every core of the host.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cgroup = CGROUP_ROOT
    quota, period = None, None
    try:  # cgroup v2: "cpu.max" holds "<quota> <period>" or "max <period>"
        fields = (cgroup / "cpu.max").read_text().split()
        if fields[0].isdigit():
            quota, period = int(fields[0]), int(fields[1])
    except (OSError, IndexError, ValueError):  # cgroup v1
        quota = _read_number(cgroup / "cpu" / "cpu.cfs_quota_us")
        period = _read_number(cgroup / "cpu" / "cpu.cfs_period_us")
    if quota and period:
        cpus = min(cpus, max(1, quota // period))
    return max(1, cpus)


def available_memory() -> int | None:
    """Bytes this process can still allocate: its cgroup's limit minus its usage if it has one
    (Binder's ~2 GB), else the system's available memory; None if neither can be read."""
    cgroup = CGROUP_ROOT
    for limit, usage in (("memory.max", "memory.current"),
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit_bytes, used = _read_number(cgroup / limit), _read_number(cgroup / usage)
        if limit_bytes is not None and used is not None and limit_bytes < 2**60:
            return max(0, limit_bytes - used)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_workers() -> int:
    """Processes for parallel training runs: ``BNLIB_WORKERS`` if set, else one per available
    CPU (:func:`available_cpus`) but no more than the free memory holds (:func:`available_memory`
    / :data:`WORKER_MEMORY`), and at least 1 (1 means: one run after another, in this process)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {value!r}")
        return int(value)
    workers = available_cpus()
    memory = available_memory()
    if memory is not None:
        workers = min(workers, memory // WORKER_MEMORY)
    return max(1, workers)
