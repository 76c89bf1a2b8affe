"""bnlib.training: optimizer steps against hand-written updates, determinism, probes, cache."""

import copy
import json
import os

import pytest
import torch
from torch import nn

from bnlib import training
from bnlib.models import ARTICLE_TRACKED_WEIGHTS
from bnlib.training import History, RunConfig

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
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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
    monkeypatch.setattr(training, "code_version", lambda *modules: "edited bnlib")
    assert not training.run(config, progress=False).cached


def test_the_thread_count_has_its_own_cache_entry(cache_dir):
    # two threads change the last bits of the numbers, so they must not share one entry
    config = TINY.replace(epochs=1)
    assert training.cache_path(config, threads=1) != training.cache_path(config, threads=2)
    one = training.run(config, progress=False, threads=1)
    two = training.run(config, progress=False, threads=2)
    assert not two.cached
    assert training.run(config, progress=False, threads=1).rows() == one.rows()


def test_code_version_hashes_code_not_documentation(tmp_path, monkeypatch):
    fake_package = tmp_path / "bnlib"
    fake_package.mkdir()
    for module in training.CODE_MODULES:
        (fake_package / f"{module}.py").write_text(f'"""{module}."""\nx = 1\n')
    monkeypatch.setattr(training, "__file__", str(fake_package / "training.py"))
    before = training.code_version()
    (fake_package / "nn.py").write_text('"""nn, documented anew."""\n# a comment\nx = 1\n')
    assert training.code_version() == before
    (fake_package / "nn.py").write_text('"""nn."""\nx = 2\n')
    assert training.code_version() != before
    assert training.code_version(("training",)) != training.code_version(("training", "nn"))


def test_run_modules_follow_the_layers_and_probes():
    plain = training.run_modules(TINY.replace(model="three_conv_net", model_kwargs={"batch_norm": True}))
    assert set(training.CORE_MODULES) <= set(plain) and "shift" not in plain and "nn" not in plain
    noisy = training.run_modules(
        TINY.replace(model="three_conv_net", model_kwargs={"norm": "noisy_batch"})
    )
    assert "nn" in noisy  # NoisyBatchNorm moved to bnlib.nn
    ours = training.run_modules(TINY.replace(model="three_conv_net", model_kwargs={"norm": "bnlib_batch"}))
    assert "nn" in ours and "shift" not in ours


def test_interrupted_write_leaves_no_file(cache_dir, monkeypatch):
    config = TINY.replace(epochs=1)

    def power_cut(fd):
        raise OSError("simulated power cut during the write")

    monkeypatch.setattr(training.os, "fsync", power_cut)
    with pytest.raises(OSError, match="power cut"):
        training.run(config, progress=False)
    assert [p for p in cache_dir.rglob("*") if p.is_file()] == []


def test_run_many_refuses_a_bad_worker_count(cache_dir):
    with pytest.raises(ValueError, match="workers must be None or a positive integer"):
        training.run_many([TINY], workers=0, progress=False)


def test_run_many_takes_its_worker_count_from_the_environment(cache_dir, monkeypatch):
    # one worker: the runs go one after another in this process, with no process pool
    monkeypatch.setenv("BNLIB_WORKERS", "1")
    monkeypatch.setattr(training, "ProcessPoolExecutor", None)  # would fail if a pool were made
    histories = training.run_many([TINY.replace(seed=s) for s in (1, 2)], progress=False)
    assert [h.config.seed for h in histories] == [1, 2]


def test_run_many_matches_run_and_fills_the_cache(cache_dir):
    configs = [TINY.replace(epochs=1, seed=s) for s in (1, 2)]
    version = training.code_version()
    parallel = training.run_many(configs, workers=2, progress=False)
    assert [h.config for h in parallel] == configs
    for config, history in zip(configs, parallel):
        alone = training.train(config, progress=False)  # in this process, bit-identical
        assert without_seconds(alone) == without_seconds(history)
    if training.code_version() != version:
        pytest.skip("bnlib's source was edited during the test, so the cache rightly missed")
    for config in configs:
        assert training.run(config, progress=False).cached
    assert all(h.cached for h in training.run_many(configs, progress=False))
