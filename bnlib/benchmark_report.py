"""The benchmarks' recorded results (:func:`bnlib.timing.benchmark_result`) as table rows and
sentences for the book's pages.

Every function takes the parsed JSON, or ``None`` when the benchmark has not been run, and
never fails on a missing key: a row leaves the cell out, a sentence leaves the clause out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlib.tables import table

__all__ = ["fold_rows", "fold_table", "layer_rows", "layer_table", "lookup", "machine",
           "training_rows", "training_sentence", "training_table"]


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
    pipeline (PNG decoded per sample, at its faster thread count) and of bnlib on one core,
    the speed-up (median of the rounds' ratios), the share of the file pipeline's one-core
    training time that went to decoding the files, and bnlib's training step as a fraction of
    a one-core matrix product's speed."""
    rows = []
    for name, run in (lookup(result, "one_run") or {}).items():
        png = lookup(result, "steps", name, "png_loader")
        preloaded = lookup(result, "steps", name, "preloaded")
        rows.append(_present({
            "model": name,
            "PNG img/s": lookup(run, "article"),
            "bnlib img/s": lookup(run, "bnlib_1_threads"),
            "speed-up": lookup(run, "speedup_one_thread"),
            "decoding": 1 - png / preloaded if png and preloaded else None,
            "of peak": lookup(result, "steps", name, "fraction_of_one_thread_peak"),
        }))
    return rows


def _block(title: str, result: Mapping | None, rows: list[dict], formats: dict) -> str:
    """A title, the machine and a table; or the title and "not measured yet"."""

    if not rows:
        return f"{title}\nnot measured yet (make bench measures it)."
    return f"{title}\n({machine(result)})\n{table(rows, formats)}"


def layer_table(result: Mapping | None) -> str:
    """:func:`layer_rows` as a narrow text table with its title and machine."""
    formats = {"threads": "d", "shape": "", "torch ms": ".2f", "bnlib/torch": ".2f",
               "NumPy/torch": ".1f"}
    return _block("BatchNorm2d forward and backward, float32, training mode", result,
                  layer_rows(result), formats)


def fold_table(result: Mapping | None) -> str:
    """:func:`fold_rows` as a narrow text table with its title and machine."""
    formats = {"batch": "d", "BN ms": ".2f", "folded ms": ".2f", "speed-up": ".2f"}
    threads = lookup(result, "threads")
    title = "Inference with BN folded into the convolutions" + (
        f", {threads} thread(s)" if threads else "")
    return _block(title, result, fold_rows(result), formats)


def training_table(result: Mapping | None) -> str:
    """:func:`training_rows` as a narrow text table, with the whole comparison's speed-up
    over the cores when it was recorded."""
    formats = {"model": "", "PNG img/s": ",.0f", "bnlib img/s": ",.0f", "speed-up": ".2f",
               "decoding": ".0%", "of peak": ".0%"}
    rows = training_rows(result)
    text = _block("Training the article's network: a PNG pipeline and bnlib on one core",
                  result, rows, formats)
    runs, speedup = lookup(result, "comparison", "runs"), lookup(result, "comparison", "speedup")
    if rows:
        text += ("\nspeed-up: the median over rounds of each round's ratio (not the ratio of"
                 "\nthe median rates)")
    if runs and speedup:
        text += (f"\n{runs} runs spread over the cores: {speedup:.2f}x as fast as the PNG "
                 "pipeline\nrunning them one after another")
    return text


def training_sentence(result: Mapping | None, model: str = "with_bn") -> str:
    """What training the article's network costs with bnlib, measured, in words; each clause
    only if its numbers were recorded, and a plain sentence if nothing was."""
    one, steps = lookup(result, "one_run", model), lookup(result, "steps", model)
    rate, speedup = lookup(one, "bnlib_1_threads"), lookup(one, "speedup_one_thread")
    png, preloaded = lookup(steps, "png_loader"), lookup(steps, "preloaded")
    peak = lookup(steps, "fraction_of_one_thread_peak")
    if not (rate or speedup or (png and preloaded) or peak):
        return ("The training speed has not been measured here "
                "(benchmarks/train_speed.py measures it).")
    cpus = lookup(result, "cpus")
    where = f"on a machine with {cpus} cores" if cpus else "on the benchmark's machine"
    first = [f"one run with BN trained {rate:,.0f} images per second on one core"] if rate else []
    if speedup:
        threads = lookup(one, "article_threads")
        at = f", running with {threads} threads, its faster setting" if threads else ""
        first.append(f"{speedup:.1f} times as fast as a pipeline that decodes every image "
                     f"from its file in every epoch, as the article's notebook does{at}")
    sentences = [f"Measured by benchmarks/train_speed.py {where}, " + ", ".join(first) + "."
                 if first else ""]
    second = []
    if png and preloaded:
        second.append(f"decoding the files was {1 - png / preloaded:.0%} of that pipeline's "
                      "training time on one core")
    if peak:
        second.append(f"the network's own arithmetic ran at {peak:.0%} of the speed of a large "
                      "matrix product on the same core")
    if second:
        text = "; ".join(second)
        sentences.append(text[0].upper() + text[1:] + ".")
    return " ".join(s for s in sentences if s)