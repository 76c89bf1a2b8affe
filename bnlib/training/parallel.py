"""Many independent runs over processes: :func:`run_many`.

Cache hits are read in the calling process. The runs left to compute are shared between the
calling process and ``workers - 1`` worker processes (:mod:`bnlib.workers`: spawned, ending
with their parent), each training one run at a time with one torch thread (no
oversubscription: one process per available CPU). The calling process trains runs itself
instead of waiting, so it spares one worker's start and starts training at once; the workers
take runs from the front of the list, the caller from the back. Workers already started by a
:func:`bnlib.workers.prestarted` block are used (and left to the block to end); otherwise the
call starts its own and ends them before it returns. The parent computes each run's cache key
once and hands the file path to the worker, which trains, writes the history and sends back
its JSON text (serialised once).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from bnlib import data as bnlib_data
from bnlib import settings, workers as worker_processes
from bnlib.probes import StepProbe
from bnlib.training import store
from bnlib.training.config import EpochRecord, History, RunConfig

__all__ = ["PRELOAD", "run_many", "warm_up"]


def warm_up() -> None:
    """What a worker does as it starts (named in :data:`PRELOAD`): load the digits into this
    process's cache, so that its first run starts training at once."""
    bnlib_data.load_hindi_digits("train")
    bnlib_data.load_hindi_digits("test")


#: What each worker of :func:`run_many` preloads (:func:`bnlib.workers.start`).
PRELOAD = (f"{__name__}:warm_up",)


def _run_in_worker(config: RunConfig, probes: Sequence[StepProbe], path: Path | None) -> str:
    def tick(record: EpochRecord) -> None:
        if worker_processes.progress_queue is not None:
            worker_processes.progress_queue.put(1)

    return store.train_and_store(config, probes, path, progress=False, threads=1, on_epoch=tick)[1]


def run_many(
    configs: Sequence[RunConfig],
    probes: Sequence[Sequence[StepProbe]] | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> list[History]:
    """Run independent configurations in parallel processes; histories in the order given.

    Args:
        configs: the runs.
        probes: one sequence of probes per configuration (``None``: no probes). Probes must be
            picklable, as they travel to the worker processes.
        workers: processes training at once, this one included (default
            :func:`bnlib.settings.default_workers`: one per available CPU, fewer if memory is
            short; never more than the runs left to compute); each uses one torch thread.
            ``workers=1`` runs them one after another in this process, which saves the memory
            of the worker processes (each imports torch and loads the data).
        cache: as in :func:`bnlib.training.run`; cache hits are read here and cost no process.
        progress: one bar over all epochs of all runs (default
            :func:`bnlib.settings.show_progress`).
    """
    configs = list(configs)
    probe_lists = [tuple(p) for p in probes] if probes is not None else [()] * len(configs)
    if len(probe_lists) != len(configs):
        raise ValueError(f"{len(probe_lists)} probe lists for {len(configs)} configurations")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be None or a positive integer, got {workers}")
    if progress is None:
        progress = settings.show_progress()
    results: list[History | None] = [None] * len(configs)
    paths = [store.cache_path(c, p) if cache else None for c, p in zip(configs, probe_lists)]
    todo = []
    for i, path in enumerate(paths):
        results[i] = store.lookup(path) if path is not None else None
        if results[i] is None:
            todo.append(i)
    if not todo:
        return results  # type: ignore[return-value]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(configs[i].epochs for i in todo), unit="epoch", desc=f"{len(todo)} runs")
    workers = min(workers or settings.default_workers(), len(todo))
    try:
        _Runs(configs, probe_lists, paths, results, bar).run(todo, workers)
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


class _Runs:
    """The runs left to compute, shared between this process and a pool of spawned workers;
    each finished history goes into ``results`` at its run's index."""

    def __init__(self, configs, probe_lists, paths, results, bar) -> None:
        self.configs, self.probe_lists, self.paths = configs, probe_lists, paths
        self.results, self.bar = results, bar
        self.queue = None
        self.pool: ProcessPoolExecutor | None = None
        self.running: dict[Future, int] = {}
        self.waiting: deque[int] = deque()
        self.slots = 0  # worker processes in the pool

    def run(self, todo: Sequence[int], workers: int) -> None:
        """Train the runs ``todo`` on ``workers`` processes, this one included."""
        self.waiting.extend(todo)
        if workers == 1:
            while self.waiting:
                self.train_here(self.waiting.popleft())
            return
        pool = worker_processes.current()
        own = pool is None
        if own:
            pool = worker_processes.start(workers - 1, preload=PRELOAD)
        self.pool, self.queue, self.slots = pool.executor, pool.queue, min(pool.size, workers - 1)
        try:
            self.hand_out()
            while self.waiting:  # the workers are busy: train the next run here
                self.train_here(self.waiting.pop())
            while self.running:
                self.collect(timeout=0.5)
        except BaseException:  # Ctrl-C or a failed run: end the workers now, not after their runs
            worker_processes.stop(pool)
            raise
        finally:
            self.drain()  # the last epochs reported before their run's end
        if own:
            worker_processes.stop(pool)  # idle now: no need to wait for them to exit

    def hand_out(self) -> None:
        """Give waiting runs (from the front) to idle workers, one each."""
        while self.waiting and len(self.running) < self.slots:
            i = self.waiting.popleft()
            with worker_processes.sigint_blocked():  # submit may start a worker process
                future = self.pool.submit(_run_in_worker, self.configs[i], self.probe_lists[i],
                                          self.paths[i])
            self.running[future] = i

    def collect(self, timeout: float) -> None:
        """Store the histories of the workers' finished runs (waiting up to ``timeout`` s for
        one) and give their workers the next waiting runs."""
        done, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            self.results[self.running.pop(future)] = History.from_json(future.result())
        self.drain()
        if done:
            self.hand_out()

    def drain(self) -> None:
        """Move the epochs the workers reported onto the bar (emptying the queue even without
        a bar, so that no worker ever waits on a full pipe)."""
        while self.queue is not None and not self.queue.empty():
            self.queue.get()
            if self.bar is not None:
                self.bar.update(1)

    def train_here(self, i: int) -> None:
        """Train run ``i`` in this process; between its epochs, keep the workers supplied."""
        def on_epoch(record: EpochRecord) -> None:
            if self.bar is not None:
                self.bar.update(1)
            if self.pool is not None:
                self.collect(timeout=0)

        self.results[i] = store.train_and_store(self.configs[i], self.probe_lists[i],
                                                self.paths[i], progress=False, threads=1,
                                                on_epoch=on_epoch)[0]
