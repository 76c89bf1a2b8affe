"""Training speed of bnlib.training against the article's own data pipeline, measured in one run.

The article's pipeline decodes each image from its PNG file per sample (PIL), turns it into a
tensor and batches it with a shuffled torch DataLoader (batch 32); after each epoch it evaluates
the test images the same way (PNG files, DataLoader of 32). The model and optimizer are the same
as bnlib's (the article's network, plain SGD, lr 0.001). It is measured with torch's default
thread count and with one thread, and the faster of the two is the baseline.

bnlib.training (the real :func:`bnlib.training.train`, not a copy of it) preloads the images as
one tensor, indexes a shuffled permutation, trains in the channels-last memory format and
evaluates the test images 250 at a time. Its default is one torch thread per run (the same
numbers however the run is launched); a lone run may use every core (``threads=``), which is
faster but changes the last bits.

Both train on the same number of images, written as PNG files to a temporary folder from the
data file (a train subset of --images and a test subset of --test-images). Measured:

1. one run, per model (with / without BN): seconds per epoch (training and the test evaluation,
   as both do every epoch; the second epoch, so that start-up costs are left out), as train
   images per second, for the article's pipeline and for bnlib.training with one thread and
   with every core, in --rounds interleaved rounds (medians reported);
2. the steps between the two (training steps only, no evaluation): preloading, then the
   channels-last memory format, and with --compile torch.compile (measured no faster than eager
   for this small network here: +4% on one thread, slower on two, after 10-30 s of compiling,
   so bnlib does not use it);
3. the whole multi-seed comparison (2 models x --seeds seeds x --epochs epochs):
   :func:`bnlib.training.run_many` over the cores (its wall time: worker start-up included)
   against the article's pipeline running the same runs one after another, both timed for real;
   and without run_many's start-up (timed as the same runs with 0 epochs), which is what the
   ratio tends to for runs as long as the chapter's;
4. the FLOP rate of bnlib's training step (FLOPs counted by torch's FlopCounterMode) as a
   fraction of this machine's peak, measured with a large float32 matrix product on one thread.

Usage: python benchmarks/train_speed.py [--images 3000] [--test-images 1000] [--seeds 2]
       [--epochs 2] [--rounds 3] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bnlib.data import load_hindi_digits
from bnlib.models import three_conv_net
from bnlib.settings import available_cpus
from bnlib.training import RunConfig, run_many, train

MODELS = {"with_bn": True, "without_bn": False}


# --------------------------------------------------------------------------- the article's pipeline


class PngDigits(torch.utils.data.Dataset):
    """The article's dataset: one PNG decoded per sample (PIL), to a float tensor in [0, 1]."""

    def __init__(self, files: list[Path], labels: list[int]):
        self.files, self.labels = files, labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.files[i]) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).unsqueeze(0), self.labels[i]


def write_pngs(folder: Path, split: str, count: int) -> PngDigits:
    """``count`` digits of ``split`` (a fixed random subset) as PNG files under ``folder``."""
    from PIL import Image

    images, labels = load_hindi_digits(split)
    keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]
    files = []
    for j, i in enumerate(keep.tolist()):
        path = folder / split / f"digit_{int(labels[i])}" / f"{j}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((images[i, 0].numpy() * 255).round().astype(np.uint8)).save(path)
        files.append(path)
    return PngDigits(files, [int(labels[i]) for i in keep])


def article_run(train_set: PngDigits, test_set: PngDigits, batch_norm: bool, seed: int,
                epochs: int) -> list[float]:
    """The article's training run: seconds of each epoch (training, then the test evaluation)."""
    torch.manual_seed(seed)
    model = three_conv_net(batch_norm)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=32)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for inputs, targets in train_loader:
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for inputs, targets in test_loader:
                correct += int((model(inputs).argmax(1) == targets).sum())
        seconds.append(time.perf_counter() - start)
    return seconds


# --------------------------------------------------------------------------- bnlib.training


def bnlib_config(args: argparse.Namespace, batch_norm: bool, seed: int = 0, epochs: int = 2) -> RunConfig:
    return RunConfig(model_kwargs={"batch_norm": batch_norm}, epochs=epochs, seed=seed,
                     train_subset=args.images, test_subset=args.test_images)


def bnlib_run(config: RunConfig, threads: int) -> list[float]:
    """Seconds of each epoch of :func:`bnlib.training.train` (training and test evaluation)."""
    return [record.seconds for record in train(config, progress=False, threads=threads).epochs]


# --------------------------------------------------------------------------- training steps only


def train_steps(model: nn.Module, batches, channels_last: bool = False) -> float:
    """One pass of plain SGD over ``batches`` (no evaluation); returns images per second."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    model.train()
    count, start = 0, time.perf_counter()
    for inputs, targets in batches:
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(targets)
    return count / (time.perf_counter() - start)


def preloaded_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int = 32, seed: int = 0):
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for s in range(0, len(x), batch_size):
        batch = order[s : s + batch_size]
        yield x[batch], y[batch]


def measure_steps(train_set: PngDigits, batch_norm: bool, try_compile: bool) -> dict:
    """Images per second of training steps, from the article's loader towards bnlib's loop
    (one thread throughout, so each step's gain is its own)."""
    torch.set_num_threads(1)
    results = {}
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True)
    results["png_loader"] = train_steps(three_conv_net(batch_norm), loader)
    x = torch.stack([train_set[i][0] for i in range(len(train_set))])
    y = torch.tensor(train_set.labels)
    torch.manual_seed(0)
    results["preloaded"] = train_steps(three_conv_net(batch_norm), preloaded_batches(x, y))
    torch.manual_seed(0)
    model = three_conv_net(batch_norm).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    results["preloaded_channels_last"] = train_steps(model, preloaded_batches(xc, y), True)
    if try_compile:
        try:
            torch.manual_seed(0)
            compiled = torch.compile(three_conv_net(batch_norm).to(memory_format=torch.channels_last))
            start = time.perf_counter()
            train_steps(compiled, preloaded_batches(xc[:64], y[:64]), True)  # compiles
            results["compile_seconds"] = time.perf_counter() - start
            results["preloaded_channels_last_compiled"] = train_steps(
                compiled, preloaded_batches(xc, y), True
            )
        except Exception as error:  # no compiler toolchain, unsupported platform...
            results["compile_error"] = f"{type(error).__name__}: {str(error)[:200]}"
    return results


# --------------------------------------------------------------------------- the machine's peak


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n float32 matrix product (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def training_flops_per_image(batch_norm: bool) -> float:
    """FLOPs of one training step (forward + backward) per image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = three_conv_net(batch_norm)
    x, y = torch.rand(32, 1, 32, 32), torch.randint(0, 10, (32,))
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 32


# --------------------------------------------------------------------------- the report


def measure_one_run(args, train_set: PngDigits, test_set: PngDigits, cpus: int) -> dict:
    """Per model: train images per second of one epoch (the second of a run), article vs bnlib.

    Each of the --rounds rounds times the article's pipeline and bnlib.training, at one thread
    and at every core, one after the other; a quantity's value is its median over the rounds
    and a ratio the median of the rounds' ratios, so a slow spell of a shared machine, which
    hits one round, moves neither."""
    thread_counts = sorted({1, cpus})
    report = {}
    for name, batch_norm in MODELS.items():
        rounds = []
        for _ in range(args.rounds):
            rate = {}
            for threads in thread_counts:
                torch.set_num_threads(threads)
                seconds = article_run(train_set, test_set, batch_norm, seed=0, epochs=2)[-1]
                rate[f"article_{threads}_threads"] = args.images / seconds
                seconds = bnlib_run(bnlib_config(args, batch_norm), threads)[-1]
                rate[f"bnlib_{threads}_threads"] = args.images / seconds
            best = max(rate[f"article_{t}_threads"] for t in thread_counts)
            rate["speedup_one_thread"] = rate["bnlib_1_threads"] / best
            rate["speedup_all_cores"] = rate[f"bnlib_{cpus}_threads"] / best
            rate["speedup_same_threads"] = min(
                rate[f"bnlib_{t}_threads"] / rate[f"article_{t}_threads"] for t in thread_counts)
            rounds.append(rate)
        r = {key: float(np.median([rate[key] for rate in rounds])) for key in rounds[0]}
        r["article"] = max(r[f"article_{t}_threads"] for t in thread_counts)
        r["article_threads"] = max(thread_counts, key=lambda t: r[f"article_{t}_threads"])
        r["rounds"] = args.rounds
        report[name] = r
        print(f"{name}: article pipeline {r['article']:.0f} img/s (best of "
              + ", ".join(f"{t} thread(s) {r[f'article_{t}_threads']:.0f}" for t in thread_counts)
              + f"); bnlib.training 1 thread {r['bnlib_1_threads']:.0f} "
              f"({r['speedup_one_thread']:.2f}x), {cpus} threads {r[f'bnlib_{cpus}_threads']:.0f} "
              f"({r['speedup_all_cores']:.2f}x); with the same threads as the article, at least "
              f"{r['speedup_same_threads']:.2f}x (medians of {args.rounds} rounds)", flush=True)
    return report


def measure_comparison(args, train_set: PngDigits, test_set: PngDigits, one_run: dict, cpus: int) -> dict:
    """The whole comparison: run_many over the cores vs the article's runs one after another."""
    configs = [bnlib_config(args, batch_norm, seed, args.epochs)
               for batch_norm in MODELS.values() for seed in range(args.seeds)]
    start = time.perf_counter()
    run_many(configs, cache=False, progress=False)
    bnlib_seconds = time.perf_counter() - start
    # what run_many pays once, whatever the length of the runs: starting the worker processes
    # (each imports torch and loads the data) - the same runs with 0 epochs
    start = time.perf_counter()
    run_many([config.replace(epochs=0) for config in configs], cache=False, progress=False)
    startup_seconds = time.perf_counter() - start

    article_seconds = 0.0
    for name, batch_norm in MODELS.items():
        torch.set_num_threads(one_run[name]["article_threads"])
        for seed in range(args.seeds):
            start = time.perf_counter()
            article_run(train_set, test_set, batch_norm, seed, args.epochs)
            article_seconds += time.perf_counter() - start
    result = {
        "runs": len(configs), "epochs": args.epochs,
        "bnlib_run_many_seconds": bnlib_seconds,
        "article_sequential_seconds": article_seconds,
        "speedup": article_seconds / bnlib_seconds,
        "startup_seconds": startup_seconds,
        # None when start-up is most of the time: the difference of two timings would be noise
        "speedup_without_startup": (article_seconds / (bnlib_seconds - startup_seconds)
                                    if bnlib_seconds > 2 * startup_seconds else None),
        "note": "both timed for real: bnlib's run_many wall time (worker start-up included) and "
                "the article's pipeline running the same runs one after another at its faster "
                "thread count; without start-up: run_many's time minus that of the same runs "
                "with 0 epochs, what the ratio tends to for long runs such as the chapter's",
    }
    print(f"whole comparison ({len(configs)} runs of {args.epochs} epochs): run_many "
          f"{bnlib_seconds:.1f} s, the article's runs one after another {article_seconds:.1f} s: "
          f"{result['speedup']:.2f}x; without run_many's {startup_seconds:.1f} s of start-up "
          + (f"{result['speedup_without_startup']:.2f}x" if result["speedup_without_startup"]
             else "(not measurable: the runs are too short, raise --images or --epochs)"),
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="train images per epoch (default 3000)")
    parser.add_argument("--test-images", type=int, default=1000,
                        help="test images evaluated after each epoch (default 1000)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per model in the comparison (default 2)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run in the comparison (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the one-run measurement, medians reported (default 3)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile (tens of seconds of compiling; it did not pay here)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    for option in ("images", "test_images", "seeds", "epochs", "rounds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be a positive integer")

    cpus = available_cpus()
    report = {"images": args.images, "test_images": args.test_images, "cpus": cpus,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "load_before": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as folder:
        train_set = write_pngs(Path(folder), "train", args.images)
        test_set = write_pngs(Path(folder), "test", args.test_images)
        report["one_run"] = measure_one_run(args, train_set, test_set, cpus)
        report["steps"] = {}
        for name, batch_norm in MODELS.items():
            s = report["steps"][name] = measure_steps(train_set, batch_norm, args.compile)
            print(f"{name}, training steps on one thread: PNG loader {s['png_loader']:.0f} img/s, "
                  f"preloaded {s['preloaded']:.0f}, + channels_last {s['preloaded_channels_last']:.0f}"
                  + (f", + torch.compile {s['preloaded_channels_last_compiled']:.0f} "
                     f"(compiling took {s['compile_seconds']:.0f} s)"
                     if "preloaded_channels_last_compiled" in s else ""), flush=True)
        report["comparison"] = measure_comparison(args, train_set, test_set, report["one_run"], cpus)

    peak_one = matmul_peak(1)
    report["matmul_gflops"] = {"one_thread": peak_one, "all_threads": matmul_peak(cpus)}
    for name, batch_norm in MODELS.items():
        s = report["steps"][name]
        flops = training_flops_per_image(batch_norm)
        rate = flops * s["preloaded_channels_last"] / 1e9
        s.update({"train_flops_per_image": flops, "train_gflops": rate,
                  "fraction_of_one_thread_peak": rate / peak_one})
        print(f"{name}: {flops / 1e6:.1f} MFLOP per image per training step, {rate:.1f} GFLOP/s on "
              f"one thread = {rate / peak_one:.0%} of its float32 matrix-product peak "
              f"({peak_one:.0f} GFLOP/s)")
    report["load_after"] = list(os.getloadavg())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
