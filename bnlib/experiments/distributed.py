"""Chapter 07's experiment: batch norm trained data parallel on several local processes.

Every run trains chapter 04's configuration of the three-convolution network (SGD with momentum,
global batch 32, the same subset, epochs and seed) with ``torch.nn.parallel.
DistributedDataParallel`` over k gloo processes (:mod:`bnlib.distributed`,
:mod:`bnlib.training.data_parallel`), or alone with gradient accumulation:

* **per-replica** batch norm (torch's ``BatchNorm2d``), each replica normalising its shard of
  32 / k images: a ghost batch of 32 / k; with DDP's buffer copy on (torch's default) and off;
* **synchronised** batch norm (:class:`bnlib.nn.SyncBatchNorm`): the whole batch of 32;
* **accumulation**: one process, k micro-batches of 32 / k per optimiser step (k updates of the
  running statistics per step), with the layers' momentum 0.1 or the per-update momentum
  :func:`bnlib.running.momentum_for_updates` (0.1, k).

For each run and replica: the test error with that replica's running statistics, and how far
those statistics lie from the population statistics of the final weights (exact, over the
training subset, :func:`bnlib.inference.recalibrate`); the test error with the population
statistics; the time per step. The sweep over k reuses chapter 04's ghost-batch runs
(:mod:`bnlib.experiments.variants`), which the tests prove equal to the data-parallel ones.

:func:`run` computes (or reads from the cache) everything;
:mod:`bnlib.experiments.distributed_verdicts` turns it into the numbers, words and tables the
chapter glues.
"""

from __future__ import annotations

import copy
import hashlib
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from bnlib import data as bnlib_data
from bnlib import settings
from bnlib.distributed import launch, rank, world_size
from bnlib.experiments import variants
from bnlib.running import momentum_for_updates
from bnlib.settings import full_or_quick

__all__ = ["BN_MOMENTUM", "PAPER_REPLICAS", "SETTINGS", "base_config", "communication",
           "measure_replica", "run", "small_all_reduce_seconds", "statistics_gap"]

#: torch's default momentum of the running statistics.
BN_MOMENTUM = 0.1

#: The full setting (the published numbers) and the short one (``BNBOOK_QUICK=1``, fewer
#: processes): chapter 04's setting of the same name supplies subset, epochs and sweep.
SETTINGS = {
    "full": {"replicas": (2, 4), "buffer_replicas": 2, "accumulation": 4, "variants": "full"},
    "short": {"replicas": (2,), "buffer_replicas": 2, "accumulation": 2, "variants": "short"},
}

#: Replica counts the cost table states on paper.
PAPER_REPLICAS = (2, 8, 64, 1024)


def base_config(setting: Mapping[str, Any]):
    """Chapter 04's configuration (seed 0) with torch's ``BatchNorm2d``: the model every replica
    trains. ``setting``: one of chapter 04's :data:`bnlib.experiments.variants.SETTINGS`."""
    configs = variants.batch_size_configs(sizes=(setting["sizes"][0],), renorm_sizes=(),
                                          real_sizes=(), seeds=(0,),
                                          train_subset=setting["train_subset"],
                                          epochs=setting["epochs"])
    return configs[0][2].replace(model_kwargs={"norm": "batch"})


# --------------------------------------------------------------------------- one replica


def _layer_statistics(model) -> list[dict]:
    from bnlib.inference import batch_norm_layers

    return [{"mean": layer.running_mean.tolist(), "var": layer.running_var.tolist()}
            for layer in batch_norm_layers(model)]


def statistics_gap(running: Sequence[Mapping], population: Sequence[Mapping]) -> dict:
    """How far running statistics lie from the population's, averaged over every channel of
    every layer: ``var``: mean of ``abs(running_var / population_var - 1)``; ``mean``: mean of
    ``abs(running_mean - population_mean) / sqrt(population_var)`` (in population standard
    deviations)."""
    var_gaps, mean_gaps = [], []
    for ours, pop in zip(running, population, strict=True):
        for rm, rv, pm, pv in zip(ours["mean"], ours["var"], pop["mean"], pop["var"],
                                  strict=True):
            var_gaps.append(abs(rv / pv - 1.0))
            mean_gaps.append(abs(rm - pm) / pv ** 0.5)
    return {"var": statistics.fmean(var_gaps), "mean": statistics.fmean(mean_gaps)}


def measure_replica(config_dict: dict, spec: dict) -> dict:
    """Train one run (``spec``: ``sync``, ``broadcast_buffers``, ``join``, ``accumulation``,
    ``bn_momentum``) in this process of the group and measure this replica: test error with
    its running statistics, the statistics themselves, and (rank 0) the population statistics
    of the final weights and the test error with them."""
    from bnlib.evaluation import evaluate
    from bnlib.inference import recalibrate
    from bnlib.training import RunConfig
    from bnlib.training.data_parallel import train_config_replica
    from bnlib.training.loop import _load_data

    config = RunConfig.from_dict(config_dict)
    options = {k: spec[k] for k in ("sync", "broadcast_buffers", "join", "accumulation",
                                    "bn_momentum") if k in spec}
    result = train_config_replica(config, **options)
    model = result["model"]
    out = {"rank": result["rank"], "steps": result["steps"],
           "test_error": 1.0 - result["test_accuracy"],
           "seconds_per_step": statistics.median(result["seconds_per_step"]),
           "running": _layer_statistics(model),
           "tracked": [int(m.num_batches_tracked) for m in _bn_layers(model)]}
    if rank() == 0:
        x_train, _, x_test, y_test = _load_data(config)
        calibrated = recalibrate(copy.deepcopy(model), torch.split(x_train, 250))
        out["population"] = _layer_statistics(calibrated)
        out["population_test_error"] = 1.0 - evaluate(calibrated, x_test, y_test)[1]
    return out


def _bn_layers(model):
    from bnlib.inference import batch_norm_layers

    return batch_norm_layers(model)


def interleaved_step_seconds(config_dict: dict, steps: int = 40) -> dict:
    """Median seconds of a DDP training step, three models stepping in turn on the same global
    batches (so a slow spell of a shared machine hits all three); run in every process.

    ``"sync"``: SyncBatchNorm over the group; ``"unsynced"``: the same SyncBatchNorm layers, each
    in a group of its own process only (``new_subgroups(group_size=1)``: the same computation
    without the batch norm collectives); ``"replica"``: torch's BatchNorm2d (its native kernel).
    """
    import torch.distributed as dist
    from torch import nn

    from bnlib.nn import SyncBatchNorm
    from bnlib.training import RunConfig
    from bnlib.training.data_parallel import shard, shard_loss
    from bnlib.training.loop import _load_data

    config = RunConfig.from_dict(config_dict)
    images, labels, _, _ = _load_data(config)
    images = images.contiguous(memory_format=torch.channels_last)
    alone, _ = dist.new_subgroups(group_size=1)
    models = {}
    for kind, group in (("replica", None), ("sync", None), ("unsynced", alone)):
        torch.manual_seed(config.seed)
        model = config.build_model().to(memory_format=torch.channels_last)
        if kind != "replica":
            model = SyncBatchNorm.convert_sync_batchnorm(model, process_group=group)
        models[kind] = nn.parallel.DistributedDataParallel(model)
    optimizers = {kind: torch.optim.SGD(m.parameters(), lr=config.lr) for kind, m in
                  models.items()}
    replicas, per_replica = world_size(), config.batch_size // world_size()
    times: dict[str, list[float]] = {kind: [] for kind in models}
    for step in range(steps + 5):
        batch = torch.arange(step * config.batch_size, (step + 1) * config.batch_size)
        batch = batch % len(images)
        mine = shard(batch, rank(), replicas, per_replica)
        for kind, model in models.items():
            began = time.perf_counter()
            optimizers[kind].zero_grad()
            shard_loss(model(images[mine]), labels[mine], len(batch), replicas).backward()
            optimizers[kind].step()
            if step >= 5:
                times[kind].append(time.perf_counter() - began)
    return {kind: statistics.median(values) for kind, values in times.items()}


def measure_runs(config_dict: dict, specs: Sequence[dict]) -> dict:
    """:func:`measure_replica` for each spec, one after the other, in one group, then the time
    of a small all-reduce (:func:`small_all_reduce_seconds`) and of the two kinds of training
    step (:func:`interleaved_step_seconds`): ``{"runs", "latency", "step"}``."""
    return {"runs": [measure_replica(config_dict, spec) for spec in specs],
            "latency": small_all_reduce_seconds(),
            "step": interleaved_step_seconds(config_dict)}


def small_all_reduce_seconds(floats: int = 33, repeats: int = 200) -> float:
    """Median seconds of an all-reduce of ``floats`` float32 values over the group (after 20
    warm-up calls); run in every process."""
    import torch.distributed as dist

    values = torch.ones(floats)
    times = []
    for i in range(repeats + 20):
        dist.barrier()
        began = time.perf_counter()
        dist.all_reduce(values)
        if i >= 20:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


# --------------------------------------------------------------------------- cost on paper


def communication(replicas: int, channels: Sequence[int], parameters: int,
                  bytes_per_value: int = 4) -> dict:
    """What one optimiser step sends, per process, for ``replicas`` processes, batch norm layers
    of ``channels`` and ``parameters`` trainable values (float32: ``bytes_per_value`` 4).

    SyncBatchNorm (:class:`bnlib.nn.SyncBatchNorm`): per layer one ``all_gather`` in the forward
    (each process receives every process's 2C + 1 values) and one ``all_reduce`` of 2C values
    in the backward, each on the critical path (the next layer waits for it). DDP: the gradient
    all-reduce (one bucket for this network), overlapped with the backward.

    Returns ``{"sync_collectives", "gathered_bytes", "reduced_bytes", "gradient_bytes",
    "ring_hops", "tree_hops"}``: the sequential latency steps of one all-reduce grow as
    ``2 (R - 1)`` in a ring and ``2 log2 R`` in a tree.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    return {
        "sync_collectives": 2 * len(channels),
        "gathered_bytes": replicas * sum(2 * c + 1 for c in channels) * bytes_per_value,
        "reduced_bytes": sum(2 * c for c in channels) * bytes_per_value,
        "gradient_bytes": parameters * bytes_per_value,
        "ring_hops": 2 * (replicas - 1),
        "tree_hops": 2 * max(0, (replicas - 1).bit_length()),
    }


# --------------------------------------------------------------------------- the runs


def _specs(setting: Mapping[str, Any]) -> dict[int, list[dict]]:
    """The data-parallel runs, grouped by replica count (one launch each)."""
    groups: dict[int, list[dict]] = {}
    for k in setting["replicas"]:
        groups.setdefault(k, []).extend([
            {"name": f"replica_{k}", "replicas": k, "sync": False},
            {"name": f"sync_{k}", "replicas": k, "sync": True}])
    k = setting["buffer_replicas"]
    groups.setdefault(k, []).extend([
        {"name": f"no_broadcast_{k}", "replicas": k, "sync": False, "broadcast_buffers": False},
        {"name": f"no_join_{k}", "replicas": k, "sync": False, "join": False}])
    return groups


def _accumulation_specs(setting: Mapping[str, Any]) -> list[dict]:
    k = setting["accumulation"]
    return [{"name": f"accumulate_{k}", "replicas": 1, "accumulation": k},
            {"name": f"accumulate_{k}_corrected", "replicas": 1, "accumulation": k,
             "bn_momentum": momentum_for_updates(BN_MOMENTUM, k)},
            {"name": "one_batch", "replicas": 1}]


def _cache_file(kind: str, payload: Any):
    from bnlib.training.code import code_version

    modules = ["__init__", "distributed", "experiments.distributed", "nn.sync_batchnorm",
               "nn.batchnorm", "functional", "training", "training.data_parallel", "inference",
               "evaluation", "models", "data", "running"]
    key = hashlib.sha256(json.dumps({"kind": kind, "payload": payload,
                                     "code": code_version(modules),
                                     "data": bnlib_data.ARRAY_SHA256,
                                     "torch": torch.__version__},
                                    sort_keys=True, default=str).encode()).hexdigest()
    return settings.cache_dir() / "distributed" / f"{kind}-{key[:24]}.json"


def _cached(kind: str, payload: Any, compute):
    """``compute()`` through a JSON file in the cache folder keyed on ``payload`` and the code."""
    from bnlib.training.files import atomic_write_text

    path = _cache_file(kind, payload)
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    atomic_write_text(path, json.dumps(value))
    return value


def _data_parallel(config, specs: Sequence[dict], replicas: int) -> list[dict]:
    payload = {"config": config.to_dict(), "specs": list(specs), "replicas": replicas}
    return _cached("ddp", payload, lambda: launch(
        measure_runs, replicas, (config.to_dict(), list(specs)), timeout=300))


def _alone(config, spec: dict) -> dict:
    return _cached("alone", {"config": config.to_dict(), "spec": spec},
                   lambda: measure_replica(config.to_dict(), spec))


def run(setting: str | None = None) -> dict:
    """Train (or read from the cache) every run of :data:`SETTINGS` ``[setting]`` (default: the
    full one, or the short one under ``BNBOOK_QUICK=1``), and read chapter 04's sweep.

    Returns ``{"setting_name", "setting", "runs": {name: [per-replica results]}, "sweep":
    chapter 04's rows, "latency": {processes: seconds}, "paper": {replicas: communication},
    "layers": channels, "parameters"}``.
    """
    name = setting or full_or_quick("full", "short")
    chosen = SETTINGS[name]
    ch04 = variants.SETTINGS[chosen["variants"]]
    config = base_config(ch04)
    runs: dict[str, list[dict]] = {}
    latency: dict[int, float] = {}
    step: dict[int, dict] = {}
    for replicas, specs in _specs(chosen).items():
        results = _data_parallel(config, specs, replicas)
        latency[replicas] = statistics.median(r["latency"] for r in results)
        step[replicas] = {kind: max(r["step"][kind] for r in results)
                          for kind in ("replica", "sync", "unsynced")}
        for index, spec in enumerate(specs):
            runs[spec["name"]] = [per_rank["runs"][index] for per_rank in results]
    for spec in _accumulation_specs(chosen):
        runs[spec["name"]] = [_alone(config, spec)]
    ghost_sizes = sorted({*ch04["sizes"], *(32 // k for k in chosen["replicas"])},
                         reverse=True)
    sweep = variants.batch_size_experiment(variants.batch_size_configs(
        sizes=ghost_sizes, renorm_sizes=(), real_sizes=(), seeds=ch04["seeds"],
        train_subset=ch04["train_subset"], epochs=ch04["epochs"]))
    model = config.build_model()
    channels = [m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    parameters = sum(p.numel() for p in model.parameters())
    paper = {k: communication(k, channels, parameters) for k in PAPER_REPLICAS}
    return {"setting_name": name, "setting": chosen, "ch04": ch04, "runs": runs,
            "sweep": sweep, "latency": latency, "step": step, "paper": paper,
            "layers": channels,
            "parameters": parameters, "config": config.to_dict()}
