"""The Hindi-digits experiment: the article's network with and without BN, over several seeds.

As a library (chapter 05)::

    results = run_comparison(epochs=30, seeds=5)   # {"with_bn": [History, ...], "without_bn": [...]}
    summary(results)

As a command::

    python -m bnlib.experiment --epochs 30 --seeds 5 --out results/

which writes ``results.csv`` (one row per model, seed and epoch) and three figures: test
accuracy per epoch, train loss per epoch, and the descent path of the two tracked weights.

The article's settings (:data:`ARTICLE`): plain SGD, learning rate 0.001, no momentum, batch 32,
30 epochs, seed 5842; it reports 99.1% test accuracy with BN and 92.4% without at epoch 30.
Seeds beyond the first are 5843, 5844, ... (:func:`seeds`).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bnlib import settings
from bnlib.models import ARTICLE_TRACKED_WEIGHTS
from bnlib.training import History, RunConfig, run_many

__all__ = [
    "ARTICLE",
    "ARTICLE_ACCURACY",
    "MODEL_NAMES",
    "article_config",
    "comparison_configs",
    "drops",
    "path_length",
    "per_seed",
    "table",
    "loss_lower_from",
    "main",
    "mean_turning_angle",
    "oscillation",
    "run_comparison",
    "seeds",
    "summary",
    "write_csv",
    "write_figures",
]

#: The article's training settings.
ARTICLE = {"lr": 0.001, "batch_size": 32, "epochs": 30, "seed": 5842, "optimizer": "sgd"}

#: The article's test accuracy after 30 epochs (fractions).
ARTICLE_ACCURACY = {"with_bn": 0.991, "without_bn": 0.924}

#: The two models, in the order of the CSV and figures: name -> ``batch_norm``.
MODEL_NAMES = {"with_bn": True, "without_bn": False}

CSV_COLUMNS = ("model", "seed", "epoch", "train_loss", "train_accuracy", "test_loss",
               "test_accuracy", "seconds", "weight_0", "weight_1")


def seeds(count: int, first: int = ARTICLE["seed"]) -> list[int]:
    """The article's seed and the next ``count - 1`` integers: ``[5842, 5843, ...]``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return [first + i for i in range(count)]


def article_config(
    batch_norm: bool,
    seed: int = ARTICLE["seed"],
    epochs: int = ARTICLE["epochs"],
    lr: float = ARTICLE["lr"],
    batch_size: int = ARTICLE["batch_size"],
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> RunConfig:
    """The article's run (plain SGD, cross-entropy, tracking its two sample weights)."""
    return RunConfig(
        model="three_conv_net", model_kwargs={"batch_norm": batch_norm}, optimizer="sgd", lr=lr,
        batch_size=batch_size, epochs=epochs, seed=seed, train_subset=train_subset,
        test_subset=test_subset, track_weights=ARTICLE_TRACKED_WEIGHTS,
    )


def comparison_configs(
    epochs: int = ARTICLE["epochs"],
    seed_count: int = 1,
    lr: float = ARTICLE["lr"],
    batch_size: int = ARTICLE["batch_size"],
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> list[tuple[str, int, RunConfig]]:
    """``(model name, seed, config)`` for both models and every seed, models first."""
    return [
        (name, seed, article_config(batch_norm, seed, epochs, lr, batch_size, train_subset,
                                    test_subset))
        for name, batch_norm in MODEL_NAMES.items()
        for seed in seeds(seed_count)
    ]


def run_comparison(
    epochs: int = ARTICLE["epochs"],
    seed_count: int = 1,
    lr: float = ARTICLE["lr"],
    batch_size: int = ARTICLE["batch_size"],
    train_subset: int | None = None,
    test_subset: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> dict[str, list[History]]:
    """Train both models for every seed (in parallel processes, through the result cache).

    Returns ``{"with_bn": [...], "without_bn": [...]}``, histories in the order of :func:`seeds`.
    """
    plan = comparison_configs(epochs, seed_count, lr, batch_size, train_subset, test_subset)
    histories = run_many([config for _, _, config in plan], workers=workers, cache=cache,
                         progress=progress)
    results: dict[str, list[History]] = {name: [] for name in MODEL_NAMES}
    for (name, _, _), history in zip(plan, histories):
        results[name].append(history)
    return results


# --------------------------------------------------------------------------- the findings


def oscillation(history: History) -> float:
    """Mean absolute change of test accuracy from one epoch to the next (fraction; 0.01 = one
    percentage point). Defined from epoch 1 to the last; 0.0 for a single epoch."""
    accuracy = np.array(history.column("test_accuracy"), dtype=float)
    return float(np.abs(np.diff(accuracy)).mean()) if len(accuracy) > 1 else 0.0


def mean_turning_angle(history: History) -> float:
    """Mean turning angle of the two-weight path, in degrees.

    The path is the tracked weights at epochs 0, 1, ..., E; step k is the displacement from epoch
    k-1 to k. The turning angle between consecutive steps is the angle between their directions:
    0 degrees goes straight on, 90 turns at a right angle, 180 reverses. A smooth path has small
    angles, a zig-zag large ones. Steps of zero length are left out; NaN if fewer than two remain.
    """
    path = np.array(history.weight_path(), dtype=float)[:, :2]
    steps = np.diff(path, axis=0)
    steps = steps[np.linalg.norm(steps, axis=1) > 0]
    if len(steps) < 2:
        return math.nan
    a, b = steps[:-1], steps[1:]
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    dot = (a * b).sum(axis=1)
    return float(np.degrees(np.abs(np.arctan2(cross, dot))).mean())


def drops(history: History) -> int:
    """Number of epochs at which the test accuracy fell below the previous epoch's."""
    accuracy = np.array(history.column("test_accuracy"), dtype=float)
    return int((np.diff(accuracy) < 0).sum())


def path_length(history: History) -> float:
    """Length of the two-weight path from epoch 0 to the last (sum of the steps' lengths)."""
    path = np.array(history.weight_path(), dtype=float)[:, :2]
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def loss_lower_from(with_bn: History, without_bn: History) -> int | None:
    """First epoch from which ``with_bn``'s train loss stays below ``without_bn``'s until the
    last epoch (None if it is not lower at the last epoch)."""
    lower = [a < b for a, b in zip(with_bn.column("train_loss"), without_bn.column("train_loss"))]
    if not lower or not lower[-1]:
        return None
    epoch = len(lower)
    while epoch > 1 and lower[epoch - 2]:
        epoch -= 1
    return epoch


def per_seed(results: Mapping[str, Sequence[History]]) -> list[dict]:
    """One row per model and seed: last test accuracy, oscillation, drops, mean turning angle
    (degrees), path length, and - against the other model of the same seed, for ``with_bn`` -
    the epoch from which its train loss stays lower (0: not lower at the last epoch)."""
    rows = []
    for name, histories in results.items():
        for i, history in enumerate(histories):
            row = {
                "model": name,
                "seed": history.config.seed,
                "final_accuracy": history.final.test_accuracy,
                "final_train_loss": history.final.train_loss,
                "oscillation": oscillation(history),
                "drops": drops(history),
                "turning_angle": mean_turning_angle(history),
                "path_length": path_length(history),
            }
            if name == "with_bn" and "without_bn" in results:
                row["loss_lower_from"] = loss_lower_from(history, results["without_bn"][i]) or 0
            rows.append(row)
    return rows


def table(rows: Sequence[Mapping], formats: Mapping[str, str]) -> str:
    """Plain-text table of ``rows`` with the columns of ``formats`` (column -> format spec)."""
    cells = [[format(row.get(c, ""), f) if c in row else "" for c, f in formats.items()]
             for row in rows]
    header = list(formats)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def summary(results: Mapping[str, Sequence[History]]) -> list[dict]:
    """One row per model: the last epoch's test accuracy (mean, std across seeds with ddof=1 -
    NaN for one seed - min, max), the mean oscillation and mean turning angle (degrees), and the
    mean train loss at the last epoch. Python floats, ready for glue."""
    rows = []
    for name, histories in results.items():
        final = np.array([h.final.test_accuracy for h in histories], dtype=float)
        angles = [mean_turning_angle(h) for h in histories]
        rows.append({
            "model": name,
            "seeds": len(histories),
            "epochs": len(histories[0].epochs),
            "final_accuracy_mean": float(final.mean()),
            "final_accuracy_std": float(final.std(ddof=1)) if len(final) > 1 else math.nan,
            "final_accuracy_min": float(final.min()),
            "final_accuracy_max": float(final.max()),
            "final_train_loss_mean": float(np.mean([h.final.train_loss for h in histories])),
            "oscillation_mean": float(np.mean([oscillation(h) for h in histories])),
            "drops_mean": float(np.mean([drops(h) for h in histories])),
            "path_length_mean": float(np.mean([path_length(h) for h in histories])),
            "turning_angle_mean": (float(np.nanmean(angles))
                                   if not all(math.isnan(a) for a in angles) else math.nan),
            "article_accuracy": ARTICLE_ACCURACY.get(name, math.nan),
        })
    return rows


# --------------------------------------------------------------------------- outputs


def write_csv(results: Mapping[str, Sequence[History]], path: str | os.PathLike) -> Path:
    """One row per model, seed and epoch (:data:`CSV_COLUMNS`); written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for name, histories in results.items():
                for history in histories:
                    writer.writerows(history.rows(model=name, seed=history.config.seed))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_figures(results: Mapping[str, Sequence[History]], out: str | os.PathLike) -> list[Path]:
    """``accuracy.png``, ``train_loss.png`` and ``descent_path.png`` (first seed) in ``out``."""
    import matplotlib.pyplot as plt

    from bnlib.plots import training as plots

    out = Path(out)
    epochs = len(next(iter(results.values()))[0].epochs)
    reference = ({name: (30, acc) for name, acc in ARTICLE_ACCURACY.items() if name in results}
                 if epochs >= 30 else None)
    figures = {
        "accuracy.png": plots.accuracy_per_epoch(results, reference=reference),
        "train_loss.png": plots.train_loss_per_epoch(results),
        "descent_path.png": plots.descent_path({name: hs[0] for name, hs in results.items()}),
    }
    paths = []
    for file_name, figure in figures.items():
        figure.savefig(out / file_name, dpi=120)
        plt.close(figure)
        paths.append(out / file_name)
    return paths


# --------------------------------------------------------------------------- command line


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bnlib.experiment",
        description=(
            "Reproduce the Hindi-digits experiment: the article's three-convolution network with "
            "and without batch normalization, trained on the DHCD digits (17,000 train, 3,000 "
            "test images) with plain SGD. Writes OUT/results.csv (one row per model, seed and "
            "epoch) and three figures: OUT/accuracy.png (test accuracy per epoch), "
            "OUT/train_loss.png (train loss per epoch), OUT/descent_path.png (two weights of the "
            "last convolution, epoch by epoch). Finished runs are cached, so a repeated command "
            "is instant."
        ),
        epilog=(
            "Example: python -m bnlib.experiment --epochs 30 --seeds 5 --out results/  "
            "(about 8 minutes per run on one core; runs are spread over the cores). "
            f"Cache folder: {settings.CACHE_ENV} (now {settings.cache_dir()})."
        ),
    )
    parser.add_argument("--epochs", type=_count(1), default=ARTICLE["epochs"],
                        help="passes over the training set per run (default and the article: %(default)s)")
    parser.add_argument("--seeds", type=_count(1), default=1,
                        help="seeds per model: 5842 (the article's), then 5843, 5844, ... (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("hindi_digits_results"),
                        help="folder for results.csv and the figures, created if missing (default: %(default)s)")
    parser.add_argument("--lr", type=_positive_float, default=ARTICLE["lr"],
                        help="learning rate of plain SGD (default and the article: %(default)s)")
    parser.add_argument("--batch-size", type=_count(1), default=ARTICLE["batch_size"],
                        help="mini-batch size (default and the article: %(default)s)")
    parser.add_argument("--train-subset", type=_count(1), default=None, metavar="N",
                        help="train on a seeded subset of N images instead of all 17,000 "
                             "(for quick checks; default: all)")
    parser.add_argument("--test-subset", type=_count(1), default=None, metavar="N",
                        help="evaluate on a fixed subset of N test images instead of all 3,000 "
                             "(for quick checks; default: all)")
    parser.add_argument("--workers", type=_count(1), default=None,
                        help="parallel processes, one torch thread each (default: $BNLIB_WORKERS, else one "
                             "per CPU the machine's quota grants, fewer if memory is short)")
    parser.add_argument("--no-cache", action="store_true",
                        help="train everything again: neither read nor write the result cache")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar and no summary table (the files are still written)")
    return parser


def _check_out_dir(parser: argparse.ArgumentParser, out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-")
        probe.close()
    except OSError as error:
        parser.error(f"--out {out}: cannot write there ({error.strerror or error}); "
                     "choose a folder you can write to")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (argparse exits with 2 on bad options)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")  # files only, no window
    _check_out_dir(parser, args.out)
    progress = False if args.quiet else None
    results = run_comparison(
        epochs=args.epochs, seed_count=args.seeds, lr=args.lr, batch_size=args.batch_size,
        train_subset=args.train_subset, test_subset=args.test_subset, workers=args.workers,
        cache=not args.no_cache,
        progress=progress,
    )
    csv_path = write_csv(results, args.out / "results.csv")
    figures = write_figures(results, args.out)
    if not args.quiet:
        print(f"Test accuracy after {args.epochs} epoch(s), {args.seeds} seed(s):")
        for row in summary(results):
            spread = (f" (seeds: {row['final_accuracy_min']:.1%} to {row['final_accuracy_max']:.1%})"
                      if row["seeds"] > 1 else "")
            article = (f"   article at epoch 30: {row['article_accuracy']:.1%}"
                       if not math.isnan(row["article_accuracy"]) else "")
            print(f"  {row['model']:<11} {row['final_accuracy_mean']:.2%}{spread}{article}")
        print(f"Wrote {csv_path} and {', '.join(p.name for p in figures)} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
