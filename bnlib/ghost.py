"""Moved: :class:`GhostBatchNorm2d` now lives in :mod:`bnlib.nn.batchnorm` (the math in
:func:`bnlib.functional.ghost_batch_norm`). This shim keeps old imports working until merge."""

from bnlib.nn import GhostBatchNorm2d  # moved

__all__ = ["GhostBatchNorm2d"]
