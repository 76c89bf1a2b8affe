"""bnlib.workers: workers started before the runs, used by run_many, ended with their block."""

import subprocess
import sys

import pytest

from bnlib import training, workers
from bnlib.models import ARTICLE_TRACKED_WEIGHTS
from bnlib.training import RunConfig

TINY = RunConfig(
    model_kwargs={"batch_norm": True}, epochs=1, batch_size=32, train_subset=64, test_subset=50,
    track_weights=ARTICLE_TRACKED_WEIGHTS,
)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_CACHE_DIR", str(tmp_path))
    return tmp_path


def without_seconds(history) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history.rows()]


def worker_processes(pool) -> list:
    return list(pool.executor._processes.values())


def test_run_many_uses_the_prestarted_workers_and_the_block_ends_them(cache_dir, monkeypatch):
    configs = [TINY.replace(seed=s) for s in (1, 2)]
    with workers.prestarted(1) as pool:
        started = worker_processes(pool)
        assert len(started) == 1 and started[0].is_alive()

        def no_second_pool(size):
            raise AssertionError("run_many started a pool of its own")

        monkeypatch.setattr(workers, "start", no_second_pool)
        histories = training.run_many(configs, workers=2, cache=False, progress=False)
        assert started[0].is_alive()  # run_many leaves the block's workers to the block
    for process in started:
        process.join(timeout=10)
        assert not process.is_alive()
    assert workers.current() is None
    for config, history in zip(configs, histories):
        assert without_seconds(history) == without_seconds(training.train(config, progress=False))


def test_a_failure_inside_the_block_still_ends_the_workers(cache_dir):
    with pytest.raises(RuntimeError, match="inside"):
        with workers.prestarted(1) as pool:
            started = worker_processes(pool)
            raise RuntimeError("inside")
    for process in started:
        process.join(timeout=10)
        assert not process.is_alive()
    assert workers.current() is None


def test_no_workers_are_started_for_size_zero(cache_dir, monkeypatch):
    monkeypatch.setattr(workers, "start", lambda size: pytest.fail("a pool was started"))
    with workers.prestarted(0) as pool:
        assert pool is None and workers.current() is None


def test_start_refuses_an_empty_pool():
    with pytest.raises(ValueError, match="at least one worker"):
        workers.start(0)


def test_the_command_line_imports_no_torch_before_it_starts_its_workers():
    # what lets the workers' start-up overlap the command's own
    code = "import sys, bnlib.experiment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_command_line_preloads_what_run_many_s_own_workers_preload():
    from bnlib import experiment
    from bnlib.training import parallel

    assert experiment.WORKER_PRELOAD == parallel.PRELOAD
    assert parallel.PRELOAD[0].split(":")[0] == parallel._run_in_worker.__module__


def test_a_preloaded_function_runs_in_each_worker_as_it_starts():
    pool = workers.start(1, preload=["bnlib.training.parallel:warm_up"])
    cached = "__import__('bnlib.data').data._cached_npz.cache_info().currsize"
    try:  # the digits are in the worker's cache before its first task: both splits
        assert pool.executor.submit(eval, cached).result(timeout=120) == 2
    finally:
        workers.stop(pool)


def test_a_preload_that_fails_breaks_the_pool_rather_than_passing_unseen():
    from concurrent.futures.process import BrokenProcessPool

    pool = workers.start(1, preload=["bnlib.no_such_module"])
    try:
        with pytest.raises(BrokenProcessPool):
            pool.executor.submit(int, "1").result(timeout=120)
    finally:
        workers.stop(pool)
