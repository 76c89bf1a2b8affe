"""The command line of the Hindi-digits experiment (chapter 05)::

    python -m bnlib.experiment --epochs 30 --seeds 5 --out results/

trains the article's network with and without BN for every seed and writes ``results.csv``
(one row per model, seed and epoch) and three figures: test accuracy per epoch, train loss per
epoch, and the descent path of the two tracked weights. The experiment itself (settings, runs,
measures, findings) is :mod:`bnlib.experiments.hindi_digits`; this module only parses options
and writes files.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bnlib import settings
from bnlib.experiments.hindi_digits import (
    ARTICLE,
    ARTICLE_LOGS,
    article_curves,
    run_comparison,
    summary,
)
from bnlib.training import History
from bnlib.training.files import atomic_write_text

__all__ = ["CSV_COLUMNS", "build_parser", "main", "write_csv", "write_figures"]

CSV_COLUMNS = ("model", "seed", "epoch", "train_loss", "train_accuracy", "test_loss",
               "test_accuracy", "seconds", "weight_0", "weight_1")


# --------------------------------------------------------------------------- outputs


def write_csv(results: Mapping[str, Sequence[History]], path: str | os.PathLike) -> Path:
    """One row per model, seed and epoch (:data:`CSV_COLUMNS`); written atomically."""
    path = Path(path)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for name, histories in results.items():
        for history in histories:
            writer.writerows(history.rows(model=name, seed=history.config.seed))
    atomic_write_text(path, text.getvalue())
    return path


def write_figures(results: Mapping[str, Sequence[History]], out: str | os.PathLike) -> list[Path]:
    """``accuracy.png``, ``train_loss.png`` and ``descent_path.png`` (first seed) in ``out``;
    the first two with the article's run overlaid, where its data file is at hand."""
    import matplotlib.pyplot as plt

    from bnlib.plots import training as plots

    out = Path(out)
    shipped = ARTICLE_LOGS.is_file()  # in a clone of the repository
    accuracy = article_curves("test_accuracy") if shipped else None
    loss = article_curves("train_loss") if shipped else None
    figures = {
        "accuracy.png": plots.accuracy_per_epoch(results, article=accuracy),
        "train_loss.png": plots.train_loss_per_epoch(results, article=loss),
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
            "(minutes per run; the runs are spread over the cores). "
            f"Cache folder: {settings.CACHE_ENV} (now {settings.cache_dir()})."
        ),
    )
    parser.add_argument("--epochs", type=_count(1), default=ARTICLE["epochs"],
                        help="passes over the training set per run "
                             "(default and the article: %(default)s)")
    parser.add_argument("--seeds", type=_count(1), default=1,
                        help="seeds per model: 5842 (the article's), then 5843, 5844, ... "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("hindi_digits_results"),
                        help="folder for results.csv and the figures, created if missing "
                             "(default: %(default)s)")
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
                        help="parallel processes, one torch thread each (default: "
                             "$BNLIB_WORKERS, else one per CPU the machine's quota grants, "
                             "fewer if memory is short)")
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
            low, high = row["final_accuracy_min"], row["final_accuracy_max"]
            spread = f" (seeds: {low:.1%} to {high:.1%})" if row["seeds"] > 1 else ""
            article = (f"   article at epoch 30: {row['article_accuracy']:.1%}"
                       if not math.isnan(row["article_accuracy"]) else "")
            print(f"  {row['model']:<11} {row['final_accuracy_mean']:.2%}{spread}{article}")
        print(f"Wrote {csv_path} and {', '.join(p.name for p in figures)} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
