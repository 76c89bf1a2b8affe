"""Chapter 07's verdicts, findings and tables, from the results of
:func:`bnlib.experiments.distributed.run`: the words and numbers the chapter glues, decided here
in tested code, never in the chapter's cells.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bnlib.experiments import variants
from bnlib.experiments.distributed import BN_MOMENTUM, PAPER_REPLICAS, statistics_gap
from bnlib.running import momentum_for_updates
from bnlib.seeds import summarize

__all__ = ["accumulation_rows", "agreement_phrase", "buffer_rows", "closer_phrase",
           "confirmation_rows", "cost_rows", "findings", "ranks_phrase", "sweep_table"]


# --------------------------------------------------------------------------- verdicts


def agreement_phrase(difference: float, seeds) -> str:
    """A data-parallel run against chapter 04's run of the same normalisation batch
    (``difference``: test error, ours minus theirs, a fraction; ``seeds``: chapter 04's
    :class:`bnlib.seeds.SeedSummary` at that size). It agrees when the difference is no larger
    than the seeds' sample standard deviation; with one seed there is nothing to compare with."""
    amount = f"{abs(difference) * 100:.2f} percentage points"
    if seeds.n == 1:
        return f"differ by {amount} (one seed: no spread between seeds to compare with)"
    if abs(difference) <= seeds.tolerance:
        return (f"differ by {amount}, within the spread between chapter 04's seeds "
                f"({seeds.sd * 100:.2f} points)")
    return (f"differ by {amount}, more than the spread between chapter 04's seeds "
            f"({seeds.sd * 100:.2f} points)")


def ranks_phrase(largest_difference: float) -> str:
    """Whether the replicas' running variances agree (``largest_difference``: the largest
    relative difference between two replicas' values of one channel)."""
    if largest_difference == 0:
        return "agree exactly"
    return f"disagree, by up to {largest_difference:.1%} of a running variance"


def closer_phrase(gap: float, other: float, other_name: str) -> str:
    """``gap`` (from the population statistics) against ``other``'s: "closer to the population
    than <other_name>" or "farther from ...", "as close as" when equal."""
    if gap < other:
        return f"closer to the population statistics than {other_name}"
    if gap > other:
        return f"farther from the population statistics than {other_name}"
    return f"as close to the population statistics as {other_name}"


def _largest_rank_difference(replicas: Sequence[Mapping]) -> float:
    """Largest ``abs(b / a - 1)`` over the replicas (against the first), layers and channels of
    the running variance."""
    worst = 0.0
    first = replicas[0]["running"]
    for other in replicas[1:]:
        for ours, theirs in zip(first, other["running"], strict=True):
            for a, b in zip(ours["var"], theirs["var"], strict=True):
                worst = max(worst, abs(b / a - 1.0))
    return worst


def _sweep_summaries(rows: Sequence[Mapping]) -> dict:
    """``{(method, k): SeedSummary}`` of chapter 04's test errors."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["method"], row["k"]), []).append(row["test_error"])
    return {key: summarize(values) for key, values in groups.items()}


def _seed0(rows: Sequence[Mapping], k: int) -> float:
    return next(r["test_error"] for r in rows
                if r["method"] == variants.BN_GHOST and r["k"] == k and r["seed"] == 0)


def sweep_table(results: Mapping[str, Any]) -> list[dict]:
    """Rows of the replica sweep: ``replicas`` k, ``shard`` 32 / k, per-replica batch norm's test
    error (chapter 04's ghost batches of 32 / k: mean and sd over seeds), SyncBatchNorm's (the
    whole batch at every k), group norm's, and the data-parallel confirmations
    (``ddp_per_replica``, ``ddp_sync``) in the rows where they were run."""
    summaries = _sweep_summaries(results["sweep"])
    batch = results["config"]["batch_size"]
    full = summaries[(variants.BN_GHOST, batch)]
    gn = summaries[(variants.GN, 0)]
    rows = []
    for (method, size), summary in sorted(summaries.items(), key=lambda item: -item[0][1]):
        if method != variants.BN_GHOST:
            continue
        k = batch // size
        ddp = results["runs"].get(f"replica_{k}")
        sync = results["runs"].get(f"sync_{k}")
        row = {"replicas": k, "shard": size, "per_replica": summary.mean,
               "per_replica_sd": summary.sd, "sync": full.mean, "group_norm": gn.mean}
        if ddp and sync:
            row |= {"ddp_per_replica": ddp[0]["test_error"], "ddp_sync": sync[0]["test_error"]}
        rows.append(row)
    return rows


def findings(results: Mapping[str, Any]) -> dict:
    """The numbers and words chapter 07 glues (fractions unless named otherwise)."""
    runs, setting = results["runs"], results["setting"]
    rows, batch = results["sweep"], results["config"]["batch_size"]
    summaries = _sweep_summaries(rows)
    out: dict[str, Any] = {"setting_name": results["setting_name"],
                           "seeds": summaries[(variants.BN_GHOST, batch)].n,
                           "subset": results["config"]["train_subset"],
                           "epochs": results["config"]["epochs"], "batch": batch,
                           "steps": runs["one_batch"][0]["steps"]}
    # ghost batches and synchronised batch norm, against chapter 04's runs
    for k in setting["replicas"]:
        size = batch // k
        for kind, against in (("replica", size), ("sync", batch)):
            ours = runs[f"{kind}_{k}"][0]["test_error"]
            theirs = _seed0(rows, against)
            out[f"{kind}_{k}_err"] = ours
            out[f"{kind}_{k}_ch04"] = theirs
            out[f"{kind}_{k}_phrase"] = agreement_phrase(
                ours - theirs, summaries[(variants.BN_GHOST, against)])
        out[f"shard_{k}"] = size
    out["k_small"] = min(setting["replicas"])
    out["replicas_text"] = " and ".join(str(k) for k in setting["replicas"])
    # the sweep: per-replica BN at its smallest shard against k = 1; group norm
    sizes = sorted(k for method, k in summaries if method == variants.BN_GHOST)
    smallest = summaries[(variants.BN_GHOST, sizes[0])]
    full = summaries[(variants.BN_GHOST, batch)]
    out |= {"sweep_max_replicas": batch // sizes[0], "sweep_smallest": smallest.mean,
            "sweep_full": full.mean, "gn_err": summaries[(variants.GN, 0)].mean,
            "sweep_phrase": variants.change_phrase(full, smallest)}
    # the running statistics under DDP's buffer copy
    k = setting["buffer_replicas"]
    out["buffer_k"] = k
    for name in (f"replica_{k}", f"no_broadcast_{k}", f"no_join_{k}"):
        replicas = runs[name]
        population = replicas[0]["population"]
        gaps = [statistics_gap(r["running"], population)["var"] for r in replicas]
        errors = [r["test_error"] for r in replicas]
        short = name.rsplit("_", 1)[0]
        out |= {f"{short}_ranks": ranks_phrase(_largest_rank_difference(replicas)),
                f"{short}_gap_min": min(gaps), f"{short}_gap_max": max(gaps),
                f"{short}_err_min": min(errors), f"{short}_err_max": max(errors),
                f"{short}_pop_err": replicas[0]["population_test_error"]}
    # gradient accumulation
    a = setting["accumulation"]
    plain, corrected, one = (runs[f"accumulate_{a}"][0], runs[f"accumulate_{a}_corrected"][0],
                             runs["one_batch"][0])
    gap = {name: statistics_gap(r["running"], r["population"])["var"]
           for name, r in (("plain", plain), ("corrected", corrected), ("one", one))}
    out |= {"acc_k": a, "acc_micro": batch // a,
            "acc_momentum": momentum_for_updates(BN_MOMENTUM, a), "bn_momentum": BN_MOMENTUM,
            "acc_tracked": plain["tracked"][0], "one_tracked": one["tracked"][0],
            "acc_err": plain["test_error"], "acc_corrected_err": corrected["test_error"],
            "one_err": one["test_error"], "acc_gap": gap["plain"],
            "acc_corrected_gap": gap["corrected"], "one_gap": gap["one"],
            "acc_ghost_err": _seed0(rows, batch // a) if (variants.BN_GHOST, batch // a)
            in summaries else float("nan"),
            "acc_vs_one": closer_phrase(gap["plain"], gap["one"], "one batch's"),
            "corrected_vs_plain": closer_phrase(gap["corrected"], gap["plain"],
                                                "the uncorrected momentum's")}
    # cost
    k2 = min(setting["replicas"])
    times = results["step"][k2]
    out |= {"time_sync_ms": times["sync"] * 1e3, "time_unsynced_ms": times["unsynced"] * 1e3,
            "time_replica_ms": times["replica"] * 1e3,
            "time_ratio": times["sync"] / times["unsynced"],
            "time_extra_ms": (times["sync"] - times["unsynced"]) * 1e3,
            "bn_layers": len(results["layers"]),
            "channels": results["layers"][0], "parameters": results["parameters"]}
    for processes, seconds in results["latency"].items():
        out[f"latency_{processes}_ms"] = seconds * 1e3
    for replicas, cost in results["paper"].items():
        out[f"gathered_{replicas}_kb"] = cost["gathered_bytes"] / 1e3
    out["sync_collectives"] = results["paper"][PAPER_REPLICAS[0]]["sync_collectives"]
    return out


# --------------------------------------------------------------------------- tables


def cost_rows(results: Mapping[str, Any]) -> list[dict]:
    """One row per replica count of :data:`PAPER_REPLICAS`: what one step sends per process
    (kilobytes) and the latency steps of one all-reduce (:func:`communication`)."""
    return [{"replicas": k, "collectives": c["sync_collectives"],
             "gathered_kb": c["gathered_bytes"] / 1e3, "reduced_kb": c["reduced_bytes"] / 1e3,
             "gradient_kb": c["gradient_bytes"] / 1e3, "ring_hops": c["ring_hops"],
             "tree_hops": c["tree_hops"]} for k, c in results["paper"].items()]


#: The buffer runs of :func:`buffer_rows`: run-name prefix and how DDP treated the buffers.
BUFFER_RUNS = (("replica", "copied (torch's default), inside join()"),
               ("no_join", "copied (torch's default), no join()"),
               ("no_broadcast", "not copied (broadcast_buffers=False)"))


def buffer_rows(results: Mapping[str, Any]) -> list[dict]:
    """Per buffer run: how DDP treated the buffers, whether the replicas' running variances
    agree, the smallest and largest replica's gap to the population variance and test error
    with its own running statistics, and the test error with the population statistics."""
    k = results["setting"]["buffer_replicas"]
    rows = []
    for prefix, treatment in BUFFER_RUNS:
        replicas = results["runs"][f"{prefix}_{k}"]
        population = replicas[0]["population"]
        gaps = [statistics_gap(r["running"], population)["var"] for r in replicas]
        errors = [r["test_error"] for r in replicas]
        rows.append({"buffers": treatment,
                     "replicas": ranks_phrase(_largest_rank_difference(replicas)),
                     "gap_low": min(gaps), "gap_high": max(gaps), "error_low": min(errors),
                     "error_high": max(errors),
                     "population_error": replicas[0]["population_test_error"]})
    return rows


def accumulation_rows(results: Mapping[str, Any]) -> list[dict]:
    """One batch of 32 against k accumulated micro-batches with the layers' momentum and with
    the per-update momentum: updates of the running statistics, momentum, gap to the population
    variance, test error with the running and with the population statistics."""
    a, batch = results["setting"]["accumulation"], results["config"]["batch_size"]
    runs = results["runs"]
    entries = ((f"one batch of {batch}", runs["one_batch"][0], BN_MOMENTUM),
               (f"{a} micro-batches of {batch // a}", runs[f"accumulate_{a}"][0], BN_MOMENTUM),
               (f"{a} micro-batches of {batch // a}, per-update momentum",
                runs[f"accumulate_{a}_corrected"][0], momentum_for_updates(BN_MOMENTUM, a)))
    return [{"training": name, "updates": r["tracked"][0], "momentum": momentum,
             "gap": statistics_gap(r["running"], r["population"])["var"],
             "error": r["test_error"], "population_error": r["population_test_error"]}
            for name, r, momentum in entries]


def confirmation_rows(results: Mapping[str, Any]) -> list[dict]:
    """Per data-parallel run (k replicas, per-replica or synchronised batch norm): its test
    error, chapter 04's run with the same normalisation batch (ghost batches of 32 / k, or the
    whole batch; seed 0) and the verdict of :func:`agreement_phrase`."""
    rows, batch = results["sweep"], results["config"]["batch_size"]
    summaries = _sweep_summaries(rows)
    out = []
    for k in results["setting"]["replicas"]:
        for kind, size, label in (("replica", batch // k, "per-replica"),
                                  ("sync", batch, "SyncBatchNorm")):
            ours = results["runs"][f"{kind}_{k}"][0]["test_error"]
            theirs = _seed0(rows, size)
            out.append({"replicas": k, "batch_norm": label, "normalisation_batch": size,
                        "ddp": ours, "chapter_04": theirs,
                        "verdict": agreement_phrase(ours - theirs,
                                                    summaries[(variants.BN_GHOST, size)])})
    return out
