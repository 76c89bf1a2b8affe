"""The departures from PyTorch found in popular BN tutorials, each as a small named variant, and
the measurements that expose each."""

from __future__ import annotations
