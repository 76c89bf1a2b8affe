"""Check: a momentum that looks ported from Keras."""

from __future__ import annotations

from torch import nn

from bnlib.doctor.layers import named_batch_norms, tracks
from bnlib.doctor.report import Finding

__all__ = ["KERAS_MOMENTA", "check_momentum"]

#: Keras's momentum is the weight of the *old* value (default 0.99, often 0.9); PyTorch's is
#: the weight of the new batch (default 0.1). Copied literally, 0.99 keeps 1% of the old
#: average at each update: the running statistics are the last batch or two. Only these two
#: exact values are flagged (a deliberate PyTorch momentum of 0.9 is rare).
KERAS_MOMENTA = (0.9, 0.99)


def check_momentum(model: nn.Module) -> list[Finding]:
    """``keras-momentum`` (warning): a layer with running statistics whose momentum is one of
    ``KERAS_MOMENTA``."""
    found = []
    for name, bn in named_batch_norms(model):
        m = bn.momentum
        if tracks(bn) and m is not None and any(abs(m - k) < 1e-12 for k in KERAS_MOMENTA):
            found.append(Finding(
                "keras-momentum", name,
                f"momentum={m:g} looks copied from Keras, where it weights the old average; "
                f"in PyTorch it weights the new batch, so the running statistics follow the "
                f"last batch or two",
                f"use momentum={1 - m:.2g} (PyTorch's meaning of Keras's {m:g})", "warning"))
    return found
