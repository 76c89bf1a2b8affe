"""The mean and spread of one measurement over seeds: one convention for every chapter.

A result trained from several seeds is summarised by :func:`summarize` as a
:class:`SeedSummary`: the mean, the **sample standard deviation** (``n - 1`` in the
denominator: the usual estimate of how much a single seed's result varies around the mean), the
lowest and highest value and the number of seeds. The pages state it as :data:`CONVENTION`.

With one seed there is no spread to estimate: ``sd`` is ``nan`` (printed by :func:`describe` as
"one seed"), never 0, so no page claims a spread it did not measure. A verdict that asks whether
a difference stands out from the seed-to-seed variation uses :attr:`SeedSummary.tolerance`
(:func:`tolerance` for several summaries), which is the ``sd`` with several seeds and 0 with one:
with one seed the difference is judged by itself.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from bnlib.prose import number

__all__ = ["CONVENTION", "SeedSummary", "describe", "summarize", "tolerance"]

#: How the pages name the spread they show.
CONVENTION = "the sample standard deviation over the seeds"


@dataclass(frozen=True)
class SeedSummary:
    """One measurement over ``n`` seeds: ``mean``, sample standard deviation ``sd`` (``nan``
    for one seed), ``low`` and ``high`` (the extreme seeds), in the measurement's own unit."""

    mean: float
    sd: float
    low: float
    high: float
    n: int

    @property
    def tolerance(self) -> float:
        """The spread a verdict allows for: ``sd``, or 0 with a single seed."""
        return self.sd if self.n > 1 else 0.0

    def as_dict(self) -> dict[str, float]:
        """``{"mean", "sd", "low", "high", "n"}`` as plain Python numbers (ready for glue)."""
        return asdict(self)


def summarize(values: Iterable[float]) -> SeedSummary:
    """The :class:`SeedSummary` of one value per seed. Raises ``ValueError`` on no values or a
    non-finite one (a diverged run is for the caller to count, not to average)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize needs at least one value (one per seed)")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"summarize needs finite values, got {values}")
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return SeedSummary(statistics.fmean(values), sd, min(values), max(values), len(values))


def tolerance(*summaries: SeedSummary) -> float:
    """The largest :attr:`SeedSummary.tolerance` of ``summaries``: how far apart two results
    must be before a verdict calls them different."""
    if not summaries:
        raise ValueError("tolerance needs at least one SeedSummary")
    return max(s.tolerance for s in summaries)


def describe(summary: SeedSummary, spec: str = ".1%") -> str:
    """``"98.7% ± 0.2% (5 seeds)"``, or ``"98.7% (one seed)"``; ``spec`` formats both numbers."""
    mean, sd = number(summary.mean, spec), number(summary.sd, spec)  # no "-0.0%"
    if summary.n == 1:
        return f"{mean} (one seed)"
    return f"{mean} ± {sd} ({summary.n} seeds)"
