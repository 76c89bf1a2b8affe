"""Check: a BatchNorm1d that normalises the length axis of a (N, L, C) sequence."""

from __future__ import annotations

from torch import nn

from bnlib import nn as bnn
from bnlib.doctor.layers import named_batch_norms
from bnlib.doctor.report import Finding
from bnlib.doctor.trace import LayerInput

__all__ = ["LAST_AXIS_LAYERS", "check_layout"]

#: Layers that act on the last axis of their input, so that their 3-D output is (N, L, C).
LAST_AXIS_LAYERS = (nn.Linear, nn.Embedding, nn.MultiheadAttention, nn.LayerNorm,
                    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def check_layout(model: nn.Module, inputs: dict[str, LayerInput]) -> list[Finding]:
    """``bn1d-normalises-length`` (warning): a BatchNorm1d whose 3-D input (N, L, C) is the
    output of one of ``LAST_AXIS_LAYERS``. BatchNorm1d takes (N, C, L): it normalises over
    N and the last axis, per index of axis 1, so here per position in the sequence, over the
    features. Torch only notices when L differs from the layer's size; it is silent when
    L == C or when the layer was built with L."""
    found = []
    for name, bn in named_batch_norms(model):
        seen = inputs.get(name)
        if (seen is None or not isinstance(bn, (nn.BatchNorm1d, bnn.BatchNorm1d))
                or len(seen.shape) != 3 or seen.producer_type is None
                or not issubclass(seen.producer_type, LAST_AXIS_LAYERS)):
            continue
        n, length, features = seen.shape
        found.append(Finding(
            "bn1d-normalises-length", name,
            f"its input {seen.shape} comes from {seen.producer} "
            f"({seen.producer_type.__name__}), which acts on the last axis, so axis 1 is "
            f"the sequence (L={length}) and BatchNorm1d normalises each position over the "
            f"{features} features instead of each feature over the positions",
            "transpose to (N, C, L) before the layer and back after it "
            "(x.transpose(1, 2)), or normalise the features with LayerNorm"))
    return found
