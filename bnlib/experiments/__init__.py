"""The book's experiments, one module per chapter's topic, apart from the reusable library.

Each module holds its chapter's configurations (full and short setting), the function that runs
them, and ``findings(results) -> dict``: the numbers and verdict words the chapter glues in one
call. Verdicts are decided here, in tested code, never in a chapter's cells.
"""

from __future__ import annotations



import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["glue_findings", "plain"]


def plain(value: Any) -> Any:
    """``value`` as a plain Python number or string, the form glue's format specs need:
    numpy and torch scalars become ``float``/``int``/``bool``; strings stay strings."""
    if isinstance(value, (str, bool)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", getattr(value, "dim", lambda: 0)) in (0, ()):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"cannot glue {type(value).__name__} {value!r}: give a number or a string")


def glue_findings(findings: Mapping[str, Any], prefix: str = "") -> None:
    """Glue every entry of a ``findings`` dict for the chapter's prose, in one call; the prose
    shows an entry with the ``glue:text`` role and its name (``<prefix><name>``), optionally
    with a format spec. Values must be numbers or strings."""
    from myst_nb import glue

    for name, value in findings.items():
        glue(f"{prefix}{name}", plain(value), display=False)
