"""Inference time of the article's BN network with BN folded into its convolutions, over unfolded.

Run from the repository root::

    python benchmarks/fold_speed.py                      # batch 1 and 256, prints a table
    python benchmarks/fold_speed.py --json fold.json     # also writes the results as JSON
    python benchmarks/fold_speed.py --repeats 50 --threads 1

The network is :func:`bnlib.models.three_conv_net` with BN, in eval mode; the folded copy comes
from :func:`bnlib.inference.fold_all` (each Conv2d+BatchNorm2d pair becomes one Conv2d and an
Identity). For each batch size the two forward passes (under ``torch.inference_mode``, float32)
are timed interleaved in one process -- unfolded, folded, folded, unfolded, ... -- so that a slow
spell of a shared machine hits both alike; the median of the per-round ratios
``unfolded / folded`` is the speed-up (above 1: folding is faster).

JSON layout (``--json``): ``{"threads": int, "torch": version, "repeats": int, "max_abs_difference":
float, "results": [{"batch_size": int, "unfolded_ms": float, "folded_ms": float, "speedup": float},
...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bnlib.inference import fold_all
from bnlib.models import three_conv_net


def _seconds(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def interleaved(baseline: Callable[[], object], candidate: Callable[[], object], repeats: int,
                warmup: int = 3) -> tuple[float, float, float]:
    """Median baseline time, median candidate time (s) and median per-round ratio baseline/candidate."""
    for _ in range(warmup):
        baseline()
        candidate()
    base, cand, ratios = [], [], []
    for i in range(repeats):
        if i % 2 == 0:  # alternate which goes first
            b, c = _seconds(baseline), _seconds(candidate)
        else:
            c, b = _seconds(candidate), _seconds(baseline)
        base.append(b)
        cand.append(c)
        ratios.append(b / c)
    return statistics.median(base), statistics.median(cand), statistics.median(ratios)


def article_network(seed: int = 0) -> torch.nn.Sequential:
    """The article's network with BN, in eval mode, with non-trivial running statistics."""
    torch.manual_seed(seed)
    model = three_conv_net(batch_norm=True)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model.eval()


def measure(
    batch_sizes: Sequence[int] = (1, 256),
    repeats: int = 30,
    threads: int | None = 1,
    model: torch.nn.Module | None = None,
) -> dict:
    """Time ``model`` (default :func:`article_network`) against ``fold_all(model)`` in eval mode.

    Returns the JSON layout described in the module docstring; times in milliseconds.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model = (model if model is not None else article_network()).eval()
        folded = fold_all(model).eval()
        results = []
        difference = 0.0
        for batch_size in batch_sizes:
            x = torch.rand(batch_size, 1, 32, 32, generator=torch.Generator().manual_seed(batch_size))
            with torch.inference_mode():
                difference = max(difference, float((model(x) - folded(x)).abs().max()))
                # more rounds for the fast batch-1 pass, so each median rests on enough samples
                rounds = repeats * (5 if batch_size < 16 else 1)
                unfolded_s, folded_s, speedup = interleaved(lambda: model(x), lambda: folded(x), rounds)
            results.append({"batch_size": int(batch_size), "unfolded_ms": unfolded_s * 1e3,
                            "folded_ms": folded_s * 1e3, "speedup": speedup})
        return {"threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": repeats,
                "max_abs_difference": difference, "load_average": list(os.getloadavg()),
                "results": results}
    finally:
        torch.set_num_threads(old_threads)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds (x5 for batches under 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    report = measure(args.batch_sizes, args.repeats, args.threads or None)
    print(f"torch {report['torch']}, {report['threads']} thread(s); folded vs unfolded largest "
          f"|difference| {report['max_abs_difference']:.2e}")
    print(f"{'batch':>6} {'unfolded ms':>12} {'folded ms':>10} {'speed-up':>9}")
    for row in report["results"]:
        print(f"{row['batch_size']:>6} {row['unfolded_ms']:>12.3f} {row['folded_ms']:>10.3f} "
              f"{row['speedup']:>8.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
