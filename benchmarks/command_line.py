"""The command line against the plain loop it replaces, as whole processes (start-up included).

``python -m bnlib.experiment --no-cache --quiet`` (both networks, a fresh process, its worker
processes, its CSV and figures) against ``benchmarks/baselines/plain_loop.py`` (the loop a
competent PyTorch user writes: the same runs one after another in one process at torch's
default thread count), in two settings:

* ``two_epochs``: ``--epochs 2 --seeds 1``, all 17,000 training images: ``speedup`` = the plain
  loop's wall time / the command's (above 1: the command is faster);
* ``start_up``: ``--epochs 1 --seeds 1 --train-subset 2000`` (start-up dominated):
  ``wall_ratio`` = the command's wall time / the plain loop's (below 1: the command is faster).

Each setting: ``--pairs`` interleaved pairs (plain, command; command, plain; ...) after one
untimed pair, the per-pair ratio's median and its spread (min, max), with the machine's load
averages before and after and the processor (:func:`bnlib.timing.processor`).

Usage: python benchmarks/command_line.py [--pairs 5] [--warmup 1] [--settings two_epochs start_up]
       [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bnlib.timing import interleaved_rounds, load_average, processor, write_benchmark_json

HERE = Path(__file__).resolve().parent
#: The two settings: the options both commands take.
SETTINGS = {
    "two_epochs": ["--epochs", "2", "--seeds", "1"],
    "start_up": ["--epochs", "1", "--seeds", "1", "--train-subset", "2000"],
}
GLOSSARY = {
    "settings.<name>.options": "the options given to both commands",
    "settings.<name>.plain_seconds / command_seconds": "wall time of each timed run, in order",
    "settings.<name>.plain_over_command": "per pair: plain loop's wall time / the command's",
    "settings.<name>.speedup": "median of plain_over_command (above 1: the command is faster), "
                               "with its min and max ('spread')",
    "settings.<name>.wall_ratio": "median of the command's wall time / the plain loop's, per "
                                  "pair (below 1: the command is faster), with its spread",
    "load_average_before/after": "the machine's 1, 5 and 15-minute load averages",
}


def _run(command: list[str]) -> None:
    env = {**os.environ, "BNLIB_PROGRESS": "0"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def measure(name: str, pairs: int, warmup: int = 1) -> dict:
    """Interleaved pairs of the plain loop and the command in setting ``name``, after
    ``warmup`` untimed pairs."""
    options = SETTINGS[name]
    plain = [sys.executable, str(HERE / "baselines" / "plain_loop.py"), *options]
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "bnlib.experiment", *options, "--no-cache", "--quiet",
                   "--out", out]
        load_before = load_average()
        rounds = interleaved_rounds(lambda: _run(plain), lambda: _run(command), pairs, warmup)
    ratios = rounds["ratios"]
    inverse = [1 / r for r in ratios]
    result = {
        "options": options, "pairs": pairs, "warmup_pairs": warmup, "load_average_before": load_before,
        "load_average_after": load_average(),
        "plain_seconds": rounds["baseline"], "command_seconds": rounds["candidate"],
        "plain_over_command": ratios,
        "speedup": statistics.median(ratios), "speedup_spread": [min(ratios), max(ratios)],
        "wall_ratio": statistics.median(inverse), "wall_ratio_spread": [min(inverse), max(inverse)],
        "plain_median_seconds": statistics.median(rounds["baseline"]),
        "command_median_seconds": statistics.median(rounds["candidate"]),
    }
    print(f"{name} ({' '.join(options)}): the command {result['command_median_seconds']:.1f} s, "
          f"the plain loop {result['plain_median_seconds']:.1f} s (medians of {pairs}); per pair "
          f"plain/command {result['speedup']:.2f}x (spread {min(ratios):.2f}-{max(ratios):.2f}), "
          f"command/plain {result['wall_ratio']:.2f} (load {load_before[0]:.1f} before, "
          f"{result['load_average_after'][0]:.1f} after)", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="timed pairs per setting (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs first, per setting")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.warmup < 0:
        parser.error("--pairs must be a positive integer and --warmup not negative")
    report = {"what": __doc__.split("\n\n")[0], "glossary": GLOSSARY, "torch": torch.__version__,
              "processor": processor(), "cpus": processor()["cpus"],
              "load_average_before": load_average(), "settings": {}}
    for name in args.settings:
        report["settings"][name] = measure(name, args.pairs, args.warmup)
        if args.json:  # after each setting: a run cut short keeps what it measured
            write_benchmark_json(args.json, report)
    report["load_average_after"] = load_average()
    print(f"\nmake bench, command_line (load average {report['load_average_before'][0]:.1f} "
          f"before, {report['load_average_after'][0]:.1f} after):")
    for name, r in report["settings"].items():
        print(f"  {name}: plain loop / command {r['speedup']:.2f}x "
              f"(spread {r['speedup_spread'][0]:.2f}-{r['speedup_spread'][1]:.2f}); "
              f"command / plain loop {r['wall_ratio']:.2f}")
    if args.json:
        write_benchmark_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
