"""Writing a file so that a reader never sees half of it (the result store, saved histories,
the command line's CSV files)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename: never a partial file."""
    _atomic_write(path, "w", text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write_text` for bytes (the command line's figures)."""
    _atomic_write(path, "wb", data)


def _atomic_write(path: Path, mode: str, content: str | bytes) -> None:
    """The temporary file, ``fsync`` and rename; an interruption (Ctrl-C included) removes
    the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
