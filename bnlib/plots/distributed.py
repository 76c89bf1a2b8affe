"""Figures of chapter 07 (batch norm on several processes): test error against the number of
data-parallel replicas, per-replica against synchronised batch norm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnlib.plots.style import describe

__all__ = ["replica_sweep"]


def replica_sweep(rows: Sequence[Mapping[str, float | None]]) -> Figure:
    """Test error (%) against the replicas k sharing a global batch (log scale).

    ``rows``: :func:`bnlib.experiments.distributed_verdicts.sweep_table`'s (fractions): per-replica
    batch norm (chapter 04's ghost batches of 32 / k; mean over seeds, bars one sample standard
    deviation), SyncBatchNorm (the whole batch at every k), group norm, and the data-parallel
    confirmation runs (open markers) where they were trained.
    """
    if not rows:
        raise ValueError("replica_sweep needs at least one row")
    rows = sorted(rows, key=lambda r: r["replicas"])
    k = np.array([r["replicas"] for r in rows], dtype=float)
    per_replica = np.array([r["per_replica"] for r in rows]) * 100
    spread = np.nan_to_num(np.array([r["per_replica_sd"] for r in rows]) * 100)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.errorbar(k, per_replica, yerr=spread, fmt="-o", color="C0", capsize=3, lw=1.6, ms=6,
                label="per-replica batch norm (ghost batches of 32/k)")
    ax.plot(k, [rows[0]["sync"] * 100] * len(k), "-", color="C1", lw=1.6,
            label="synchronised batch norm (the batch of 32)")
    ax.plot(k, [rows[0]["group_norm"] * 100] * len(k), "--", color="C2", lw=1.6,
            label="group norm (independent of k)")
    for key, colour, label in (("ddp_per_replica", "C0", "DDP run, per-replica batch norm"),
                               ("ddp_sync", "C1", "DDP run, SyncBatchNorm")):
        points = [(r["replicas"], r[key] * 100) for r in rows if key in r]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, "D", mfc="none", color=colour, ms=9, mew=1.6, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(k, [str(int(v)) for v in k])
    ax.set_xlabel("replicas k sharing a global batch of 32 images")
    ax.set_ylabel("test error after training (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    ddp = sum(key in r for r in rows for key in ("ddp_per_replica", "ddp_sync"))
    return describe(fig, (
        f"Test error in percent against the number of replicas k, {int(k[0])} to {int(k[-1])} on "
        f"a logarithmic axis: per-replica batch norm at {len(k)} values of k, from "
        f"{per_replica.min():.1f}% to {per_replica.max():.1f}%; synchronised batch norm as a "
        f"line at {rows[0]['sync'] * 100:.1f}%; group norm as a dashed line at "
        f"{rows[0]['group_norm'] * 100:.1f}%; {ddp} diamonds for the runs trained with DDP."))
