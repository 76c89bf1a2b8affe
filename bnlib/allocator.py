"""glibc's memory allocator set for training loops: freed memory is kept for the next step.

A training step allocates and frees the same few megabytes of activations and gradients,
step after step. By default glibc's ``malloc`` serves a block above its mmap threshold (128 KiB,
raised on the fly to the largest block freed so far) with fresh pages, and hands the top of its
heap back to the kernel whenever more than twice that threshold is free; the next step then
faults the same pages in again, each zeroed by the kernel. :func:`keep_freed_memory` fixes the
threshold at its largest value (32 MiB on 64-bit Linux) and trims only above 1 GiB, so the
pages stay with the process. Only where memory comes from changes, never a computed number
(torch aligns every CPU tensor to 64 bytes either way; ``tests/test_allocator.py`` checks that a
run's history is bit-identical, and that a step of the article's network with BN no longer
faults its pages in again). ``benchmarks/command_line.py`` times the command with it; the
peak memory stays that of the largest step, which the process holds either way.

The processes bnlib starts and owns call it: the command line (:mod:`bnlib.experiment`) and
the workers of :func:`bnlib.training.run_many`. A notebook's kernel is left as it is. Elsewhere
than glibc it does nothing. This module imports only the standard library.
"""

from __future__ import annotations

import ctypes
import platform
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's largest allowed value on 64-bit: half
#: of ``HEAP_MAX_SIZE``, 64 MiB).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap is handed back to the kernel only above this.
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Set this process's glibc allocator as the module docstring says; True if it took
    effect (False elsewhere than Linux with glibc, where nothing changes)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
