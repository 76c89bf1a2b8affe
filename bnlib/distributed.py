"""Run a function in N local processes that form one gloo process group, on 127.0.0.1 only.

:func:`launch` starts ``world_size`` processes (``spawn``), each of which joins a gloo process
group and calls ``fn(*args)``; it returns their results in rank order. The group's store is a
``torch.distributed.TCPStore`` served by the launching process from a socket it bound to
``127.0.0.1:0`` itself (``master_listen_fd``: no other interface, and no race for a free port);
``GLOO_SOCKET_IFNAME=lo`` makes gloo's own connections loopback ones too. Every collective has
a timeout (the group's, ``timeout`` seconds). If one process fails, every process is ended and
its error is raised in the caller as a :class:`WorkerError` (the original exception as its
``__cause__`` when it can be pickled), so nothing hangs and nothing is left running.

The workers join the group exactly as processes started by ``torchrun`` do
(:func:`init_from_environment`: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``, and a store served by the launcher, torchrun's ``TORCHELASTIC_USE_AGENT_STORE``),
so the same training code runs under ``torchrun --nproc-per-node N``. torchrun's own store,
like every ``env://`` or ``tcp://`` store started by rank 0, listens on all interfaces.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue as queue_module
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DEFAULT_TIMEOUT", "WorkerError", "init_from_environment", "launch", "loopback_store",
           "rank", "world_size"]

#: Seconds any collective (and joining the group) may take before it fails.
DEFAULT_TIMEOUT = 60.0


class WorkerError(RuntimeError):
    """A worker process failed. ``rank``: which; ``remote_traceback``: its traceback as text;
    ``__cause__``: its exception, when it could be pickled."""

    def __init__(self, rank: int, remote_traceback: str):
        super().__init__(f"rank {rank} failed:\n{remote_traceback}")
        self.rank = rank
        self.remote_traceback = remote_traceback


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Processes in the default group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def init_from_environment(timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Join the gloo group described by torchrun's variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``), with ``timeout`` seconds on every collective; gloo on the
    loopback interface unless ``GLOO_SOCKET_IFNAME`` says otherwise. Returns False (and does
    nothing) when those variables are absent: a single process, no group. Already in a group:
    True."""
    if dist.is_initialized():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=timeout))
    return True


@contextlib.contextmanager
def loopback_store(world_size: int, timeout: float = DEFAULT_TIMEOUT) -> Iterator[int]:
    """Serve a ``TCPStore`` for ``world_size`` clients from a socket bound to 127.0.0.1 by this
    process; yields its port. Clients connect as torchrun's workers do (see the module
    docstring)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(world_size + 8)
        port = listener.getsockname()[1]
    except BaseException:
        listener.close()
        raise
    descriptor = listener.detach()  # the store owns it from here, and closes it
    try:
        store = dist.TCPStore("127.0.0.1", port, world_size, is_master=True,
                              timeout=timedelta(seconds=timeout), wait_for_workers=False,
                              master_listen_fd=descriptor)
    except BaseException:
        os.close(descriptor)
        raise
    try:
        yield port
    finally:
        del store


def worker_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The variables a worker of :func:`launch` runs with: torchrun's, for a store served by the
    launcher on ``127.0.0.1:port``."""
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True",
            "GLOO_SOCKET_IFNAME": "lo"}


def _worker(environment: dict, timeout: float, threads: int, fn: Callable, args: Sequence,
            results) -> None:
    os.environ.update(environment)
    rank = int(environment["RANK"])
    try:
        torch.set_num_threads(threads)
        init_from_environment(timeout)
        # plain pickle: tensors travel as bytes (torch's queue reductions would share memory
        # through a file descriptor that dies with this process)
        results.put((rank, "ok", pickle.dumps(fn(*args)), None))
    except BaseException as error:  # reported to the launcher, which ends every process
        text = traceback.format_exc()
        try:
            pickle.dumps(error)
        except Exception:
            error = None
        results.put((rank, "error", error, text))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _end(processes: Sequence[multiprocessing.Process]) -> None:
    """Terminate, then kill, every process still running, and reap them all."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def launch(
    fn: Callable[..., Any],
    world_size: int,
    args: Sequence = (),
    timeout: float = DEFAULT_TIMEOUT,
    threads: int = 1,
    deadline: float | None = None,
) -> list[Any]:
    """``[fn(*args) on rank 0, ..., on rank world_size - 1]``, each run in its own process of one
    gloo group (``fn`` and ``args`` must pickle: a module-level function).

    Args:
        fn: the function each process runs, inside the group (``torch.distributed`` calls work).
        world_size: processes.
        args: ``fn``'s arguments, the same for every rank (a rank asks ``rank()``).
        timeout: seconds for joining the group and for every collective.
        threads: torch threads per process.
        deadline: seconds the whole launch may take (None: no limit beyond the timeouts).

    Raises:
        WorkerError: a process raised or died; all were ended first.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes: list = []
    with loopback_store(world_size, timeout) as port:
        try:
            for r in range(world_size):
                process = context.Process(
                    target=_worker, daemon=True,
                    args=(worker_environment(r, world_size, port), timeout, threads, fn,
                          tuple(args), results))
                process.start()
                processes.append(process)
            return _collect(processes, results, deadline)
        finally:
            _end(processes)
            results.close()


def _collect(processes: Sequence, results, deadline: float | None) -> list[Any]:
    """Every rank's result, or a :class:`WorkerError` as soon as one fails or dies."""
    stop = None if deadline is None else time.monotonic() + deadline
    done: dict[int, Any] = {}
    while len(done) < len(processes):
        try:
            rank, status, value, text = results.get(timeout=0.1)
        except queue_module.Empty:
            for r, process in enumerate(processes):
                if r not in done and process.exitcode is not None and results.empty():
                    raise WorkerError(r, f"the process exited with code {process.exitcode} "
                                         "without a result") from None
            if stop is not None and time.monotonic() > stop:
                raise TimeoutError(f"the launch took longer than {deadline} s; "
                                   f"ranks {sorted(set(range(len(processes))) - set(done))} "
                                   "had not finished") from None
            continue
        if status == "error":
            raise WorkerError(rank, text) from value
        done[rank] = pickle.loads(value)
    return [done[r] for r in range(len(processes))]
