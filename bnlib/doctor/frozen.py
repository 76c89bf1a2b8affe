"""Check: "frozen" batch norm layers whose running statistics still move."""

from __future__ import annotations

from torch import nn

from bnlib.doctor.layers import affine_trained, named_batch_norms, tracks, updates_in_training
from bnlib.doctor.report import Finding

__all__ = ["check_frozen"]


def check_frozen(model: nn.Module) -> list[Finding]:
    """``frozen-but-updating`` (warning): affine parameters with ``requires_grad=False`` in a
    layer in train mode, whose running statistics every forward pass still updates;
    ``untracked-statistics`` (warning): running statistics kept with
    ``track_running_stats=False`` (the flag flipped after construction): train mode then
    normalises with batch statistics and updates nothing, eval mode with the stored ones."""
    found = []
    for name, bn in named_batch_norms(model):
        if updates_in_training(bn) and bn.weight is not None and not affine_trained(bn):
            found.append(Finding(
                "frozen-but-updating", name,
                "its weight and bias are frozen (requires_grad=False) but it is in train mode: "
                "every forward pass still normalises with batch statistics and rewrites its "
                "running statistics",
                "bnlib.inference.freeze_batch_norm(model) (a fixed map model.train() cannot "
                "switch back), or put this layer in eval mode after every model.train()"))
        if tracks(bn) and not bn.track_running_stats:
            found.append(Finding(
                "untracked-statistics", name,
                "holds running statistics but track_running_stats=False: train mode normalises "
                "with batch statistics and never updates them, eval mode uses them as stored, "
                "so training and inference normalise differently",
                "freeze with bnlib.inference.freeze_batch_norm(model) instead of flipping the "
                "flag"))
    return found
