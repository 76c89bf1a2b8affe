"""Check: running statistics far from the population statistics of the given data."""

from __future__ import annotations

import copy

from torch import Tensor, nn

from bnlib.doctor.report import Finding
from bnlib.probes import variance_shift

__all__ = ["SHIFT_THRESHOLD", "check_shift"]

#: Li et al.'s variance shift, max(running/real, real/running) averaged over channels, above
#: which the running variance is reported. 1.5 means the stored variance is off by half (or by
#: a third) on average, a standard deviation off by about 22%. A healthy network's running
#: average of batch variances lies within a few percent of the population's: the estimate of
#: one batch of 32 (N, C) samples is off by sqrt(2/31) = 25% (less with spatial positions), and
#: momentum 0.1 averages about 19 batches, about 6%. Fixed before the book's networks were
#: examined.
SHIFT_THRESHOLD = 1.5


def check_shift(model: nn.Module, images: Tensor, skip: set[str] = frozenset()) -> list[Finding]:
    """``statistics-shift`` (warning): a BN layer whose running variance lies, by Li et al.'s
    measure (:func:`bnlib.probes.variance_shift`, on a copy of ``model`` in eval mode), more
    than :data:`SHIFT_THRESHOLD` from its input's variance on ``images``. Layers named in
    ``skip`` (already reported, e.g. non-finite) are left out."""
    found = []
    for row in variance_shift(copy.deepcopy(model), images):
        if row["layer"] in skip or not row["shift"] > SHIFT_THRESHOLD:
            continue
        found.append(Finding(
            "statistics-shift", row["layer"],
            f"its running variance is {row['ratio']:.3g} times its input's variance on these "
            f"data (Li et al.'s shift {row['shift']:.3g} > {SHIFT_THRESHOLD}): eval mode "
            "normalises with statistics of other data (unrepresentative batches, extra "
            "train-mode passes, stale buffers, dropout before BN)",
            "recompute them on training data with bnlib.inference.recalibrate(model, batches), "
            "then find what moved them (bnlib.doctor.watch)"))
    return found
