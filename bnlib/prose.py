"""Wording helpers shared by the experiments' ``findings``: each turns numbers into the words
a sentence of the book needs, and each branch is tested with a synthetic outcome."""

from __future__ import annotations

import math
import re

__all__ = ["comparison", "count_of", "number", "unsigned_zero"]


#: A number as ``format`` prints it: a sign, digits with optional thousands separators and a
#: fraction, an optional exponent, an optional percent sign.
_FORMATTED_NUMBER = re.compile(r"^[+\- ]?\d[\d,]*(\.\d*)?([eE][+-]?\d+)?%?$")


def number(value: float, spec: str = "") -> str:
    """``format(value, spec)``, except that a number that rounds to zero prints without a sign.

    ``number(-0.04, "+.1f")`` is ``"0.0"`` (not ``"-0.0"``), ``number(0.0, "+.1f")`` is ``"0.0"``
    (not ``"+0.0"``), ``number(1.25, "+.1f")`` is ``"+1.2"`` and ``number(-0.3, ".0%")`` is
    ``"-30%"``; NaN prints as ``"nan"`` whatever the sign option, infinities keep their sign.
    Every signed difference the book prints goes through here (a spec with ``"+"``), and so does
    every number in a :func:`bnlib.tables.table`. ``spec`` is a format spec without a width.
    """
    text = format(value, spec)
    if math.isnan(value):
        return text.lstrip("+- ")
    if math.isinf(value):
        return text
    return unsigned_zero(text)


def unsigned_zero(text: str) -> str:
    """``text``, a formatted number, without its sign if it shows a zero: ``"-0.0%"`` and
    ``"+0.000"`` become ``"0.0%"`` and ``"0.000"``; ``"-0.01"``, ``"-1e-05"`` and words stay as
    they are. The rule of :func:`number`, for numbers formatted elsewhere (the book's
    ``{glue:text}`` roles: ``_ext/glued_numbers.py``)."""
    if not _FORMATTED_NUMBER.match(text):
        return text
    mantissa = text.lower().split("e")[0]
    if text[:1] in "+- " and not any(digit in mantissa for digit in "123456789"):
        return text[1:]
    return text


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


# --------------------------------------------------------------- Hindi digits (chapter 05)

__all__ += ["holds", "position"]


def holds(count: int, total: int, things: str = "seeds") -> str:
    """Whether a finding held, counted: ``"holds in all 5 seeds"``, ``"holds in 3 of 5
    seeds"`` (a mixed outcome), ``"does not hold in any of the 5 seeds"``."""
    where = count_of(count, total, things)
    if count > 0:
        return f"holds {where}"
    if total == 1:
        return f"does not hold in the one {things.removesuffix('s')}"
    return f"does not hold in any of the {total} {things}"


def position(value: float, low: float, high: float) -> str:
    """Where ``value`` lies against the range [low, high]: ``"below"``, ``"within"`` (edges
    included) or ``"above"``; a NaN among them gives ``"not comparable with"``."""
    import math

    if any(math.isnan(x) for x in (value, low, high)):
        return "not comparable with"
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if value < low:
        return "below"
    return "above" if value > high else "within"


# --------------------------------------------------------------- figure descriptions

__all__ += ["listed"]


def listed(items) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``: items (as text) joined for a sentence."""
    words = [str(item) for item in items]
    if not words:
        raise ValueError("nothing to list")
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
