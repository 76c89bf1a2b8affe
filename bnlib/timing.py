"""Timing that holds up on a shared machine, and the benchmarks' recorded results.

Two pieces of code are timed *interleaved* in one process (A, B, B, A, ...), so that a slow
spell of the machine hits both alike; the median of the per-round ratios is the result.
The scripts under ``benchmarks/`` and the book's pages use these functions; the book reads the
results that ``make bench`` recorded through :func:`benchmark_result`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bnlib.settings import torch_threads

__all__ = ["RESULTS_DIR", "VECTOR_FLAGS", "benchmark_result", "cpuinfo_facts", "fold_speedup",
           "interleaved", "interleaved_rounds", "lscpu_caches", "load_average", "processor", "seconds",
           "write_benchmark_json"]

#: Where ``make bench`` writes each benchmark's JSON (in a clone of the repository).
RESULTS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def seconds(step: Callable[[], object]) -> float:
    """Wall-clock seconds one call of ``step`` takes."""
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def interleaved_rounds(baseline: Callable[[], object], candidate: Callable[[], object],
                       repeats: int, warmup: int = 3, timed_by_caller: bool = False) -> dict:
    """Every round of :func:`interleaved`: ``{"baseline": [s, ...], "candidate": [s, ...],
    "ratios": [baseline / candidate, ...]}``, one entry per round."""
    if repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats}")
    for _ in range(warmup):
        baseline()
        candidate()
    base, cand, ratios = [], [], []
    timed = (lambda step: float(step())) if timed_by_caller else seconds
    for i in range(repeats):
        if i % 2 == 0:
            b, c = timed(baseline), timed(candidate)
        else:
            c, b = timed(candidate), timed(baseline)
        base.append(b)
        cand.append(c)
        ratios.append(b / c)
    return {"baseline": base, "candidate": cand, "ratios": ratios}


def interleaved(baseline: Callable[[], object], candidate: Callable[[], object], repeats: int,
                warmup: int = 3, timed_by_caller: bool = False) -> tuple[float, float, float]:
    """Median baseline time, median candidate time (s), median per-round ratio baseline/candidate.

    The two alternate which goes first in each round; ``warmup`` untimed rounds come first.
    With ``timed_by_caller``, each call returns the seconds that count (for example the time of
    its epochs, without its set-up) instead of being timed whole.
    """
    rounds = interleaved_rounds(baseline, candidate, repeats, warmup, timed_by_caller)
    return tuple(statistics.median(rounds[k]) for k in ("baseline", "candidate", "ratios"))


def fold_speedup(model: torch.nn.Module, batch_sizes: Sequence[int] = (1, 256), repeats: int = 30,
                 threads: int | None = 1) -> dict:
    """Inference time of ``model`` (eval mode, BN layers after convolutions) against its folded
    copy (:func:`bnlib.inference.fold_all`), interleaved, per batch size of 1x32x32 inputs.

    Returns ``{"threads", "torch", "repeats", "max_abs_difference", "load_average", "results":
    [{"batch_size", "unfolded_ms", "folded_ms", "speedup"}, ...]}``; ``speedup`` above 1 means
    the folded network is faster. Batches under 16 get five times the rounds (they are fast).
    """
    from bnlib.inference import fold_all

    with torch_threads(threads):
        model = model.eval()
        folded = fold_all(model).eval()
        results, difference = [], 0.0
        for batch_size in batch_sizes:
            generator = torch.Generator().manual_seed(batch_size)
            x = torch.rand(batch_size, 1, 32, 32, generator=generator)
            with torch.inference_mode():
                difference = max(difference, float((model(x) - folded(x)).abs().max()))
                rounds = repeats * (5 if batch_size < 16 else 1)
                unfolded_s, folded_s, ratio = interleaved(lambda: model(x), lambda: folded(x), rounds)
            results.append({"batch_size": int(batch_size), "unfolded_ms": unfolded_s * 1e3,
                            "folded_ms": folded_s * 1e3, "speedup": ratio})
        return {"threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": repeats,
                "max_abs_difference": difference, "load_average": list(os.getloadavg()),
                "results": results}


#: The /proc/cpuinfo flags that decide which kernels torch picks: AVX-512 and AMX families.
VECTOR_FLAGS = re.compile(r"^(avx512\w*|amx\w*)$")


def cpuinfo_facts(text: str) -> dict:
    """Vendor, model name, family, model, stepping and the :data:`VECTOR_FLAGS` of the first
    processor in ``text`` (the contents of Linux's ``/proc/cpuinfo``)."""
    first = text.split("\n\n")[0]
    fields = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return {
        "vendor": fields.get("vendor_id"), "model_name": fields.get("model name"),
        "family": fields.get("cpu family"), "model": fields.get("model"),
        "stepping": fields.get("stepping"),
        "vector_flags": sorted(f for f in fields.get("flags", "").split() if VECTOR_FLAGS.match(f)),
    }


def lscpu_caches(text: str) -> dict:
    """``{"L1d": "64 KiB (2 instances)", ...}``: the cache lines of ``lscpu``'s output."""
    caches = {}
    for line in text.splitlines():
        match = re.match(r"\s*(L\d\w?) cache:\s*(.+)$", line)
        if match:
            caches[match.group(1)] = match.group(2).strip()
    return caches


def processor() -> dict:
    """The processor the benchmarks ran on: :func:`cpuinfo_facts`, the caches
    (:func:`lscpu_caches`), the CPUs this process may use and the kernels torch dispatches to
    (``torch.backends.cpu.get_cpu_capability()``, e.g. ``"AVX512"``). Fields that cannot be read
    here (no /proc, no lscpu) are ``None`` or empty."""
    from bnlib.settings import available_cpus

    try:
        with open("/proc/cpuinfo") as handle:
            facts = cpuinfo_facts(handle.read())
    except OSError:
        facts = cpuinfo_facts("")
    caches = {}
    if shutil.which("lscpu"):
        result = subprocess.run(["lscpu"], capture_output=True, text=True,
                                env={**os.environ, "LC_ALL": "C"})
        caches = lscpu_caches(result.stdout)
    return {**facts, "caches": caches, "cpus": available_cpus(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (``uptime``'s)."""
    return list(os.getloadavg())


def write_benchmark_json(path: Path, report: dict) -> None:
    """Write a benchmark's ``report`` as indented JSON to ``path`` (folders created) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def benchmark_result(name: str, folder: Path | None = None) -> dict | None:
    """The JSON that ``make bench`` wrote for ``benchmarks/<name>.py``, or ``None`` if that
    benchmark has not been run (``folder`` defaults to :data:`RESULTS_DIR`)."""
    path = (folder or RESULTS_DIR) / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
