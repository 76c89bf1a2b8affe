"""bnlib.training: optimizer steps against hand-written updates, determinism, probes, cache."""

import copy
import json
import os

import pytest
import torch
from torch import nn

from bnlib import training, workers
from bnlib.models import ARTICLE_TRACKED_WEIGHTS
from bnlib.settings import torch_threads
from bnlib.training import History, RunConfig, code, engine, files, store

TINY = RunConfig(
    model_kwargs={"batch_norm": True}, epochs=2, batch_size=32, train_subset=96, test_subset=100,
    track_weights=ARTICLE_TRACKED_WEIGHTS,
)


def without_seconds(history: History) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history.rows()]


class Recorder:
    """A probe that keeps the model before training and after each step, with each step's batch."""

    name = "recorder"

    def __init__(self, switch_to_eval: bool = False):
        self.switch_to_eval = switch_to_eval
        self.calls = []

    def key(self) -> dict:
        return {"switch_to_eval": self.switch_to_eval}

    def start(self, model):
        self.calls.append(("start", model.training))
        self.initial = copy.deepcopy(model)
        self.snapshots = []

    def after_step(self, step, model, inputs, targets):
        self.calls.append((step, model.training))
        self.snapshots.append((copy.deepcopy(model), inputs.clone(), targets.clone()))
        if self.switch_to_eval:
            model.eval()

    def result(self) -> dict:
        return {"steps": [c[0] for c in self.calls[1:]]}


def test_probes_are_called_once_per_step_and_train_mode_is_restored():
    probe = Recorder(switch_to_eval=True)
    history = training.train(TINY, probes=[probe], progress=False)
    assert probe.calls[0] == ("start", True)
    assert probe.calls[1:] == [(step, True) for step in range(1, 7)]  # 96/32 = 3 steps x 2 epochs
    assert history.probes == {"recorder": {"steps": [1, 2, 3, 4, 5, 6]}}


@pytest.fixture
def one_thread():
    """The reference computations below use one thread, like the runs (same rounding)."""
    with torch_threads(1):
        yield


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.0), ("momentum", 0.9)])
def test_steps_match_hand_written_sgd(optimizer, momentum, one_thread):
    """Each step is w <- w - lr * v with v = momentum * v + grad of the batch's mean cross-entropy
    (each step checked from the model the run had before it, so rounding does not compound)."""
    config = TINY.replace(optimizer=optimizer, momentum=momentum, lr=0.05, epochs=1)
    probe = Recorder()
    training.train(config, probes=[probe], progress=False)
    before = probe.initial
    velocity = [torch.zeros_like(p) for p in before.parameters()]
    for after, inputs, targets in probe.snapshots:
        model = copy.deepcopy(before)
        nn.functional.cross_entropy(model(inputs), targets).backward()
        with torch.no_grad():
            for p, v, q in zip(model.parameters(), velocity, after.parameters()):
                v.mul_(momentum).add_(p.grad)
                torch.testing.assert_close(p - config.lr * v, q)
        for name in ("running_mean", "running_var"):  # BN statistics updated by the same batches
            torch.testing.assert_close(getattr(model[1], name), getattr(after[1], name))
        before = after


def test_history_contents_and_json_round_trip(tmp_path):
    history = training.train(TINY, progress=False)
    assert [r.epoch for r in history.epochs] == [1, 2]
    for record in history.epochs:
        assert 0 <= record.train_accuracy <= 1 and 0 <= record.test_accuracy <= 1
        assert record.train_loss > 0 and record.test_loss > 0 and record.seconds > 0
    path = history.weight_path()
    assert len(path) == 3 and all(len(w) == 2 for w in path)
    assert history.initial["test_accuracy"] <= 1
    # epoch 0 weights are the initial ones: re-create the seeded model independently
    torch.manual_seed(TINY.seed)
    fresh = TINY.build_model()
    weight = fresh[6].weight.detach()
    assert path[0] == [float(weight[3, 4, 1, 0]), float(weight[3, 8, 1, 0])]
    history.save(tmp_path / "h.json")
    loaded = History.load(tmp_path / "h.json")
    assert loaded.rows() == history.rows() and loaded.config == history.config
    assert hash(loaded.config) == hash(TINY)
    assert RunConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY


def test_same_seed_same_history_other_seed_other_history():
    first = training.train(TINY, progress=False)
    again = training.train(TINY, progress=False)
    other = training.train(TINY.replace(seed=TINY.seed + 1), progress=False)
    assert without_seconds(first) == without_seconds(again)
    assert first.initial == again.initial
    assert without_seconds(first) != without_seconds(other)


def test_eval_every_steps():
    history = training.train(TINY.replace(eval_every_steps=2), progress=False)
    assert [e["step"] for e in history.step_evals] == [2, 4, 6]
    assert history.step_evals[-1]["test_accuracy"] == history.final.test_accuracy


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="optimizer"):
        RunConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="momentum"):
        RunConfig(optimizer="sgd", momentum=0.9)
    with pytest.raises(ValueError, match="batch_size"):
        RunConfig(batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        RunConfig(epochs=-1)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_cache_hit_miss_on_config_and_code_change(cache_dir, monkeypatch):
    config = TINY.replace(epochs=1)
    first = training.run(config, progress=False)
    assert not first.cached
    assert training.cache_path(config).is_file()
    hit = training.run(config, progress=False)
    assert hit.cached and hit.rows() == first.rows()
    assert not training.run(config.replace(lr=0.002), progress=False).cached
    assert not training.run(config, probes=[Recorder()], progress=False).cached  # probe key counts
    monkeypatch.setattr(code, "code_version", lambda *modules: "edited bnlib")
    assert not training.run(config, progress=False).cached


def test_the_thread_count_has_its_own_cache_entry(cache_dir):
    # two threads change the last bits of the numbers, so they must not share one entry
    config = TINY.replace(epochs=1)
    assert training.cache_path(config, threads=1) != training.cache_path(config, threads=2)
    one = training.run(config, progress=False, threads=1)
    two = training.run(config, progress=False, threads=2)
    assert not two.cached
    assert training.run(config, progress=False, threads=1).rows() == one.rows()


def write_package(root, files: dict) -> None:
    """A fake bnlib under ``root``: ``{"training/loop.py": "x = 1", ...}``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


FAKE = {
    "__init__.py": "",
    "models.py": "from bnlib.nn import batchnorm\n",
    "nn/__init__.py": '"""Layers."""\nfrom .batchnorm import BatchNorm2d\n',
    "nn/batchnorm.py": '"""Batch norm."""\nfrom . import functional as F\nclass BatchNorm2d:\n    pass\n',
    "nn/functional.py": '"""The math."""\ndef batch_norm(x):\n    return x\n',
    "nn/ghost.py": "x = 1\n",
    "training/__init__.py": "from bnlib.training.loop import train\n",
    "training/loop.py": "from ..settings import torch_threads\n",
    "settings.py": "x = 1\n",
    "probes/__init__.py": "from .base import Probe\n",
    "probes/base.py": "x = 1\n",
    "experiments/ics.py": "from bnlib.probes.base import x\n",
}


def test_imports_are_followed_through_packages_and_relative_imports(tmp_path):
    write_package(tmp_path, FAKE)
    found = code.module_imports("nn", FAKE["nn/__init__.py"], tmp_path)
    assert found == {"nn.batchnorm"}
    assert code.module_imports("nn.batchnorm", FAKE["nn/batchnorm.py"], tmp_path) == {"nn", "nn.functional"}
    assert code.module_imports("training.loop", FAKE["training/loop.py"], tmp_path) == {"settings"}
    assert code.module_imports("experiments.ics", FAKE["experiments/ics.py"], tmp_path) == {"probes.base"}
    assert code.module_path("nn", tmp_path) == tmp_path / "nn" / "__init__.py"
    assert code.module_path("nn.absent", tmp_path) is None


def test_code_version_hashes_code_not_documentation(tmp_path):
    write_package(tmp_path, FAKE)
    modules = ("models", "nn", "nn.batchnorm", "nn.functional")
    before = code.code_version(modules, tmp_path)
    write_package(tmp_path, {"nn/functional.py": '"""The math, documented anew."""\n# a comment\n'
                                                 'def batch_norm(x):\n    """Identity."""\n    return x\n'})
    assert code.code_version(modules, tmp_path) == before
    write_package(tmp_path, {"nn/functional.py": "def batch_norm(x):\n    return 2 * x\n"})
    assert code.code_version(modules, tmp_path) != before
    assert code.code_version(("models",), tmp_path) != code.code_version(modules, tmp_path)


def test_a_change_to_executed_code_in_a_subpackage_changes_the_cache_key(tmp_path, monkeypatch):
    """The run's layer lives in a subpackage module; the math it calls in a sibling module
    reached by a relative import: editing either re-runs, editing an unrelated module or a
    docstring does not."""
    write_package(tmp_path, FAKE)
    monkeypatch.setattr(code, "PACKAGE_DIR", tmp_path)
    layer = type("BatchNorm2d", (nn.Module,), {"__module__": "bnlib.nn.batchnorm"})
    model = nn.Sequential(nn.Conv2d(1, 2, 3), layer())
    modules = code.run_modules(model)
    assert {"nn", "nn.batchnorm", "nn.functional", "training", "training.loop", "settings",
            "models", "__init__"} <= set(modules)
    assert "nn.ghost" not in modules and "experiments.ics" not in modules
    before = code.code_version(modules)
    write_package(tmp_path, {"nn/ghost.py": "x = 2\n", "nn/batchnorm.py": FAKE["nn/batchnorm.py"]
                             .replace('"""Batch norm."""', '"""Batch norm, better told."""')})
    assert code.code_version(code.run_modules(model)) == before
    write_package(tmp_path, {"nn/functional.py": "def batch_norm(x):\n    return x + 0\n"})
    assert code.code_version(code.run_modules(model)) != before
    write_package(tmp_path, {"nn/functional.py": FAKE["nn/functional.py"], "training/loop.py": "y = 1\n"})
    assert code.code_version(code.run_modules(model)) != before


def test_run_modules_follow_the_layers_and_probes():
    """On the real package (whatever its layout): the engine's own modules always, the module of
    each bnlib layer in the model, and nothing for a probe defined outside bnlib."""
    plain = training.run_modules(TINY)
    assert set(training.CORE_MODULES) <= set(plain)
    assert {"training.loop", "training.store", "training.config"} <= set(plain)
    for norm in ("noisy_batch", "bnlib_batch"):
        config = TINY.replace(model_kwargs={"norm": norm})
        layers = {type(m).__module__.removeprefix("bnlib.") for m in config.build_model().modules()
                  if type(m).__module__.startswith("bnlib.")}
        assert layers and layers <= set(training.run_modules(config))
    assert set(training.run_modules(TINY, probes=[Recorder()])) == set(plain)


def test_interrupted_write_leaves_no_file(cache_dir, monkeypatch):
    config = TINY.replace(epochs=1)

    def power_cut(fd):
        raise OSError("simulated power cut during the write")

    monkeypatch.setattr(files.os, "fsync", power_cut)
    with pytest.raises(OSError, match="power cut"):
        training.run(config, progress=False)
    assert [p for p in cache_dir.rglob("*") if p.is_file()] == []


def test_run_many_refuses_a_bad_worker_count(cache_dir):
    with pytest.raises(ValueError, match="workers must be None or a positive integer"):
        training.run_many([TINY], workers=0, progress=False)


def test_run_many_takes_its_worker_count_from_the_environment(cache_dir, monkeypatch):
    # one worker: the runs go one after another in this process, with no process pool
    monkeypatch.setenv("BNLIB_WORKERS", "1")
    def no_pool(size):
        raise AssertionError(f"a pool of {size} worker(s) was started")

    monkeypatch.setattr(workers, "start", no_pool)
    histories = training.run_many([TINY.replace(seed=s) for s in (1, 2)], progress=False)
    assert [h.config.seed for h in histories] == [1, 2]


def test_run_many_matches_run_and_fills_the_cache(cache_dir):
    configs = [TINY.replace(epochs=1, seed=s) for s in (1, 2)]
    version = training.code_version(training.run_modules(configs[0]))
    parallel = training.run_many(configs, workers=2, progress=False)
    assert [h.config for h in parallel] == configs
    for config, history in zip(configs, parallel):
        alone = training.train(config, progress=False)  # in this process, bit-identical
        assert without_seconds(alone) == without_seconds(history)
    if training.code_version(training.run_modules(configs[0])) != version:
        pytest.skip("bnlib's source was edited during the test, so the cache rightly missed")
    for config in configs:
        assert training.run(config, progress=False).cached
    assert all(h.cached for h in training.run_many(configs, progress=False))


def test_the_engine_is_eager_unless_asked_and_for_short_runs_unsafe_layers_and_probes(monkeypatch):
    long = TINY.replace(epochs=100, train_subset=None)
    monkeypatch.setattr(engine, "compiler_available", lambda: True)
    monkeypatch.delenv(engine.COMPILE_ENV, raising=False)
    assert engine.choose_engine(long) == "eager"
    monkeypatch.setenv(engine.COMPILE_ENV, "1")
    assert engine.choose_engine(TINY) == "eager"  # 192 images: compiling would not pay
    assert engine.choose_engine(long) == "inductor"
    assert engine.choose_engine(long, [Recorder()]) == "eager"  # may hook the forward
    safe = Recorder()
    safe.compile_safe = True
    assert engine.choose_engine(long, [safe]) == "inductor"
    noisy = long.replace(model_kwargs={"norm": "noisy_batch"})
    assert engine.choose_engine(noisy) == "eager"
    monkeypatch.setattr(engine, "compiler_available", lambda: False)
    assert engine.choose_engine(long) == "eager"
    assert training.cache_key(long) != training.cache_key(long.replace(seed=1))


def test_the_engine_choice_is_part_of_the_cache_key(monkeypatch):
    long = TINY.replace(epochs=100, train_subset=None)
    monkeypatch.setenv(engine.COMPILE_ENV, "1")
    monkeypatch.setattr(engine, "compiler_available", lambda: False)
    eager_key = training.cache_key(long)
    monkeypatch.setattr(engine, "compiler_available", lambda: True)
    assert training.cache_key(long) != eager_key


@pytest.mark.skipif(not engine.compiler_available(), reason="no C++ compiler for inductor")
def test_the_compiled_step_computes_the_eager_step(monkeypatch, tmp_path):
    """One training step's loss and gradients, compiled and eager, in float64 (where the order
    of the sums does not show at torch's default tolerance)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = TINY.build_model().double().to(memory_format=torch.channels_last)
    x = torch.rand(32, 1, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    results = []
    for forward in (model, engine.compiled_forward(model)):
        loss = nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
        model.zero_grad(set_to_none=True)
    for compiled, eager in zip(*results[::-1]):
        torch.testing.assert_close(compiled, eager)


@pytest.mark.skipif(not engine.compiler_available(), reason="no C++ compiler for inductor")
def test_a_compiled_run_compiles_once(monkeypatch, tmp_path):
    """The last, smaller batch of each epoch and the evaluations run eagerly: the second epoch
    compiles nothing new, and the run before its first step is the eager run's."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    config = TINY.replace(train_subset=80)  # batches of 32, 32 and 16
    eager = training.train(config, progress=False)
    monkeypatch.setattr(engine, "MIN_COMPILED_IMAGES", 0)
    monkeypatch.setenv(engine.COMPILE_ENV, "1")
    import torch._dynamo

    torch._dynamo.reset()
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    compiled = training.train(config, progress=False)
    assert (eager.engine, compiled.engine) == ("eager", "inductor")
    assert compiled.initial == eager.initial


def test_the_ledger_counts_trained_and_cached_runs(cache_dir):
    config = TINY.replace(epochs=1)
    training.run(config, progress=False)
    size = (cache_dir / store.LEDGER).stat().st_size
    training.run(config, progress=False)
    training.run(config.replace(seed=3), progress=False)
    assert store.outcome_counts() == {"trained": 2, "cached": 1}
    assert store.outcome_counts(since=size) == {"trained": 1, "cached": 1}
    assert store.outcome_counts(cache_dir / "elsewhere") == {}
