"""Wording helpers shared by the experiments' ``findings``: each turns numbers into the words
a sentence of the book needs, and each branch is tested with a synthetic outcome."""

from __future__ import annotations

__all__ = ["comparison", "count_of"]


def comparison(a: float, b: float, less: str = "smaller", more: str = "larger",
               same: str = "equal") -> str:
    """The word that makes "a is ___ than b" true: ``less`` if a < b, ``more`` if a > b."""
    if a < b:
        return less
    if a > b:
        return more
    return same


def count_of(count: int, total: int, things: str = "seeds") -> str:
    """``"in 4 of 5 seeds"``, ``"in all 5 seeds"``, ``"in none of the 5 seeds"``, ``"in the one seed"``."""
    if not 0 <= count <= total:
        raise ValueError(f"count must be between 0 and total ({total}), got {count}")
    if total == 1:
        return f"in the one {things.removesuffix('s')}" if count == 1 else f"in no {things.removesuffix('s')}"
    if count == total:
        return f"in all {total} {things}"
    if count == 0:
        return f"in none of the {total} {things}"
    return f"in {count} of {total} {things}"
