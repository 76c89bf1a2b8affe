"""Training speed of bnlib.training against the plain loop a competent PyTorch user writes.

The plain loop: the images preloaded as tensors, the default memory format,
``nn.CrossEntropyLoss``, ``zero_grad/backward/step`` with plain SGD (lr 0.001, batch 32,
the same per-seed initial weights and data order), the test accuracy after each epoch.
bnlib's run is the real :func:`bnlib.training.train`. Measured in one run, on a shared machine
(load averages recorded), with :mod:`bnlib.timing` (interleaved, medians):

1. the machine's peak: GFLOP/s of a 2048x2048 float32 matrix product on one thread;
2. one run, per model (with / without BN), one thread each: images/s of whole epochs (training
   and the test evaluation) of the plain loop and of bnlib, interleaved; the ratio; the FLOP
   rate as a fraction of the peak (FLOPs of one training step counted by torch);
3. each technique on its own, added to the plain loop's training steps: channels-last memory
   format, no host sync per step, the multi-tensor SGD step; all three; and ``torch.compile``
   on top of all three (with its compile time);
4. the convolution ceiling: the network's three convolutions alone (forward, and backward for
   their weights, biases and inputs, the first's input excepted, as in training), one thread,
   the same batch of 32, in the faster memory format: images/s, GFLOP/s as a fraction of the
   peak, and the engine's training step (what :func:`bnlib.training.train` runs: channels-last,
   no host sync, the multi-tensor SGD step) as a fraction of that ceiling, interleaved with it;
5. the whole comparison: ``python -m bnlib.experiment --no-cache`` (both networks, --seeds
   seeds, --epochs epochs, a fresh process: start-up included) against the plain loop running
   the same configurations one after another at torch's default thread count (wall times).

Usage: python benchmarks/train_speed.py [--images 4000] [--test-images 1000] [--rounds 5]
       [--epochs 2] [--seeds 2] [--no-comparison] [--json out.json]

(``--no-comparison`` leaves out 5., the longest part; ``benchmarks/command_line.py`` times the
command line against the plain loop as whole processes.)
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bnlib.data import load_hindi_digits
from bnlib.models import three_conv_net
from bnlib.settings import available_cpus, torch_threads
from bnlib.timing import interleaved, load_average, processor, seconds, write_benchmark_json
from bnlib.training import RunConfig, engine, train

sys.path.insert(0, str(Path(__file__).resolve().parent / "baselines"))
from plain_loop import plain_run  # noqa: E402  (the baseline, a script of its own)

MODELS = {"with_bn": True, "without_bn": False}
#: What each key of the JSON this script writes means (written into the JSON itself).
GLOSSARY = {
    "matmul_gflops_one_thread": "the peak: GFLOP/s of a 2048x2048 float32 matrix product on one "
                                "thread, the better of a measurement before and one after the runs",
    "one_run.<model>": "one run, one thread each, epochs of 'images' train images and 'test_images' "
                       "test images: images/s (train images per second of a whole epoch, its test "
                       "evaluation included) of the plain loop and of bnlib.training.train, the "
                       "median per-round ratio 'speedup' (bnlib / plain), FLOPs of one training "
                       "step per image (counted by torch) and each rate as a fraction of the peak",
    "techniques.<name>": "training steps only, one thread: 'speedup' of the plain loop's steps "
                         "with that technique over the steps named by 'over'",
    "convolution_ceiling": "the network's convolutions alone, forward and backward (weights, biases "
                           "and the inputs of all but the first), one thread, batch 32: "
                           "images/s and GFLOP/s in each memory format, the faster one "
                           "('best_format') as the ceiling with its fraction of the peak; "
                           "per model, 'step_fraction_of_ceiling' = the engine's training step's "
                           "images/s / the ceiling's (median of interleaved rounds) and "
                           "'bnlib_run_fraction_of_ceiling' = one_run's bnlib images/s (whole "
                           "epochs, test included) / the ceiling's",
    "processor": "the processor: /proc/cpuinfo's vendor, model name, family, model, stepping and "
                 "AVX-512/AMX flags, lscpu's caches, torch's CPU capability",
    "comparison": "wall time of 'command' (a fresh process; worker start-up included) against the "
                  "plain loop running the same runs one after another on 'plain_threads' threads "
                  "(torch's default); images/s over all runs; 'speedup' = plain / bnlib",
    "load_average_before/after": "the machine's 1, 5 and 15-minute load averages",
}
DEFAULT_THREADS = torch.get_num_threads()


# --------------------------------------------------------------------------- the data


def subset(images: int, test_images: int):
    x, y = load_hindi_digits("train")
    x_test, y_test = load_hindi_digits("test")
    return x[:images], y[:images], x_test[:test_images], y_test[:test_images]


# --------------------------------------------------------------------------- the peak and the FLOPs


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n float32 matrix product on one thread (best of ``repeats``; a shared
    machine lowers it, so the script measures it before and after the runs and keeps the best)."""
    with torch_threads(1):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        return 2 * n**3 / min(seconds(lambda: a @ b) for _ in range(repeats)) / 1e9


def training_flops_per_image(batch_norm: bool) -> float:
    """FLOPs of one training step (forward, cross-entropy, backward) per image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = three_conv_net(batch_norm)
    x, y = torch.rand(32, 1, 32, 32), torch.randint(0, 10, (32,))
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 32


# --------------------------------------------------------------------------- 2. one run


def measure_one_run(args, data, peak: float) -> dict:
    report = {}
    for name, batch_norm in MODELS.items():
        config = RunConfig(model_kwargs={"batch_norm": batch_norm}, epochs=2, seed=0,
                           train_subset=args.images, test_subset=args.test_images)
        with torch_threads(1):  # each timed by its second epoch (training and test)
            plain_s, bnlib_s, ratio = interleaved(
                lambda: plain_run(data, batch_norm, 0, 2),
                lambda: train(config, progress=False, threads=1).epochs[-1].seconds,
                args.rounds, warmup=1, timed_by_caller=True)
        flops = training_flops_per_image(batch_norm)
        r = report[name] = {
            "plain_images_per_s": args.images / plain_s, "bnlib_images_per_s": args.images / bnlib_s,
            "speedup": ratio, "train_flops_per_image": flops,
            "bnlib_fraction_of_peak": flops * args.images / bnlib_s / 1e9 / peak,
            "plain_fraction_of_peak": flops * args.images / plain_s / 1e9 / peak,
            "engine": engine.choose_engine(config),
        }
        print(f"{name}: one run, one thread, {args.images} images + {args.test_images} test per "
              f"epoch: plain loop {r['plain_images_per_s']:.0f} img/s "
              f"({r['plain_fraction_of_peak']:.0%} of peak), bnlib {r['bnlib_images_per_s']:.0f} "
              f"img/s ({r['bnlib_fraction_of_peak']:.0%} of peak): {ratio:.2f}x", flush=True)
    return report


# --------------------------------------------------------------------------- 3. each technique


def steps(x, y, batch_norm: bool, channels_last=False, sync=True, foreach=False, compiled=False):
    """A function running 20 training steps of the plain loop plus the techniques asked for."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = three_conv_net(batch_norm).to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, foreach=foreach)
    forward = engine.compiled_forward(model) if compiled else model
    position, total = [0], torch.zeros(())

    def twenty() -> None:
        for _ in range(20):
            start = position[0] = (position[0] + 32) % (len(x) - 32)
            loss = nn.functional.cross_entropy(forward(x[start : start + 32]), y[start : start + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if sync:
                loss.item()  # the running loss a user prints
            else:
                total.add_(loss.detach())

    return twenty


def measure_techniques(args, data) -> dict:
    x, y = data[0], data[1]
    techniques = {"channels_last": {"channels_last": True}, "no_host_sync": {"sync": False},
                  "foreach_sgd": {"foreach": True},
                  "all_eager": {"channels_last": True, "sync": False, "foreach": True},
                  "compiled": {"channels_last": True, "sync": False, "foreach": True, "compiled": True}}
    report = {}
    with torch_threads(1):
        for name, options in techniques.items():
            candidate = steps(x, y, True, **options)
            compile_s = seconds(candidate) if options.get("compiled") else 0.0
            base = "all_eager" if name == "compiled" else None
            baseline = steps(x, y, True, **techniques[base]) if base else steps(x, y, True)
            _, _, ratio = interleaved(baseline, candidate, args.rounds * 4, warmup=2)
            report[name] = {"speedup": ratio, "over": base or "plain", "compile_seconds": compile_s}
            print(f"technique {name}: {ratio:.2f}x over {base or 'the plain loop'}'s training steps"
                  + (f" (compiling took {compile_s:.0f} s)" if compile_s else ""), flush=True)
    return report


# --------------------------------------------------------------------------- 4. the ceiling


def conv_steps(memory_format, batches: int = 20):
    """A function running ``batches`` forward and backward passes of the network's
    convolutions alone (batch 32, random inputs and output gradients, fixed), and the FLOPs
    of one pass per image (counted by torch)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    convs = [m.to(memory_format=memory_format) for m in three_conv_net(False)
             if isinstance(m, nn.Conv2d)]
    inputs = [torch.rand(32, conv.in_channels, 32, 32).contiguous(memory_format=memory_format)
              .requires_grad_(i > 0) for i, conv in enumerate(convs)]  # the image needs no grad
    grads = [torch.randn(32, conv.out_channels, 32, 32).contiguous(memory_format=memory_format)
             for conv in convs]

    def one() -> None:
        for conv, x, dy in zip(convs, inputs, grads):
            conv(x).backward(dy)

    with FlopCounterMode(display=False) as counter:
        one()
    flops = counter.get_total_flops() / 32

    def run() -> None:
        for _ in range(batches):
            one()

    return run, flops


def measure_ceiling(args, data, peak: float, one_run: dict) -> dict:
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    with torch_threads(1):
        (contiguous, flops), (last, _) = (conv_steps(f) for f in formats.values())
        contiguous_s, last_s, _ = interleaved(contiguous, last, args.rounds * 2, warmup=2)
        rates = {"contiguous": 20 * 32 / contiguous_s, "channels_last": 20 * 32 / last_s}
        best = max(rates, key=rates.get)
        ceiling, _ = conv_steps(formats[best])
        report = {"conv_flops_per_image": flops, "images_per_s": rates, "best_format": best,
                  "ceiling_images_per_s": rates[best],
                  "ceiling_fraction_of_peak": rates[best] * flops / 1e9 / peak, "models": {}}
        x, y = data[0], data[1]
        for name, batch_norm in MODELS.items():
            step = steps(x, y, batch_norm, channels_last=True, sync=False, foreach=True)
            ceiling_s, step_s, ratio = interleaved(ceiling, step, args.rounds * 2, warmup=2)
            report["models"][name] = {
                "step_images_per_s": 20 * 32 / step_s,
                "step_fraction_of_ceiling": ratio,  # ceiling time / step time, per round
                "bnlib_run_fraction_of_ceiling":
                    one_run[name]["bnlib_images_per_s"] / rates[best],
            }
    print(f"convolution ceiling: the network's convolutions alone, forward and backward, batch 32, "
          f"one thread: {rates['contiguous']:.0f} img/s contiguous, {rates['channels_last']:.0f} "
          f"img/s channels-last; the ceiling ({best}) is {report['ceiling_fraction_of_peak']:.0%} "
          f"of the matrix-product peak", flush=True)
    for name, r in report["models"].items():
        print(f"{name}: the engine's step {r['step_images_per_s']:.0f} img/s = "
              f"{r['step_fraction_of_ceiling']:.0%} of the convolution ceiling; bnlib's whole "
              f"epochs (test included) {r['bnlib_run_fraction_of_ceiling']:.0%}", flush=True)
    return report


# --------------------------------------------------------------------------- 5. the comparison


def measure_comparison(args) -> dict:
    """``python -m bnlib.experiment --no-cache`` vs the plain loop's runs one after another."""
    full = subset(17_000, 3_000)
    first = RunConfig().seed  # the article's seed, the first of the command's seeds
    configs = [(batch_norm, first + i) for batch_norm in MODELS.values() for i in range(args.seeds)]

    def plain_all() -> None:
        with torch_threads(DEFAULT_THREADS):
            for batch_norm, seed in configs:
                plain_run(full, batch_norm, seed, args.epochs)

    def bnlib_all() -> None:
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([sys.executable, "-m", "bnlib.experiment", "--epochs", str(args.epochs),
                            "--seeds", str(args.seeds), "--no-cache", "--quiet", "--out", out],
                           check=True, env={**os.environ, "BNLIB_PROGRESS": "0"})

    plain_s, bnlib_s, ratio = interleaved(plain_all, bnlib_all, args.comparison_rounds, warmup=0)
    images = len(configs) * args.epochs * 17_000
    result = {"runs": len(configs), "epochs": args.epochs, "plain_threads": DEFAULT_THREADS,
              "plain_seconds": plain_s, "bnlib_seconds": bnlib_s, "speedup": ratio,
              "plain_images_per_s": images / plain_s, "bnlib_images_per_s": images / bnlib_s,
              "engine": engine.choose_engine(RunConfig(epochs=args.epochs)),
              "command": f"python -m bnlib.experiment --epochs {args.epochs} --seeds {args.seeds} "
                         "--no-cache"}
    print(f"whole comparison ({len(configs)} runs of {args.epochs} epochs of 17,000 images): "
          f"`{result['command']}` {bnlib_s:.1f} s ({result['bnlib_images_per_s']:.0f} img/s), "
          f"the plain loop one run after another on {DEFAULT_THREADS} threads {plain_s:.1f} s "
          f"({result['plain_images_per_s']:.0f} img/s): {ratio:.2f}x", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4000, help="train images per epoch in the one-run measurement")
    parser.add_argument("--test-images", type=int, default=1000, help="test images after each epoch")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians reported)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run in the whole comparison")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per model in the whole comparison")
    parser.add_argument("--comparison-rounds", type=int, default=1, help="rounds of the whole comparison")
    parser.add_argument("--no-comparison", action="store_true",
                        help="leave out the whole comparison (5.), the longest part")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    for option in ("images", "test_images", "rounds", "epochs", "seeds", "comparison_rounds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be a positive integer")
    report = {"what": __doc__.split("\n\n")[0], "glossary": GLOSSARY, "cpus": available_cpus(), "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "processor": processor(),
              "load_average_before": load_average(),
              "settings": {k: getattr(args, k) for k in ("images", "test_images", "rounds", "epochs", "seeds")}}
    peak = report["matmul_gflops_one_thread"] = matmul_peak()
    print(f"peak: a 2048x2048 float32 matrix product runs at {peak:.0f} GFLOP/s on one thread", flush=True)
    data = subset(args.images, args.test_images)
    report["one_run"] = measure_one_run(args, data, peak)
    report["techniques"] = measure_techniques(args, data)
    report["convolution_ceiling"] = measure_ceiling(args, data, peak, report["one_run"])
    if not args.no_comparison:
        report["comparison"] = measure_comparison(args)
    report["load_average_after"] = load_average()
    again = matmul_peak()
    if again > peak:  # the fractions of the peak, against the better of the two measurements
        for r in report["one_run"].values():
            for key in ("bnlib_fraction_of_peak", "plain_fraction_of_peak"):
                r[key] *= peak / again
        report["convolution_ceiling"]["ceiling_fraction_of_peak"] *= peak / again
        report["matmul_gflops_one_thread"] = again
    print(f"peak after the runs: {again:.0f} GFLOP/s; kept {report['matmul_gflops_one_thread']:.0f}")
    peak = report["matmul_gflops_one_thread"]
    print(f"\nmake bench, train_speed (load average {report['load_average_before'][0]:.1f} before, "
          f"{report['load_average_after'][0]:.1f} after; peak {peak:.0f} GFLOP/s on one thread):")
    for name, r in report["one_run"].items():
        print(f"  per run, {name}, one thread each: bnlib {r['bnlib_images_per_s']:.0f} img/s "
              f"({r['bnlib_fraction_of_peak']:.0%} of peak) vs the plain loop "
              f"{r['plain_images_per_s']:.0f} img/s ({r['plain_fraction_of_peak']:.0%}): "
              f"{r['speedup']:.2f}x")
    ceiling = report["convolution_ceiling"]
    print(f"  convolution ceiling ({ceiling['best_format']}): {ceiling['ceiling_images_per_s']:.0f} "
          f"img/s, {ceiling['ceiling_fraction_of_peak']:.0%} of peak; the engine's step: "
          + ", ".join(f"{name} {r['step_fraction_of_ceiling']:.0%}"
                      for name, r in ceiling["models"].items()) + " of the ceiling")
    c = report.get("comparison")
    if c:
        print(f"  whole comparison: bnlib {c['bnlib_images_per_s']:.0f} img/s vs the plain loop "
              f"{c['plain_images_per_s']:.0f} img/s on {c['plain_threads']} threads: "
              f"{c['speedup']:.2f}x")
    if args.json:
        write_benchmark_json(args.json, report)


if __name__ == "__main__":
    main()
