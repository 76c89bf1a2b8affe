"""bnlib: Batch Normalization from scratch, checked against PyTorch.

Installed as the distribution ``batchnorm-measured``; imported as ``bnlib``. The modules are
imported one by one (``from bnlib.nn import BatchNorm2d``), so ``import bnlib`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
