"""The engine's SGD step: :class:`MultiTensorSGD`, without ``torch.optim``.

The same arithmetic as ``torch.optim.SGD(params, lr, momentum, weight_decay=...,
foreach=True)`` (no dampening, no Nesterov), operation for operation, so the parameters come out
bit for bit the same. Written out because the first call into ``torch.optim`` imports
``torch._dynamo`` (its methods are wrapped by ``torch._disable_dynamo``), which took as long as
importing torch itself on the 2-core machine the command line was profiled on: seconds of
start-up in every worker process of :func:`bnlib.training.run_many`, for nothing a plain SGD
step uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["MultiTensorSGD"]


class MultiTensorSGD:
    """SGD over ``params`` in a few multi-tensor (``torch._foreach_*``) operations per step::

        g = grad + weight_decay * param                      (if weight_decay)
        buf = g at the first step, then momentum * buf + g   (if momentum)
        param -= lr * (buf if momentum else g)

    Parameters without a gradient are skipped, as torch's optimizers do.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: dict[int, Tensor] = {}  # momentum buffers by id(param)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (``set_to_none=False``: fill them with zeros instead)."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum != 0:
            bufs = [self.buffers.get(id(p)) for p in params]
            if all(b is not None for b in bufs):
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, grads, alpha=1)
            else:
                for i, (p, g) in enumerate(zip(params, grads)):
                    if bufs[i] is None:
                        bufs[i] = self.buffers[id(p)] = g.detach().clone()
                    else:
                        bufs[i].mul_(self.momentum).add_(g, alpha=1)
            grads = bufs
        torch._foreach_add_(params, grads, alpha=-self.lr)
