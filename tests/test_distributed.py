"""bnlib.distributed's launcher (results, errors, no process left, loopback only, torchrun's
code path) and data-parallel training (bnlib.training.data_parallel) against single-process
references: per-replica batch norm is ghost batch norm, SyncBatchNorm is batch norm over the
global batch, and what DDP's buffer broadcast does to the running statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from torch import nn

import _distributed_workers as workers
from bnlib import nn as bnlib_nn
from bnlib.distributed import WorkerError, launch, loopback_store
from bnlib.training.data_parallel import shard, shard_loss

TESTS = Path(__file__).parent


def no_children_left() -> bool:
    """No process started by this one is left, except multiprocessing's resource tracker (one
    per parent, which ends with it)."""
    return all("resource_tracker" in " ".join(child.cmdline())
               for child in psutil.Process().children(recursive=True))


# --------------------------------------------------------------------------- the launcher


def test_results_in_rank_order_with_torchruns_variables():
    results = launch(workers.environment_and_sum, 3)
    assert [r["RANK"] for r in results] == ["0", "1", "2"]
    assert [r["LOCAL_RANK"] for r in results] == ["0", "1", "2"]
    assert {r["WORLD_SIZE"] for r in results} == {"3"}
    assert all(r["sum"] == 6.0 and r["world"] == 3 for r in results)
    assert no_children_left()
    assert not any(psutil.pid_exists(r["pid"]) for r in results)


def test_a_failing_worker_ends_every_process_and_raises_its_error():
    started = time.monotonic()
    with pytest.raises(WorkerError) as caught:
        launch(workers.fail_on_rank_one, 3, timeout=120)
    assert caught.value.rank == 1
    assert isinstance(caught.value.__cause__, ValueError)
    assert "rank 1 cannot go on" in str(caught.value)
    # the others were ended, not left to wait for the collective's 120 s timeout
    assert time.monotonic() - started < 100
    assert no_children_left()


def test_no_process_of_the_group_listens_beyond_loopback():
    found = launch(workers.sockets_while_up, 2, (os.getpid(),))
    sockets = {entry for per_rank in found for entry in per_rank}
    pids = {pid for _, _, pid in sockets}
    assert os.getpid() in pids and len(pids) == 3  # the store and both workers' gloo
    assert {address for address, _, _ in sockets} == {"127.0.0.1"}


def test_the_training_code_runs_as_under_torchrun(tmp_path):
    """Two processes started with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, a store
    served as torchrun's agent serves it) run the module's command line."""
    out = tmp_path / "result.json"
    with loopback_store(2) as port:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bnlib.training.data_parallel", "--sync",
                 "--train-subset", "64", "--epochs", "1", "--out", str(out)],
                env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r),
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                     "TORCHELASTIC_USE_AGENT_STORE": "True"},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for r in range(2)]
        try:
            outputs = [p.communicate(timeout=240) for p in processes]
        finally:
            for p in processes:
                p.kill()
    assert [p.returncode for p in processes] == [0, 0], outputs
    result = json.loads(out.read_text())
    assert result["replicas"] == 2 and result["steps"] == 2
    assert 0.0 <= result["test_accuracy"] <= 1.0


# --------------------------------------------------------------------------- the shards


def test_contiguous_shards_and_the_loss_scale():
    batch = torch.arange(10)
    assert [shard(batch, r, 3, 4).tolist() for r in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                 [8, 9]]
    assert shard(batch, 2, 3, 5).numel() == 0
    logits, targets = torch.randn(10, 3), torch.randint(0, 3, (10,))
    mean = nn.functional.cross_entropy(logits, targets)
    parts = [shard_loss(logits[s], targets[s], 10, 3) for s in (slice(0, 4), slice(4, 8),
                                                                  slice(8, 10), slice(10, 10))]
    torch.testing.assert_close(sum(parts[:3]) / 3, mean)
    assert parts[3] == 0  # an empty shard adds nothing (its mean loss would be NaN)


# --------------------------------------------------------------------------- data parallel

#: 64 samples in global batches of 8: 8 steps an epoch, 25 epochs: 200 optimiser steps.
EVEN = {"n": 64, "batch_size": 8, "epochs": 25, "lr": 0.05}
#: 62 samples: the last batch of each epoch has 6 (shards 4 and 2, or 2, 2, 2 and 0).
UNEVEN = dict(EVEN, n=62)


@pytest.fixture(scope="module")
def two_replicas():
    runs = [dict(EVEN, norm="batch"), dict(EVEN, norm="batch", broadcast_buffers=False),
            dict(EVEN, norm="batch", join=False),
            dict(EVEN, norm="batch", join=False, accumulation=2),
            dict(EVEN, norm="sync"), dict(UNEVEN, norm="batch"), dict(UNEVEN, norm="sync")]
    return runs, launch(workers.ddp_runs, 2, (runs,), timeout=120)


@pytest.fixture(scope="module")
def four_replicas():
    runs = [dict(UNEVEN, norm="batch"), dict(UNEVEN, norm="sync"),
            dict(EVEN, norm="batch", broadcast_buffers=False), dict(EVEN, norm="batch")]
    return runs, launch(workers.ddp_runs, 4, (runs,), timeout=120)


def ghost_reference(run: dict, replicas: int):
    """The single-process run with ghost batch norm over groups of the shard size (of the
    micro-batch, with accumulation)."""
    per_replica = run["batch_size"] // replicas // run.get("accumulation", 1)
    model = workers.tiny_net(norm=lambda c: bnlib_nn.GhostBatchNorm2d(c, per_replica))
    images, labels = workers.tiny_data(run["n"])
    return workers.reference_train(model, images, labels, run["batch_size"], run["epochs"],
                                   run["lr"], 2)


def full_batch_reference(run: dict):
    """The single-process run with torch's BatchNorm2d over the whole global batch."""
    model = workers.tiny_net()
    images, labels = workers.tiny_data(run["n"])
    return workers.reference_train(model, images, labels, run["batch_size"], run["epochs"],
                                   run["lr"], 2)


def parameters(state: dict) -> dict:
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def assert_same_weights(states, reference: nn.Module) -> None:
    want = parameters(reference.state_dict())
    for state in states:
        got = parameters(state)
        assert list(got) == list(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=1e-9, rtol=0)


@pytest.mark.parametrize("fixture,replicas", [("two_replicas", 2), ("four_replicas", 4)])
def test_per_replica_batch_norm_is_ghost_batch_norm(request, fixture, replicas):
    runs, results = request.getfixturevalue(fixture)
    for index, run in enumerate(runs):
        if run["norm"] == "batch":
            states = [r[index]["state"] for r in results]
            assert_same_weights(states, ghost_reference(run, replicas))
            assert results[0][index]["steps"] == run["epochs"] * -(-run["n"] // 8)


@pytest.mark.parametrize("fixture", ["two_replicas", "four_replicas"])
def test_sync_batch_norm_is_batch_norm_over_the_global_batch(request, fixture):
    runs, results = request.getfixturevalue(fixture)
    for index, run in enumerate(runs):
        if run["norm"] == "sync":
            reference = full_batch_reference(run)
            assert_same_weights([r[index]["state"] for r in results], reference)
            for name, value in reference.state_dict().items():  # buffers on every rank
                for r in results:
                    torch.testing.assert_close(r[index]["state"][name], value, atol=1e-9,
                                               rtol=0)


def _shard_statistics(run: dict, replicas: int):
    """Per step, per layer, per ghost group (replica r's micro-batch j is group r * a + j):
    the (mean, unbiased variance) of its input to each batch norm layer, from the ghost
    reference (which the weights equal)."""
    per_replica = run["batch_size"] // replicas // run.get("accumulation", 1)
    seen = []
    model_layers = []
    model = workers.tiny_net(norm=lambda c: bnlib_nn.GhostBatchNorm2d(c, per_replica))
    for layer in model:
        if isinstance(layer, bnlib_nn.GhostBatchNorm2d):
            model_layers.append(layer)
            layer.register_forward_pre_hook(lambda mod, args: seen.append(
                [(g.mean((0, 2, 3)), g.var((0, 2, 3))) for g in torch.split(
                    args[0].detach(), per_replica)]))
    images, labels = workers.tiny_data(run["n"])
    workers.reference_train(model, images, labels, run["batch_size"], run["epochs"], run["lr"], 2)
    layers = len(model_layers)
    return [seen[i : i + layers] for i in range(0, len(seen), layers)]


def _running(values, momentum=0.1, start=0.0):
    current = torch.full_like(values[0], start)
    for v in values:
        current = (1 - momentum) * current + momentum * v
    return current


@pytest.mark.parametrize("fixture,replicas", [("two_replicas", 2), ("four_replicas", 4)])
def test_running_statistics_under_ddps_buffer_broadcast(request, fixture, replicas):
    runs, results = request.getfixturevalue(fixture)
    for index, run in enumerate(runs):
        if run["norm"] != "batch" or run["n"] % run["batch_size"]:
            continue
        stats = _shard_statistics(run, replicas)  # [step][layer][group] -> (mean, var)
        names = ["1", "4"]
        for layer, name in enumerate(names):
            means = [[s[layer][r][0] for s in stats] for r in range(replicas)]
            varis = [[s[layer][r][1] for s in stats] for r in range(replicas)]
            got = [r[index]["state"] for r in results]
            if run.get("accumulation", 1) > 1:
                # no_sync() before the last micro-batch: a forward under no_sync() leaves DDP's
                # require_forward_param_sync false, so only the first micro-batch of a step
                # starts from rank 0's buffers; each rank then updates once per micro-batch
                a = run["accumulation"]
                own = [[s[layer][g] for s in stats for g in range(r * a, (r + 1) * a)]
                       for r in range(replicas)]
                rank0_mean = _running([m for m, _ in own[0]])
                torch.testing.assert_close(got[0][f"{name}.running_mean"], rank0_mean)
                before_mean = _running([m for m, _ in own[0][:-a]])
                for r in range(1, replicas):
                    expected = before_mean
                    for m, _ in own[r][-a:]:
                        expected = 0.9 * expected + 0.1 * m
                    torch.testing.assert_close(got[r][f"{name}.running_mean"], expected)
            elif run.get("broadcast_buffers", True) and run.get("join", True):
                # under join() DDP copies the buffers of the highest rank still training
                # (torch's _find_common_rank, a MAX all-reduce), here the last one, and at the
                # end of join() every rank gets the last rank's: the average of its own shards
                last = replicas - 1
                for r in range(replicas):
                    torch.testing.assert_close(got[r][f"{name}.running_mean"],
                                               _running(means[last]))
                    torch.testing.assert_close(got[r][f"{name}.running_var"],
                                               _running(varis[last], start=1.0))
            elif run.get("broadcast_buffers", True):
                # without join(): rank 0's buffers before every forward, nothing at the end;
                # rank 0 ends with the average of its own shards only
                torch.testing.assert_close(got[0][f"{name}.running_mean"], _running(means[0]))
                torch.testing.assert_close(got[0][f"{name}.running_var"],
                                           _running(varis[0], start=1.0))
                # every other rank: rank 0's value before the last step, plus one update from
                # its own last shard
                before_mean = _running(means[0][:-1])
                before_var = _running(varis[0][:-1], start=1.0)
                for r in range(1, replicas):
                    torch.testing.assert_close(got[r][f"{name}.running_mean"],
                                               0.9 * before_mean + 0.1 * means[r][-1])
                    torch.testing.assert_close(got[r][f"{name}.running_var"],
                                               0.9 * before_var + 0.1 * varis[r][-1])
            else:
                # each rank its own shards; their mean is ghost batch norm's running statistics
                for r in range(replicas):
                    torch.testing.assert_close(got[r][f"{name}.running_mean"],
                                               _running(means[r]))
                mean_of_ranks = torch.stack([g[f"{name}.running_var"] for g in got]).mean(0)
                ghost = ghost_reference(run, replicas)
                torch.testing.assert_close(mean_of_ranks, ghost.state_dict()[f"{name}.running_var"])


@pytest.mark.parametrize("norm", ["batch", "sync"])
def test_uneven_numbers_of_steps_end_every_replica_without_waiting(norm):
    results = launch(workers.uneven_steps, 2, (norm,), timeout=60)
    assert [r["steps"] for r in results] == [3, 3]
    assert all(r["stopped_early"] for r in results)
