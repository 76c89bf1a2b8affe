"""Run-wide switches read from the environment, so the book, Binder and tests share one convention.

* ``BNBOOK_QUICK=1``: every long experiment in the book takes its short setting (Binder, the test
  build, quick checks). The published book is built without it, in the full setting.
* ``BNLIB_PROGRESS=0``: no progress bars (the book build sets it, so pages hold no bar widgets).
* ``BNLIB_CACHE_DIR``: where training results are cached (default ``~/.cache/bnlib``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

QUICK_ENV = "BNBOOK_QUICK"
PROGRESS_ENV = "BNLIB_PROGRESS"
CACHE_ENV = "BNLIB_CACHE_DIR"

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


def cache_dir() -> Path:
    """Folder of the training-result cache (``BNLIB_CACHE_DIR``, default ``~/.cache/bnlib``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bnlib").expanduser()
