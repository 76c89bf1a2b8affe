"""Normalisation layers for PyTorch, written from scratch, by family as ``torch.nn`` has them.

``bnlib.nn.batchnorm``: the batch-norm family -- :class:`BatchNorm1d`, :class:`BatchNorm2d`,
:class:`BatchNorm3d` (drop-in replacements for their ``torch.nn`` namesakes) and the variants
:class:`BatchRenorm2d`, :class:`GhostBatchNorm2d`, :class:`NoisyBatchNorm`,
:class:`FrozenBatchNorm2d`.

``bnlib.nn.normalization``: the per-sample family -- :class:`LayerNorm`, :class:`GroupNorm`,
:class:`InstanceNorm1d`, :class:`InstanceNorm2d`, :class:`InstanceNorm3d`, :class:`RMSNorm`.

``bnlib.nn.sync_batchnorm``: :class:`SyncBatchNorm`, batch norm over a ``torch.distributed``
group's whole batch on any backend and device (not a subclass of torch's, which runs on GPUs
only), its ``convert_sync_batchnorm`` and :func:`revert_sync_batchnorm`.

Each replacement has the same constructor arguments and defaults, parameters and buffers (so the
same ``state_dict`` keys), outputs, gradients (first and second) and running statistics as its
torch namesake, and rejects the same inputs; none calls torch's own normalisation functions.
The math is in :mod:`bnlib.functional`.
"""

from bnlib.functional import BatchNormFunction
from bnlib.nn.batchnorm import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    BatchRenorm2d,
    FrozenBatchNorm2d,
    GhostBatchNorm2d,
    NoisyBatchNorm,
    _BatchNorm,
    _NormBase,
)
from bnlib.nn.normalization import (
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    RMSNorm,
)
from bnlib.nn.sync_batchnorm import SyncBatchNorm, revert_sync_batchnorm

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "BatchRenorm2d",
    "FrozenBatchNorm2d",
    "GhostBatchNorm2d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "NoisyBatchNorm",
    "RMSNorm",
    "SyncBatchNorm",
    "_BatchNorm",
    "_NormBase",
    "revert_sync_batchnorm",
]
