"""Forward + backward time of bnlib's BatchNorm2d, and of the NumPy reference, over torch's own.

Run from the repository root::

    python benchmarks/layers.py                       # default shapes, prints a table
    python benchmarks/layers.py --json bench.json     # also writes the ratios as JSON
    python benchmarks/layers.py --repeats 20 --threads 1 --threads 2
    python benchmarks/layers.py --channels-last       # inputs in channels-last memory format

Each thread count asked for (default: 1, then torch's default) is measured in turn, set through
:func:`bnlib.settings.torch_threads`, and the whole set of cases ``--runs`` times over (default 5):
each case's ratio is the median of its runs, reported with their spread (min, max). For each shape (float32, training mode, a fresh gradient
each call) the candidates are timed interleaved in one process -- torch, bnlib, torch, bnlib, ...
-- so that a slow spell of a shared machine hits both alike, and the median of the per-round
ratios ``bnlib / torch`` is reported (as well as each median time). Above 1 means bnlib is
slower. The NumPy reference (:mod:`bnlib.reference`) is timed the same way against the same
torch layer, with fewer repeats.

Double backward: bnlib's backward takes a faster closed-form path unless a second derivative is
asked for (``create_graph=True``), when it builds the same formula from differentiable
operations. ``double_over_torch`` times forward + ``autograd.grad(..., create_graph=True)`` of
both layers against each other; ``double_over_fast`` times bnlib's double-backward-capable
first derivative against its plain one (what asking for the graph costs).

JSON layout (``--json``): ``{"torch": version, "cpus": int, "memory_format": str, "runs": int,
"processor": {...} (:func:`bnlib.timing.processor`: family, model, stepping, AVX-512/AMX flags,
caches, torch's CPU capability), "load_before": [1, 5, 15 min], "load_after": [...],
"results": [{"threads": int, "shape": [...], "torch_ms": float, "bnlib_ms": float,
"bnlib_over_torch": float (median of the runs), "bnlib_over_torch_runs": [...],
"bnlib_over_torch_spread": [min, max], "numpy_ms": float,
"numpy_over_torch": float, "double_torch_ms": float, "double_bnlib_ms": float,
"double_over_torch": float, "double_over_fast": float}, ...]}``. The load averages tell how busy
the machine was: on a shared machine, measurements with as many threads as cores suffer most
from the other processes (each parallel region waits for its slowest thread), so the one-thread
ratios are the steadier. The NumPy and double-backward columns come from the first run.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import bnlib.nn
from bnlib import reference
from bnlib.settings import torch_threads
from bnlib.timing import interleaved, load_average, processor, write_benchmark_json

__all__ = ["SHAPES", "main", "measure"]

SHAPES = ((32, 16, 32, 32), (64, 64, 28, 28))


def _module_step(layer: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).backward(dy)

    return step


def _double_step(layer: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor) -> Callable[[], None]:
    """Forward, then first derivatives with their graph kept (ready for a second backward)."""
    params = tuple(layer.parameters())

    def step() -> None:
        torch.autograd.grad(layer(x), (x, *params), dy, create_graph=True)

    return step


def _numpy_step(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray):
    def step() -> None:
        _, cache = reference.batch_norm_forward(x, gamma, beta)
        reference.batch_norm_backward(dy, cache)

    return step


def measure(
    shape: tuple[int, ...], repeats: int, numpy_repeats: int, channels_last: bool = False,
    extras: bool = True,
) -> dict:
    """Time torch, bnlib and NumPy batch norm (forward + backward, float32) on one shape
    (``extras=False``: bnlib against torch only, without NumPy and double backward)."""
    gen = torch.Generator().manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, generator=gen).contiguous(memory_format=layout).requires_grad_()
    dy = torch.randn(shape, generator=gen).contiguous(memory_format=layout)
    channels = shape[1]
    native = torch.nn.BatchNorm2d(channels)
    ours = bnlib.nn.BatchNorm2d(channels)
    # interleaved(a, b) gives median a, median b and the median ratio a / b
    bnlib_s, torch_s, ratio = interleaved(
        _module_step(ours, x, dy), _module_step(native, x, dy), repeats
    )
    main = {"shape": list(shape), "torch_ms": 1e3 * torch_s, "bnlib_ms": 1e3 * bnlib_s,
            "bnlib_over_torch": ratio}
    if not extras:
        return main
    double_s, torch_2_s, double_ratio = interleaved(
        _double_step(ours, x, dy), _double_step(native, x, dy), repeats
    )
    _, _, double_over_fast = interleaved(
        _double_step(ours, x, dy), _module_step(ours, x, dy), repeats
    )
    x_np, dy_np = x.detach().numpy(), dy.numpy()
    gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    numpy_s, _, numpy_ratio = interleaved(
        _numpy_step(x_np, gamma, beta, dy_np), _module_step(native, x, dy), numpy_repeats, warmup=1
    )
    return {
        **main,
        "numpy_ms": 1e3 * numpy_s,
        "numpy_over_torch": numpy_ratio,
        "double_torch_ms": 1e3 * torch_2_s,
        "double_bnlib_ms": 1e3 * double_s,
        "double_over_torch": double_ratio,
        "double_over_fast": double_over_fast,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed rounds per shape (bnlib)")
    parser.add_argument("--numpy-repeats", type=int, default=5, help="timed rounds (NumPy)")
    parser.add_argument("--threads", type=int, action="append", default=None,
                        help="torch threads; repeat for several (default: 1 and torch's default)")
    parser.add_argument("--channels-last", action="store_true",
                        help="inputs and gradients in channels-last memory format")
    parser.add_argument("--runs", type=int, default=5,
                        help="times the whole set of cases is measured (median and spread)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if min(args.repeats, args.numpy_repeats, args.runs) < 1:
        parser.error("--repeats, --numpy-repeats and --runs must be positive integers")
    thread_counts = args.threads or sorted({1, torch.get_num_threads()})
    report = {"torch": torch.__version__, "cpus": os.cpu_count(), "processor": processor(),
              "memory_format": "channels_last" if args.channels_last else "contiguous",
              "runs": args.runs, "load_before": load_average(), "results": []}
    cases = [(threads, shape) for threads in thread_counts for shape in SHAPES]
    runs: dict[tuple, list[dict]] = {case: [] for case in cases}
    for run in range(args.runs):
        for threads, shape in cases:
            with torch_threads(threads):
                runs[threads, shape].append(measure(shape, args.repeats, args.numpy_repeats,
                                                    args.channels_last, extras=run == 0))
    for (threads, shape), measured in runs.items():
        ratios = [m["bnlib_over_torch"] for m in measured]
        report["results"].append({
            "threads": threads, **measured[0],
            "torch_ms": statistics.median(m["torch_ms"] for m in measured),
            "bnlib_ms": statistics.median(m["bnlib_ms"] for m in measured),
            "bnlib_over_torch": statistics.median(ratios), "bnlib_over_torch_runs": ratios,
            "bnlib_over_torch_spread": [min(ratios), max(ratios)]})
    report["load_after"] = load_average()

    load = f"{report['load_before'][0]:.1f}/{report['load_after'][0]:.1f}"
    cpu = report["processor"]
    print(f"BatchNorm2d forward+backward, float32, training mode, {report['memory_format']} "
          f"(load average before/after: {load} on {report['cpus']} CPUs; {cpu['model_name']}, "
          f"family {cpu['family']} model {cpu['model']} stepping {cpu['stepping']}, torch "
          f"kernels {cpu['torch_cpu_capability']}; medians of {args.runs} runs)")
    print(f"{'threads':>7} {'shape':>18} {'torch ms':>9} {'bnlib ms':>9} {'bnlib/torch':>12} "
          f"{'spread':>11} {'numpy/torch':>12} {'2nd-order/torch':>16} {'2nd-order/fast':>15}")
    for r in report["results"]:
        low, high = r["bnlib_over_torch_spread"]
        print(
            f"{r['threads']:>7} {str(tuple(r['shape'])):>18} {r['torch_ms']:9.2f} "
            f"{r['bnlib_ms']:9.2f} {r['bnlib_over_torch']:12.2f} {f'{low:.2f}-{high:.2f}':>11} "
            f"{r['numpy_over_torch']:12.1f} {r['double_over_torch']:16.2f} "
            f"{r['double_over_fast']:15.2f}"
        )
    if args.json:
        write_benchmark_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
