"""Worker processes for :func:`bnlib.training.run_many`, and starting them early.

A worker is a spawned interpreter that trains one run at a time with one torch thread. Its
start (importing torch and bnlib's training code, loading the digits) takes about a second,
which a short command cannot hide. :func:`prestarted` starts the workers at once, before the
calling process has imported torch itself, so the two imports overlap; ``run_many`` calls
inside the block use those workers, and the block ends them when it exits. This module imports
only the standard library, so a command can enter the block before its own heavy imports::

    with bnlib.workers.prestarted(1, preload=["bnlib.training.parallel:warm_up"]):
        from bnlib.experiments.hindi_digits import run_comparison  # imports torch
        results = run_comparison(...)

Workers end with their parent: they ignore Ctrl-C (they are started with SIGINT blocked, so
even a Ctrl-C during their start-up prints nothing; the parent, interrupted, ends them and
re-raises), and on Linux they ask the kernel for SIGKILL when the parent dies
(``PR_SET_PDEATHSIG``), so a parent killed outright (a timeout, the out-of-memory killer)
leaves no worker behind; elsewhere a thread in each worker watches its parent.
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from bnlib import allocator

__all__ = ["Pool", "current", "prestarted", "start", "stop"]

#: prctl(2) option asking for a signal when the parent process dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1

#: In a worker: where it reports finished epochs (``None`` outside workers).
progress_queue = None

_current: Pool | None = None


@dataclass
class Pool:
    """``size`` spawned workers behind ``executor``; they put a 1 on ``queue`` per finished
    epoch (the parent drains it)."""

    executor: ProcessPoolExecutor
    queue: object
    size: int


def _end_with_parent(parent: int) -> None:
    """Make this process end when process ``parent`` (its parent) ends, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the request took effect
                os._exit(1)
            return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, every: float = 0.5) -> None:
    """Exit this process as soon as it is no longer ``parent``'s child (checked every
    ``every`` seconds)."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT held back in this thread meanwhile (delivered afterwards): processes started
    meanwhile inherit the blocked signal, so a Ctrl-C never reaches them."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _init_worker(queue, parent: int, preload: Sequence[str]) -> None:
    """Worker start-up: end with the parent, leave Ctrl-C to it, keep the progress queue, keep
    freed memory (:mod:`bnlib.allocator`), then import what ``preload`` names (and call it,
    for a ``"module:function"``), so the first task starts at once."""
    global progress_queue
    _end_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    progress_queue = queue
    allocator.keep_freed_memory()
    for name in preload:
        module, _, function = name.partition(":")
        loaded = importlib.import_module(module)
        if function:
            getattr(loaded, function)()


def _ready() -> None:
    """The task that makes a worker start (it returns once the worker's start-up is done)."""


def start(size: int, preload: Sequence[str] = ()) -> Pool:
    """Spawn ``size`` workers now and return them. Each starts up in the background and
    imports the modules named in ``preload`` (say, the code its tasks run: this module knows
    nothing of them), calling ``function`` for an entry ``"module:function"`` (say, to load
    data), so that its first task starts at once."""
    if size < 1:
        raise ValueError(f"a pool needs at least one worker, got {size}")
    context = multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    executor = ProcessPoolExecutor(size, mp_context=context, initializer=_init_worker,
                                   initargs=(queue, os.getpid(), tuple(preload)))
    with sigint_blocked():  # a spawned executor starts one process per submitted task
        for _ in range(size):
            executor.submit(_ready)
    return Pool(executor, queue, size)


def stop(pool: Pool) -> None:
    """End ``pool``'s workers at once (SIGTERM): idle ones need not be waited for as their
    interpreters exit, and after a failure their runs are not wanted."""
    for process in list((getattr(pool.executor, "_processes", None) or {}).values()):
        process.terminate()
    pool.executor.shutdown(wait=True, cancel_futures=True)


def current() -> Pool | None:
    """The pool of the innermost :func:`prestarted` block, if any."""
    return _current


@contextmanager
def prestarted(size: int, preload: Sequence[str] = ()) -> Iterator[Pool | None]:
    """Start ``size`` workers now (as :func:`start`) for the ``run_many`` calls inside the
    block; end them when it exits (they are idle by then). ``size`` 0 starts none (runs train
    in the caller)."""
    global _current
    if size < 1:
        yield None
        return
    outer, _current = _current, start(size, preload)
    try:
        yield _current
    finally:
        pool, _current = _current, outer
        stop(pool)
