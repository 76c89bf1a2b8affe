"""One traced forward pass: what each batch norm layer receives, and from which module."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor, nn

from bnlib.doctor.layers import named_batch_norms

__all__ = ["LayerInput", "trace_inputs"]


@dataclasses.dataclass(frozen=True)
class LayerInput:
    """The input one BN layer received: its ``shape`` and the qualified name and class of the
    module whose output it is (``None`` when it comes from a function or the model's input)."""

    shape: tuple[int, ...]
    producer: str | None
    producer_type: type | None


@torch.no_grad()
def trace_inputs(model: nn.Module, inputs: Tensor) -> dict[str, LayerInput]:
    """Run a copy of ``model`` in eval mode on ``inputs`` and record, per BN layer name, its
    first call's ``LayerInput``. ``model`` itself is not touched."""
    twin = copy.deepcopy(model).eval()
    outputs: dict[int, tuple[str, type, Tensor]] = {}  # the tensor is kept so its id stays unique
    seen: dict[str, LayerInput] = {}
    names = {id(m): n for n, m in named_batch_norms(twin)}

    def record_output(name):
        def hook(module, args, output):
            first = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(first, Tensor):
                outputs[id(first)] = (name, type(module), first)
        return hook

    def record_input(module, args):
        name = names[id(module)]
        if name not in seen:
            producer = outputs.get(id(args[0]))
            seen[name] = LayerInput(tuple(args[0].shape), producer and producer[0],
                                    producer and producer[1])

    handles = [m.register_forward_hook(record_output(n)) for n, m in twin.named_modules()
               if n and id(m) not in names]
    handles += [m.register_forward_pre_hook(record_input) for _, m in named_batch_norms(twin)]
    try:
        twin(inputs)
    finally:
        for h in handles:
            h.remove()
    return seen
