"""Check: running statistics that are NaN or infinite, or still at their initial values."""

from __future__ import annotations

import torch
from torch import nn

from bnlib.doctor.layers import named_batch_norms, tracks
from bnlib.doctor.report import Finding

__all__ = ["check_buffers"]


def check_buffers(model: nn.Module) -> list[Finding]:
    """``non-finite-statistics`` (error): a NaN or infinite running mean or variance (a forward
    pass that overflowed, e.g. float16 activations above 65,504 under autocast, was recorded
    even if the optimiser step was skipped); ``initial-statistics`` (warning): a layer that
    tracks statistics whose running mean is exactly 0 and variance exactly 1 in every channel,
    the values it was built with (never trained, or its buffers were not loaded).
    ``num_batches_tracked == 0`` alone is no finding: a checkpoint without that key loads as 0.
    """
    found = []
    for name, bn in named_batch_norms(model):
        if not tracks(bn):
            continue
        mean, var = bn.running_mean.detach(), bn.running_var.detach()
        bad = int((~torch.isfinite(mean) | ~torch.isfinite(var)).sum())
        if bad:
            found.append(Finding(
                "non-finite-statistics", name,
                f"{bad} of {mean.numel()} channels have a NaN or infinite running statistic: "
                "every eval-mode output of this layer is NaN there",
                "recompute them (bnlib.inference.recalibrate on training data); to prevent it, "
                "restore the statistics when a step is skipped (bnlib.updates."
                "restore_statistics) or keep the overflowing layer in float32", "error"))
        elif bn.track_running_stats and bool((mean == 0).all()) and bool((var == 1).all()):
            found.append(Finding(
                "initial-statistics", name,
                "running mean 0 and variance 1 in every channel, the values it is built with: "
                "it has never been updated, or its buffers were not loaded",
                "load the trained state_dict (strict=True), or train/recalibrate the layer",
                "warning"))
    return found
