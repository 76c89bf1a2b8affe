"""Check: running statistics far from the population statistics of the given data."""

from __future__ import annotations

import copy

from torch import Tensor, nn

from bnlib.doctor.report import Finding
from bnlib.probes import variance_shift

__all__ = ["MEAN_SHIFT_THRESHOLD", "MIN_SAMPLES", "SHIFT_THRESHOLD", "check_shift"]

#: Li et al.'s variance shift, max(running/real, real/running) averaged over channels, above
#: which the running variance is reported. 1.5 means the stored variance is off by half (or by
#: a third) on average, a standard deviation off by about 22%. A healthy network's running
#: average of batch variances lies within a few percent of the population's: the estimate of
#: one batch of 32 (N, C) samples is off by sqrt(2/31) = 25% (less with spatial positions), and
#: momentum 0.1 averages about 19 batches, about 6%. Fixed before the book's networks were
#: examined.
SHIFT_THRESHOLD = 1.5
#: The running mean's distance from the data's mean, in the data's standard deviations and
#: averaged over channels, above which it is reported (Li et al.'s ratio sees only variances; a
#: running mean of one class's batches can be off with variances about right). A batch mean of
#: 32 samples is off by 1/sqrt(32) = 0.18 standard deviations, a running average of about 19
#: of them by about 0.04: 0.5 is far beyond either.
MEAN_SHIFT_THRESHOLD = 0.5
#: Fewer samples than this and the data's own variance is too uncertain to judge the running
#: one (from 32 samples an (N, C) variance is off by sqrt(2/31) = 25% already): no check.
MIN_SAMPLES = 32


def check_shift(model: nn.Module, images: Tensor, skip: set[str] = frozenset()) -> list[Finding]:
    """``statistics-shift`` (warning): a BN layer whose running variance lies, by Li et al.'s
    measure (``bnlib.probes.variance_shift``, on a copy of ``model`` in eval mode), more than
    ``SHIFT_THRESHOLD`` from its input's variance on ``images``, or whose running mean lies
    more than ``MEAN_SHIFT_THRESHOLD`` standard deviations from the input's mean. Layers named
    in ``skip`` (already reported, e.g. non-finite) are left out; fewer than ``MIN_SAMPLES``
    samples give no finding."""
    found = []
    if len(images) < MIN_SAMPLES:
        return found
    for row in variance_shift(copy.deepcopy(model), images):
        if row["layer"] in skip or not (row["shift"] > SHIFT_THRESHOLD
                                         or row["mean_shift"] > MEAN_SHIFT_THRESHOLD):
            continue
        found.append(Finding(
            "statistics-shift", row["layer"],
            f"its running variance is {row['ratio']:.3g} times its input's variance on these "
            f"data (Li et al.'s shift {row['shift']:.3g}, reported above {SHIFT_THRESHOLD}) "
            f"and its running mean {row['mean_shift']:.2g} standard deviations from the data's "
            f"(reported above {MEAN_SHIFT_THRESHOLD}): eval mode "
            "normalises with statistics of other data (unrepresentative batches, extra "
            "train-mode passes, stale buffers, dropout before BN)",
            "recompute them on training data with bnlib.inference.recalibrate(model, batches), "
            "then find what moved them (bnlib.doctor.watch)"))
    return found
