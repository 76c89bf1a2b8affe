"""The benchmarks' recorded results (:func:`bnlib.timing.benchmark_result`) as table rows and
sentences for the book's pages.

Every function takes the parsed JSON, or ``None`` when the benchmark has not been run, and
never fails on a missing key: a row leaves the cell out, a sentence leaves the clause out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["fold_rows", "layer_rows", "lookup", "machine", "training_rows",
           "training_sentence"]


def lookup(result: Mapping | None, *keys: str | int) -> Any:
    """``result[k1][k2]...``, or ``None`` as soon as a key or index is missing."""
    value: Any = result
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _present(row: Mapping[str, Any]) -> dict:
    return {column: value for column, value in row.items() if value is not None}


def machine(result: Mapping | None) -> str:
    """``"torch 2.13.0+cpu, 2 CPUs, load 1.5 before and 1.6 after"``, as far as recorded."""
    parts = [f"torch {v}" for v in [lookup(result, "torch")] if v]
    parts += [f"{v} CPUs" for v in [lookup(result, "cpus")] if v]
    before, after = lookup(result, "load_before", 0), lookup(result, "load_after", 0)
    if before is not None and after is not None:
        parts.append(f"load {before:.1f} before and {after:.1f} after")
    return ", ".join(parts) or "machine not recorded"


def layer_rows(result: Mapping | None) -> list[dict]:
    """``benchmarks/layers.py``: BatchNorm2d forward and backward, per thread count and shape:
    torch's milliseconds and bnlib's and NumPy's time as multiples of torch's."""
    return [_present({"threads": lookup(r, "threads"),
                      "shape": "x".join(map(str, lookup(r, "shape") or [])) or None,
                      "torch ms": lookup(r, "torch_ms"),
                      "bnlib/torch": lookup(r, "bnlib_over_torch"),
                      "NumPy/torch": lookup(r, "numpy_over_torch")})
            for r in lookup(result, "results") or []]


def fold_rows(result: Mapping | None) -> list[dict]:
    """``benchmarks/fold_speed.py``: inference with and without BN folded, per batch size."""
    return [_present({"batch": lookup(r, "batch_size"), "BN ms": lookup(r, "unfolded_ms"),
                      "folded ms": lookup(r, "folded_ms"), "speed-up": lookup(r, "speedup")})
            for r in lookup(result, "results") or []]


def training_rows(result: Mapping | None) -> list[dict]:
    """``benchmarks/train_speed.py``, per model: train images per second of an image-file
    pipeline (PNG decoded per sample) and of bnlib on one core, and the share of the file
    pipeline's training time that went to decoding the files."""
    rows = []
    for name, run in (lookup(result, "one_run") or {}).items():
        png = lookup(result, "steps", name, "png_loader")
        preloaded = lookup(result, "steps", name, "preloaded")
        rows.append(_present({
            "model": name,
            "PNG img/s": lookup(run, "article_1_threads"),
            "bnlib img/s": lookup(run, "bnlib_1_threads"),
            "speed-up": lookup(run, "speedup_one_thread"),
            "decoding": 1 - png / preloaded if png and preloaded else None,
        }))
    return rows


def training_sentence(result: Mapping | None, model: str = "with_bn") -> str:
    """What training the article's network costs with bnlib, measured, in words; each clause
    only if its numbers were recorded, and a plain sentence if nothing was."""
    one = lookup(result, "one_run", model)
    steps = lookup(result, "steps", model)
    clauses = []
    rate, speedup = lookup(one, "bnlib_1_threads"), lookup(one, "speedup_one_thread")
    if rate:
        clauses.append(f"one run trained {rate:,.0f} images per second on one core")
    if speedup:
        clauses.append(f"{speedup:.1f} times as fast as a pipeline that decodes every "
                       "image from its PNG file in every epoch, as the article's does")
    png, preloaded = lookup(steps, "png_loader"), lookup(steps, "preloaded")
    if png and preloaded:
        clauses.append(f"decoding the files was {1 - png / preloaded:.0%} of that "
                       "pipeline's training time")
    peak = lookup(steps, "fraction_of_one_thread_peak")
    if peak:
        clauses.append(f"the rest is the network's own arithmetic, which ran at {peak:.0%} "
                       "of the speed of a large matrix product on the same core")
    if not clauses:
        return ("The training speed has not been measured here "
                "(benchmarks/train_speed.py measures it).")
    cpus = lookup(result, "cpus")
    where = f"on a machine with {cpus} cores" if cpus else "on the benchmark's machine"
    return f"Measured by benchmarks/train_speed.py {where}, " + "; ".join(clauses) + "."
