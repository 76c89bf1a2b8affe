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
import gc
import io
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Light imports only up here: the command starts its worker processes before it imports torch
# (see main), so that their start-up overlaps its own.
from bnlib import allocator, settings, workers
from bnlib.data import SPLIT_SIZES
from bnlib.experiments.article_settings import ARTICLE

if TYPE_CHECKING:
    from bnlib.training import History

#: What the workers preload as they start (``bnlib.training.parallel.PRELOAD``, named here
#: so that this module does not import torch before it starts them).
WORKER_PRELOAD = ("bnlib.training.parallel:warm_up",)

__all__ = ["CSV_COLUMNS", "INTERRUPTED", "build_parser", "main", "write_csv", "write_figures"]

CSV_COLUMNS = ("model", "seed", "epoch", "train_loss", "train_accuracy", "test_loss",
               "test_accuracy", "seconds", "weight_0", "weight_1")
#: The exit status after Ctrl-C (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


# --------------------------------------------------------------------------- outputs


def write_csv(results: Mapping[str, Sequence[History]], path: str | os.PathLike) -> Path:
    """One row per model, seed and epoch (:data:`CSV_COLUMNS`); written atomically."""
    from bnlib.training.files import atomic_write_text

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

    from bnlib.experiments.hindi_digits import ARTICLE_LOGS, article_curves
    from bnlib.plots import training as plots
    from bnlib.training.files import atomic_write_bytes

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
        image = io.BytesIO()
        figure.savefig(image, format="png", dpi=120)
        plt.close(figure)
        atomic_write_bytes(out / file_name, image.getvalue())
        paths.append(out / file_name)
    return paths


# --------------------------------------------------------------------------- command line


def _count(minimum: int, maximum: int | None = None, holds: str = ""):
    """A parser of whole numbers from ``minimum`` to ``maximum`` (``holds`` says why the
    maximum)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f"must be at most {maximum:,} ({holds}), got {value:,}")
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
    parser.add_argument("--train-subset", default=None, metavar="N",
                        type=_count(1, SPLIT_SIZES["train"], "the images the train split holds"),
                        help="train on a seeded subset of N images instead of all 17,000 "
                             "(for quick checks; default: all)")
    parser.add_argument("--test-subset", default=None, metavar="N",
                        type=_count(1, SPLIT_SIZES["test"], "the images the test split holds"),
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


def _worker_count(args: argparse.Namespace) -> int:
    """Processes the runs will train on, this one included (as ``run_many`` counts them)."""
    return min(args.workers or settings.default_workers(), 2 * args.seeds)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (argparse exits with 2 on bad options)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_out_dir(parser, args.out)
    allocator.keep_freed_memory()  # this process trains runs too
    progress = False if args.quiet else None
    try:
        # The workers import torch and load the digits while this process does the same; if
        # every run is found in the cache they are ended unused.
        with workers.prestarted(_worker_count(args) - 1, preload=WORKER_PRELOAD):
            if "matplotlib.pyplot" not in sys.modules:
                import matplotlib

                matplotlib.use("Agg")  # files only, no window
            # Imported before the runs rather than after: while the slowest worker finishes,
            # this process has time to spare, after the runs it has none.
            import bnlib.plots.training  # noqa: F401  (matplotlib, for the figures)
            from bnlib.experiments.hindi_digits import run_comparison

            results = run_comparison(
                epochs=args.epochs, seed_count=args.seeds, lr=args.lr,
                batch_size=args.batch_size, train_subset=args.train_subset,
                test_subset=args.test_subset, workers=args.workers, cache=not args.no_cache,
                progress=progress,
            )
        csv_path = write_csv(results, args.out / "results.csv")
        figures = write_figures(results, args.out)
    except KeyboardInterrupt:
        kept = ("finished runs are not kept (--no-cache): the same command trains them again"
                if args.no_cache else
                "finished runs are kept in the cache: the same command resumes from them")
        print(f"Interrupted; no file was left half-written; {kept}.", file=sys.stderr)
        return INTERRUPTED
    if not args.quiet:
        _print_summary(results, args)
        print(f"Wrote {csv_path} and {', '.join(p.name for p in figures)} in {args.out}")
    return 0


def _print_summary(results: Mapping[str, Sequence[History]], args: argparse.Namespace) -> None:
    from bnlib.experiments.hindi_digits import summary

    print(f"Test accuracy after {args.epochs} epoch(s), {args.seeds} seed(s):")
    for row in summary(results):
        low, high = row["final_accuracy_min"], row["final_accuracy_max"]
        spread = f" (seeds: {low:.1%} to {high:.1%})" if row["seeds"] > 1 else ""
        article = (f"   article at epoch 30: {row['article_accuracy']:.1%}"
                   if not math.isnan(row["article_accuracy"]) else "")
        print(f"  {row['model']:<11} {row['final_accuracy_mean']:.2%}{spread}{article}")


if __name__ == "__main__":
    status = main()
    # The work is done and every file closed: move every object out of the collector's reach,
    # so that the interpreter's exit does not traverse torch's modules one last time (0.25 s
    # of the 0.5 s an exit with torch loaded takes, measured on 2 cores).
    gc.freeze()
    sys.exit(status)
