"""Check: batches with fewer than two values per channel, or one sample, in train mode."""

from __future__ import annotations

import math

from torch import nn

from bnlib.doctor.layers import named_batch_norms
from bnlib.doctor.report import Finding
from bnlib.doctor.trace import LayerInput

__all__ = ["check_shapes"]


def check_shapes(model: nn.Module, inputs: dict[str, LayerInput],
                 last_batch: int | None = None) -> list[Finding]:
    """For each BN layer in train mode that received an input of shape ``(N, C, *spatial)``:

    ``one-value-per-channel`` (error): N times the spatial size is below 2 ((1, C) or
    (1, C, 1, 1)), for the batch given or for a loader's last batch of ``last_batch`` samples:
    the batch variance is 0 and torch refuses the batch ("Expected more than 1 value per
    channel when training"); ``instance-norm-batch`` (warning): one sample with spatial positions
    ((1, C, H, W)): the layer normalises the image with its own statistics, which is instance
    normalisation, and its running statistics average within-image statistics."""
    found = []
    for name, bn in named_batch_norms(model):
        if not bn.training or name not in inputs:
            continue
        shape = inputs[name].shape
        spatial = math.prod(shape[2:])
        for n, where in ((shape[0], "the batch"), (last_batch, "the loader's last batch")):
            if n is None:
                continue
            if n * spatial < 2:
                found.append(Finding(
                    "one-value-per-channel", name,
                    f"{where} gives it {n * spatial} value per channel in train mode (input "
                    f"{(n, *shape[1:])}): the batch variance is 0, torch raises 'Expected more "
                    "than 1 value per channel when training'",
                    "drop_last=True in the DataLoader, batches of at least 2, or eval mode for "
                    "single samples", "error"))
                break
            if n == 1:
                found.append(Finding(
                    "instance-norm-batch", name,
                    f"{where} is one sample (input {(1, *shape[1:])}) in train mode: it is "
                    "normalised with its own per-channel statistics (instance normalisation) "
                    "and the running statistics average within-image statistics",
                    "batches of several samples (drop_last=True for a loader), or eval mode",
                    "warning"))
                break
    return found
