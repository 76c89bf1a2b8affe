"""Check: a batch norm layer whose train/eval mode differs from the model's."""

from __future__ import annotations

from torch import nn

from bnlib.doctor.layers import named_batch_norms, tracks
from bnlib.doctor.report import Finding

__all__ = ["check_modes"]


def check_modes(model: nn.Module) -> list[Finding]:
    """``train-mode-in-eval`` (error): a BN layer in train mode inside a model in eval mode,
    so it normalises with batch statistics and updates its running statistics at inference;
    ``eval-mode-in-train`` (info): the reverse, a BN layer in eval mode inside a model in
    train mode (freezing done with ``eval()``, which ``model.train()`` undoes);
    ``batch-statistics-in-eval`` (warning): a layer without running statistics, which
    normalises every batch with its own statistics even in eval mode."""
    found = []
    for name, bn in named_batch_norms(model):
        if not tracks(bn):
            found.append(Finding(
                "batch-statistics-in-eval", name,
                "keeps no running statistics, so in eval mode too it normalises each batch with "
                "that batch's statistics: a prediction depends on the rest of its batch",
                "build it with track_running_stats=True and train it, or recalibrate it "
                "(bnlib.inference.recalibrate) after giving it buffers", "warning"))
        elif not model.training and bn.training:
            found.append(Finding(
                "train-mode-in-eval", name,
                "is in train mode inside a model in eval mode: it normalises with batch "
                "statistics and rewrites its running statistics at every forward pass",
                "call model.eval() last, after any code that sets submodules to train mode",
                "error"))
        elif model.training and not bn.training:
            found.append(Finding(
                "eval-mode-in-train", name,
                "is in eval mode inside a model in train mode; the next model.train() puts it "
                "back in train mode, where its running statistics move again",
                "to freeze it for good use bnlib.inference.freeze_batch_norm(model)", "info"))
    return found
