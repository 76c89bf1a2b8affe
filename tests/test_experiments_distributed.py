"""Chapter 07's experiment module: the cost on paper against counted collectives, the gap to the
population statistics, the sweep table, every branch of the verdicts, and findings() on
synthetic results."""

from __future__ import annotations

import math

import pytest

import _distributed_workers as workers
from bnlib.distributed import launch
from bnlib.experiments import distributed as experiment
from bnlib.experiments import distributed_verdicts as verdicts
from bnlib.experiments import variants
from bnlib.running import momentum_for_updates
from bnlib.seeds import summarize


def test_communication_counts_what_sync_batch_norm_calls():
    steps = 2
    calls = launch(workers.count_sync_collectives, 2, (steps,))
    layers = [workers.CHANNELS, workers.CHANNELS]
    cost = experiment.communication(2, layers, parameters=0)
    for per_rank in calls:
        assert len(per_rank) == steps * cost["sync_collectives"]
        gathered = sum(n for name, n in per_rank if name == "all_gather") * 2 * 4 / steps
        reduced = sum(n for name, n in per_rank if name == "all_reduce") * 4 / steps
        assert gathered == cost["gathered_bytes"]
        assert reduced == cost["reduced_bytes"]


def test_communication_on_paper():
    cost = experiment.communication(1024, [16, 16, 16], parameters=1000)
    assert cost["sync_collectives"] == 6
    assert cost["gathered_bytes"] == 1024 * 3 * 33 * 4
    assert cost["reduced_bytes"] == 3 * 32 * 4
    assert cost["gradient_bytes"] == 4000
    assert cost["ring_hops"] == 2046 and cost["tree_hops"] == 20
    assert experiment.communication(1, [4], 0)["tree_hops"] == 0
    with pytest.raises(ValueError):
        experiment.communication(0, [4], 0)


def test_statistics_gap_by_hand():
    running = [{"mean": [1.0, 0.0], "var": [2.0, 1.0]}]
    population = [{"mean": [0.0, 0.0], "var": [4.0, 1.0]}]
    gap = experiment.statistics_gap(running, population)
    assert gap["var"] == pytest.approx((0.5 + 0.0) / 2)
    assert gap["mean"] == pytest.approx((0.5 + 0.0) / 2)


def test_agreement_phrase_branches():
    one = summarize([0.05])
    two = summarize([0.05, 0.07])  # sd 0.0141
    assert "one seed" in verdicts.agreement_phrase(0.001, one)
    assert "within the spread" in verdicts.agreement_phrase(-0.01, two)
    assert "more than the spread" in verdicts.agreement_phrase(0.02, two)
    assert verdicts.agreement_phrase(0.02, two).startswith("differ by 2.00 percentage")


def test_ranks_and_closer_phrases():
    assert verdicts.ranks_phrase(0.0) == "agree exactly"
    assert verdicts.ranks_phrase(0.031).startswith("disagree, by up to 3.1%")
    assert verdicts.closer_phrase(0.1, 0.2, "X").startswith("closer")
    assert verdicts.closer_phrase(0.3, 0.2, "X").startswith("farther")
    assert verdicts.closer_phrase(0.2, 0.2, "X").startswith("as close")


def _replica(error, var, population=None):
    out = {"test_error": error, "steps": 10, "seconds_per_step": 0.02, "tracked": [10, 10],
           "running": [{"mean": [0.0], "var": [var]}, {"mean": [1.0], "var": [var]}]}
    if population is not None:
        out["population"] = [{"mean": [0.0], "var": [population]},
                             {"mean": [1.0], "var": [population]}]
        out["population_test_error"] = error - 0.001
    return out


def synthetic_results() -> dict:
    """Results shaped as run()'s, for the short setting, with made-up numbers."""
    setting = experiment.SETTINGS["short"]
    rows = [{"method": variants.BN_GHOST, "k": k, "seed": s, "test_error": 0.05 + 0.01 / k + s / 100}
            for k in (32, 16, 4, 2, 1) for s in (0, 1)]
    rows += [{"method": variants.GN, "k": 0, "seed": s, "test_error": 0.1} for s in (0, 1)]
    runs = {"replica_2": [_replica(0.0506, 1.0, 1.1), _replica(0.0506, 1.0)],
            "sync_2": [_replica(0.0504, 1.0, 1.1), _replica(0.0504, 1.0)],
            "no_broadcast_2": [_replica(0.06, 1.0, 1.1), _replica(0.061, 1.2)],
            "no_join_2": [_replica(0.06, 1.0, 1.1), _replica(0.06, 1.5)],
            "accumulate_2": [_replica(0.07, 0.9, 1.0)],
            "accumulate_2_corrected": [_replica(0.07, 0.95, 1.0)],
            "one_batch": [_replica(0.05, 1.02, 1.0)]}
    return {"setting_name": "short", "setting": setting, "runs": runs, "sweep": rows,
            "latency": {2: 0.0005}, "step": {2: {"replica": 0.025, "sync": 0.03, "unsynced": 0.02}}, "paper": {k: experiment.communication(k, [16] * 3, 100)
                                               for k in experiment.PAPER_REPLICAS},
            "layers": [16, 16, 16], "parameters": 100,
            "config": {"batch_size": 32, "train_subset": 1000, "epochs": 2}}


def test_findings_on_synthetic_results():
    found = verdicts.findings(synthetic_results())
    assert found["seeds"] == 2 and found["steps"] == 10
    assert found["replica_2_ch04"] == pytest.approx(0.05 + 0.01 / 16)
    assert "within the spread" in found["replica_2_phrase"]
    assert found["sync_2_ch04"] == pytest.approx(0.05 + 0.01 / 32)
    assert found["replica_ranks"] == "agree exactly"
    assert found["no_join_ranks"].startswith("disagree, by up to 50.0%")
    assert found["no_broadcast_gap_max"] == pytest.approx(1 / 11)  # 1.0 and 1.2 against 1.1
    assert found["no_broadcast_ranks"].startswith("disagree, by up to 20.0%")
    assert found["acc_momentum"] == pytest.approx(momentum_for_updates(0.1, 2))
    assert found["acc_gap"] == pytest.approx(0.1)
    assert found["acc_vs_one"].startswith("farther")
    assert found["corrected_vs_plain"].startswith("closer")
    assert found["time_ratio"] == pytest.approx(1.5)  # sync against the same layers unsynced
    assert found["time_extra_ms"] == pytest.approx(10.0)
    assert found["latency_2_ms"] == pytest.approx(0.5)
    assert found["sweep_max_replicas"] == 32 and found["gn_err"] == pytest.approx(0.1)
    assert found["sweep_phrase"].startswith("changed by +1.0")  # the seeds overlap
    assert all(isinstance(v, (int, float, str)) and not (isinstance(v, float) and math.isnan(v))
               for v in found.values())


def test_sweep_table_rows():
    rows = verdicts.sweep_table(synthetic_results())
    assert [r["replicas"] for r in rows] == [1, 2, 8, 16, 32]
    two = next(r for r in rows if r["replicas"] == 2)
    assert two["ddp_per_replica"] == 0.0506 and two["ddp_sync"] == 0.0504
    assert all(r["sync"] == rows[0]["per_replica"] for r in rows)
    assert "ddp_sync" not in next(r for r in rows if r["replicas"] == 8)


def test_base_config_is_chapter_04s_with_torchs_batch_norm():
    setting = variants.SETTINGS["short"]
    config = experiment.base_config(setting)
    ghost = variants.batch_size_configs(sizes=(32,), renorm_sizes=(), real_sizes=(), seeds=(0,),
                                        train_subset=setting["train_subset"],
                                        epochs=setting["epochs"])[0][2]
    assert config.kwargs == {"norm": "batch"}
    assert config.replace(model_kwargs=ghost.model_kwargs) == ghost


def test_the_figure_has_labelled_axes():
    figure = experiment_figure()
    ax = figure.axes[0]
    assert "replicas" in ax.get_xlabel() and "%" in ax.get_ylabel()
    from bnlib.plots.style import description

    text = description(figure)
    assert text and "replicas" in text and len(text.split()) >= 5


def experiment_figure():
    from bnlib import plots

    return plots.replica_sweep(verdicts.sweep_table(synthetic_results()))


def test_table_rows():
    results = synthetic_results()
    cost = verdicts.cost_rows(results)
    assert [r["replicas"] for r in cost] == list(experiment.PAPER_REPLICAS)
    assert cost[0]["gathered_kb"] == 2 * 3 * 33 * 4 / 1e3
    buffers = verdicts.buffer_rows(results)
    assert [r["replicas"].split(",")[0] for r in buffers] == ["agree exactly", "disagree",
                                                              "disagree"]
    assert buffers[1]["gap_high"] == pytest.approx(abs(1.5 / 1.1 - 1))
    accumulation = verdicts.accumulation_rows(results)
    assert [r["updates"] for r in accumulation] == [10, 10, 10]
    assert accumulation[2]["momentum"] == pytest.approx(momentum_for_updates(0.1, 2))
    assert accumulation[1]["gap"] == pytest.approx(0.1)


def test_confirmation_rows():
    rows = verdicts.confirmation_rows(synthetic_results())
    assert [(r["batch_norm"], r["normalisation_batch"]) for r in rows] == [
        ("per-replica", 16), ("SyncBatchNorm", 32)]
    assert rows[0]["ddp"] == 0.0506 and rows[0]["chapter_04"] == pytest.approx(0.05 + 0.01 / 16)
    assert "within the spread" in rows[1]["verdict"]
