"""Inference time of the article's BN network with BN folded into its convolutions, over unfolded.

Run from the repository root::

    python benchmarks/fold_speed.py                      # batch 1 and 256, prints a table
    python benchmarks/fold_speed.py --json fold.json     # also writes the results as JSON
    python benchmarks/fold_speed.py --repeats 50 --threads 1

A thin command line over :func:`bnlib.timing.fold_speedup`, which does the work (chapter 03
calls it on its trained network). The network here is :func:`bnlib.models.three_conv_net` with
BN, in eval mode, with non-trivial running statistics; the folded copy comes from
:func:`bnlib.inference.fold_all`. The two forward passes are timed interleaved in one process,
and the median of the per-round ratios ``unfolded / folded`` is the speed-up (above 1: folding
is faster).

JSON layout (``--json``): ``{"threads": int, "torch": version, "repeats": int, "max_abs_difference":
float, "results": [{"batch_size": int, "unfolded_ms": float, "folded_ms": float, "speedup": float},
...]}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from bnlib.models import three_conv_net
from bnlib.timing import fold_speedup


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
    """:func:`bnlib.timing.fold_speedup` of ``model`` (default :func:`article_network`)."""
    return fold_speedup(model if model is not None else article_network(), batch_sizes, repeats,
                        threads)


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
