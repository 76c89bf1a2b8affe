"""The benchmarks' recorded results (:func:`bnlib.timing.benchmark_result`) as rows, tables
(:class:`bnlib.tables.Table`, captioned, the machine and notes below) and sentences for the
book's pages.

Every function takes the parsed JSON, or ``None`` when the benchmark has not been run, and
never fails on a missing key: a row leaves the cell out, a sentence leaves the clause out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnlib.tables import Table, table

__all__ = ["command_line_rows", "command_line_table", "fold_rows", "fold_table", "layer_rows",
           "layer_table", "lookup", "machine", "processor", "training_rows", "training_sentence",
           "training_table"]

#: ``benchmarks/command_line.py``'s settings, in words.
COMMAND_LINE_SETTINGS = {
    "two_epochs": "2 epochs of 17,000",
    "start_up": "1 epoch of 2,000",
}


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


def processor(result: Mapping | None) -> str | None:
    """``"AMD EPYC (family 26, model 2, stepping 1), torch kernels AVX512"``, as far as
    recorded (:func:`bnlib.timing.processor`), else ``None``."""
    name = lookup(result, "processor", "model_name")
    numbers = [f"{key} {value}" for key in ("family", "model", "stepping")
               for value in [lookup(result, "processor", key)] if value is not None]
    capability = lookup(result, "processor", "torch_cpu_capability")
    if not (name or numbers):
        return None
    text = " ".join([name or "processor", f"({', '.join(numbers)})" if numbers else ""]).strip()
    return f"{text}, torch kernels {capability}" if capability else text


def machine(result: Mapping | None) -> str:
    """``"AMD EPYC (family 26, model 2, stepping 1), torch kernels AVX512, torch 2.13.0+cpu,
    2 CPUs, load 1.5 before and 1.6 after"``, as far as recorded."""
    parts = [v for v in [processor(result)] if v]
    parts += [f"torch {v}" for v in [lookup(result, "torch")] if v]
    parts += [f"{v} CPUs" for v in [lookup(result, "cpus")] if v]
    before = _first_present(result, ("load_average_before", 0), ("load_before", 0))
    after = _first_present(result, ("load_average_after", 0), ("load_after", 0))
    if before is not None and after is not None:
        parts.append(f"load {before:.1f} before and {after:.1f} after")
    return ", ".join(parts) or "machine not recorded"


def _first_present(result: Mapping | None, *paths: tuple) -> Any:
    """The value at the first of ``paths`` that ``result`` holds, else ``None``."""
    for path in paths:
        value = lookup(result, *path)
        if value is not None:
            return value
    return None


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
    """``benchmarks/train_speed.py``, per model: train images per second (an epoch with its
    test evaluation, one thread) of the plain loop a PyTorch user writes and of bnlib, the
    speed-up (median of the rounds' ratios), and each one's arithmetic as a fraction of a
    one-core matrix product's speed measured in the same run."""
    return [_present({
        "model": name,
        "plain img/s": lookup(run, "plain_images_per_s"),
        "bnlib img/s": lookup(run, "bnlib_images_per_s"),
        "speed-up": lookup(run, "speedup"),
        "plain of peak": lookup(run, "plain_fraction_of_peak"),
        "bnlib of peak": lookup(run, "bnlib_fraction_of_peak"),
    }) for name, run in (lookup(result, "one_run") or {}).items()]


def command_line_rows(result: Mapping | None) -> list[dict]:
    """``benchmarks/command_line.py``, per setting: the whole-process wall time (median) of the
    plain loop and of ``python -m bnlib.experiment``, and the median per pair of the plain
    loop's time over the command's (``ratio``), with its lowest (``low``) and highest
    (``high``)."""
    rows = []
    for name, setting in (lookup(result, "settings") or {}).items():
        spread = lookup(setting, "speedup_spread") or [None, None]
        rows.append(_present({
            "setting": COMMAND_LINE_SETTINGS.get(name, name),
            "pairs": lookup(setting, "pairs"),
            "plain s": lookup(setting, "plain_median_seconds"),
            "command s": lookup(setting, "command_median_seconds"),
            "ratio": lookup(setting, "speedup"),
            "low": spread[0], "high": spread[1],
        }))
    return rows


def _table(title: str, result: Mapping | None, rows: list[dict], formats: dict,
           notes: tuple[str, ...] = ()) -> Table:
    """The rows as a :class:`~bnlib.tables.Table` captioned ``title``, with the machine and
    ``notes`` below; without rows, a note that the benchmark has not been run."""
    if not rows:
        return table(rows, formats, caption=title,
                     notes=["not measured yet (make bench measures it)."])
    return table(rows, formats, caption=title, notes=[f"Measured on {machine(result)}.", *notes])


def layer_table(result: Mapping | None) -> Table:
    """:func:`layer_rows` as a table with its title and machine."""
    formats = {"threads": "d", "shape": "", "torch ms": ".2f", "bnlib/torch": ".2f",
               "NumPy/torch": ".1f"}
    return _table("BatchNorm2d forward and backward, float32, training mode", result,
                  layer_rows(result), formats)


def fold_table(result: Mapping | None) -> Table:
    """:func:`fold_rows` as a table with its title and machine."""
    formats = {"batch": "d", "BN ms": ".2f", "folded ms": ".2f", "speed-up": ".2f"}
    threads = lookup(result, "threads")
    title = "Inference with BN folded into the convolutions" + (
        f", {threads} thread(s)" if threads else "")
    return _table(title, result, fold_rows(result), formats)


def training_table(result: Mapping | None) -> Table:
    """:func:`training_rows` as a table, with the matrix-product peak and the whole comparison
    below it when they were recorded."""
    formats = {"model": "", "plain img/s": ",.0f", "bnlib img/s": ",.0f", "speed-up": ".2f",
               "plain of peak": ".0%", "bnlib of peak": ".0%"}
    rows = training_rows(result)
    notes = []
    peak = lookup(result, "matmul_gflops_one_thread")
    if peak:
        notes.append(f"Peak: a 2048x2048 matrix product at {peak:.0f} GFLOP/s on one core.")
    notes.append("Speed-up: the median over rounds of each round's ratio (not the ratio of "
                 "the median rates).")
    comparison = lookup(result, "comparison") or {}
    if comparison.get("speedup") and comparison.get("runs"):
        notes.append(f"{comparison['runs']} runs over worker processes: "
                     f"{comparison['speedup']:.2f}x as fast as the plain loop running them "
                     f"one after another on {comparison.get('plain_threads', 'all')} threads.")
    return _table("Training the article's network on one core: a plain loop and bnlib",
                  result, rows, formats, tuple(notes))


def training_sentence(result: Mapping | None, model: str = "with_bn") -> str:
    """What training the article's network costs with bnlib, measured, in words; each clause
    only if its numbers were recorded, and a plain sentence if nothing was."""
    one = lookup(result, "one_run", model)
    rate, speedup = lookup(one, "bnlib_images_per_s"), lookup(one, "speedup")
    share, peak = lookup(one, "bnlib_fraction_of_peak"), lookup(result, "matmul_gflops_one_thread")
    if not (rate or speedup or share):
        return ("The training speed has not been measured here "
                "(benchmarks/train_speed.py measures it).")
    cpus = lookup(result, "cpus")
    where = f"on a machine with {cpus} cores" if cpus else "on the benchmark's machine"
    first = [f"one run with BN trained {rate:,.0f} images per second on one core"] if rate else []
    if speedup:
        first.append(f"{speedup:.2f} times the rate of a plain PyTorch training loop (images "
                     "already in memory, the default memory format) on the same core")
    sentences = [f"Measured by benchmarks/train_speed.py {where}, " + ", ".join(first) + "."
                 if first else ""]
    if share:
        of = f" ({peak:.0f} GFLOP/s, measured in the same run)" if peak else ""
        sentences.append(f"Its arithmetic ran at {share:.0%} of the speed of a large matrix "
                         f"product on the same core{of}.")
    return " ".join(s for s in sentences if s)


def command_line_table(result: Mapping | None) -> Table:
    """:func:`command_line_rows` as a table with its title and machine."""
    formats = {"setting": "", "pairs": "d", "plain s": ".1f", "command s": ".1f",
               "ratio": ".2f", "low": ".2f", "high": ".2f"}
    notes = ("Settings: epochs over that many training images. Whole processes, start-up "
             "and writing the results included, timed in "
             "interleaved pairs: the median wall times in seconds, and (ratio, low, high) the "
             "median, lowest and highest per pair of the plain loop's time over the command's "
             "(above 1, the command is faster).",)
    return _table("The command line against the plain loop it replaces", result,
                  command_line_rows(result), formats, notes)
