"""Many independent runs over processes: :func:`run_many`.

Cache hits are read in the calling process; the runs left to compute go to spawned worker
processes of one torch thread each (no oversubscription: one worker per available CPU). The
parent computes each run's cache key once and hands the file path to the worker, which trains,
writes the history and sends back its JSON text (serialised once).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from bnlib import settings
from bnlib.probes import StepProbe
from bnlib.training import store
from bnlib.training.config import EpochRecord, History, RunConfig

__all__ = ["run_many"]

_progress_queue = None


def _init_worker(queue) -> None:
    """Worker start-up: the progress queue (each run then takes one torch thread)."""
    global _progress_queue
    _progress_queue = queue


def _run_in_worker(config: RunConfig, probes: Sequence[StepProbe], path: Path | None) -> str:
    def tick(record: EpochRecord) -> None:
        if _progress_queue is not None:
            _progress_queue.put(1)

    return store.train_and_store(config, probes, path, progress=False, threads=1, on_epoch=tick)[1]


def _drain(queue, bar) -> None:
    while queue is not None and not queue.empty():
        queue.get_nowait()
        bar.update(1)


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
            picklable, as they travel to the worker process.
        workers: processes (default :func:`bnlib.settings.default_workers`: one per available
            CPU, fewer if memory is short; never more than the runs left to compute); each uses
            one torch thread. ``workers=1`` runs them one after another in this process, which
            saves the memory of the worker processes (each imports torch and loads the data).
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
        if workers == 1:
            for i in todo:
                results[i] = store.train_and_store(
                    configs[i], probe_lists[i], paths[i], progress=False, threads=1,
                    on_epoch=(lambda record: bar.update(1)) if bar is not None else None,
                )[0]
        else:
            _in_pool(configs, probe_lists, paths, todo, results, workers, bar)
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


def _in_pool(configs, probe_lists, paths, todo, results, workers: int, bar) -> None:
    """The runs ``todo`` in a pool of ``workers`` spawned processes, into ``results``."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        queue = manager.Queue() if bar is not None else None
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(queue,)) as pool:
            futures = {pool.submit(_run_in_worker, configs[i], probe_lists[i], paths[i]): i
                       for i in todo}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    results[futures[future]] = History.from_json(future.result())
                _drain(queue, bar)
        _drain(queue, bar)  # the last epochs reported before their run's end
