"""Training speed of bnlib.training against the article's own data pipeline, measured in one run.

The article's pipeline (measured with torch's default thread count and with one thread; the
faster of the two is the baseline) decodes each image from its PNG file per sample, turns it into a tensor and
batches it with a shuffled torch DataLoader (batch 32); the model and optimizer are the same
(the article's network, plain SGD, lr 0.001). bnlib.training preloads the images as one tensor,
indexes a shuffled permutation, and trains in the channels-last memory format on one thread.

Measured on the same PNGs (a subset of the training set written to a temporary folder):

1. images per second for one run, for each model (with / without BN), with the steps between
   the article's pipeline and bnlib's: preloading, memory format, and with --compile
   torch.compile (measured slower than eager for this small network, plus 0.5-2 minutes of
   compiling, so bnlib does not use it);
2. the whole multi-seed comparison (2 models x SEEDS seeds): bnlib.training.run_many over the
   cores, against the article's pipeline running the same runs one after another (its time per
   run measured in step 1 times the number of runs: the seed does not change the speed);
3. the FLOP rate of bnlib's training step (FLOPs counted by torch's FlopCounterMode) as a
   fraction of this machine's peak, measured with a large float32 matrix product on one thread.

Usage: python benchmarks/train_speed.py [--images 2000] [--seeds 2] [--json out.json]
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
from bnlib.training import RunConfig, run_many


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


def write_pngs(folder: Path, count: int) -> tuple[list[Path], list[int]]:
    from PIL import Image

    images, labels = load_hindi_digits("train")
    keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]
    files = []
    for j, i in enumerate(keep.tolist()):
        path = folder / f"digit_{int(labels[i])}" / f"{j}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((images[i, 0].numpy() * 255).round().astype(np.uint8)).save(path)
        files.append(path)
    return files, [int(labels[i]) for i in keep]


def train_epoch(model, batches, channels_last: bool = False) -> float:
    """One pass of plain SGD over ``batches``; returns images per second."""
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


def preloaded_batches(x, y, batch_size=32, seed=0):
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for s in range(0, len(x), batch_size):
        batch = order[s : s + batch_size]
        yield x[batch], y[batch]


def measure_one_run(files, labels, batch_norm: bool, try_compile: bool) -> dict:
    """Images per second of the article's pipeline and of each step towards bnlib's."""
    results = {}
    loader = torch.utils.data.DataLoader(PngDigits(files, labels), batch_size=32, shuffle=True)
    for threads in sorted({os.cpu_count() or 1, 1}, reverse=True):  # torch's default, and one
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        results[f"article_pipeline_{threads}_threads"] = train_epoch(three_conv_net(batch_norm), loader)
    # the baseline is the article's pipeline at its faster thread count (the fairer comparison)
    results["article_pipeline"] = max(v for k, v in results.items() if k.startswith("article"))

    torch.set_num_threads(1)
    x = torch.stack([PngDigits(files, labels)[i][0] for i in range(len(files))])
    y = torch.tensor(labels)
    torch.manual_seed(0)
    results["preloaded"] = train_epoch(three_conv_net(batch_norm), preloaded_batches(x, y))
    torch.manual_seed(0)
    model = three_conv_net(batch_norm).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    results["preloaded_channels_last"] = train_epoch(model, preloaded_batches(xc, y), True)
    if try_compile:
        try:
            torch.manual_seed(0)
            compiled = torch.compile(three_conv_net(batch_norm).to(memory_format=torch.channels_last))
            start = time.perf_counter()
            train_epoch(compiled, preloaded_batches(xc[:64], y[:64]), True)  # compiles
            results["compile_seconds"] = time.perf_counter() - start
            results["preloaded_channels_last_compiled"] = train_epoch(
                compiled, preloaded_batches(xc, y), True
            )
        except Exception as error:  # no compiler toolchain, unsupported platform...
            results["compile_error"] = f"{type(error).__name__}: {str(error)[:200]}"
    return results


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n float32 matrix product (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_flops_per_image(batch_norm: bool) -> float:
    """FLOPs of one training step (forward + backward) per image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = three_conv_net(batch_norm)
    x, y = torch.rand(32, 1, 32, 32), torch.randint(0, 10, (32,))
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="PNG images per epoch (default 2000)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per model in the comparison")
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile (minutes of compiling; it did not pay here)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    report = {"images": args.images, "cpus": os.cpu_count(), "torch": torch.__version__,
              "machine": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory() as folder:
        files, labels = write_pngs(Path(folder), args.images)
        for name, batch_norm in (("with_bn", True), ("without_bn", False)):
            report[name] = measure_one_run(files, labels, batch_norm, args.compile)
            r = report[name]
            threads = ", ".join(f"{k.split('_')[2]} thread(s) {v:.0f}" for k, v in r.items()
                                if k.startswith("article_pipeline_"))
            print(f"{name}: article pipeline {r['article_pipeline']:.0f} img/s ({threads}); preloaded "
                  f"{r['preloaded']:.0f}; + channels_last {r['preloaded_channels_last']:.0f}"
                  + (f"; + torch.compile {r['preloaded_channels_last_compiled']:.0f} "
                     f"(compiling took {r['compile_seconds']:.0f} s)"
                     if "preloaded_channels_last_compiled" in r else ""))
            r["speedup_one_run"] = r["preloaded_channels_last"] / r["article_pipeline"]

    # the whole comparison: 2 models x seeds, one epoch each on the same number of images
    configs = [RunConfig(model_kwargs={"batch_norm": bn}, epochs=1, seed=seed,
                         train_subset=args.images, test_subset=100)
               for bn in (True, False) for seed in range(args.seeds)]
    start = time.perf_counter()
    run_many(configs, cache=False, progress=False)
    bnlib_seconds = time.perf_counter() - start
    article_seconds = args.seeds * sum(args.images / report[m]["article_pipeline"]
                                       for m in ("with_bn", "without_bn"))
    report["comparison"] = {
        "runs": len(configs),
        "bnlib_run_many_seconds": bnlib_seconds,
        "article_sequential_seconds": article_seconds,
        "speedup": article_seconds / bnlib_seconds,
        "note": "bnlib: wall time of run_many (process start-up and test evaluations included); "
                "article: its measured time per epoch, times the number of runs, one after another",
    }

    peak_one = matmul_peak(1)
    peak_all = matmul_peak(os.cpu_count() or 1)
    for name, bn in (("with_bn", True), ("without_bn", False)):
        flops = training_flops_per_image(bn)
        rate = flops * report[name]["preloaded_channels_last"] / 1e9
        report[name].update({"train_flops_per_image": flops, "train_gflops": rate,
                             "fraction_of_one_thread_peak": rate / peak_one})
    report["matmul_gflops"] = {"one_thread": peak_one, "all_threads": peak_all}

    print(f"one run, bnlib vs the article's pipeline: "
          f"{report['with_bn']['speedup_one_run']:.1f}x with BN, "
          f"{report['without_bn']['speedup_one_run']:.1f}x without")
    c = report["comparison"]
    print(f"whole comparison ({c['runs']} runs): run_many {c['bnlib_run_many_seconds']:.1f} s vs "
          f"article one after another {c['article_sequential_seconds']:.1f} s: {c['speedup']:.1f}x")
    for name in ("with_bn", "without_bn"):
        r = report[name]
        print(f"{name}: {r['train_flops_per_image'] / 1e6:.1f} MFLOP per image per step, "
              f"{r['train_gflops']:.1f} GFLOP/s = {r['fraction_of_one_thread_peak']:.0%} of the "
              f"one-thread matmul peak ({peak_one:.0f} GFLOP/s; all threads {peak_all:.0f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
