"""The Hindi-digits experiment (chapter 05): the article's network with and without BN, seeds.

The reproduced article is Murali Kashaboina, "Exploring the Superhero Role of 2D Batch
Normalization in Deep Learning Architectures", Towards Data Science, with its code and notebook
in the GitHub repository ``kbmurali/hindi_hw_digits`` (notebook
``hindi_hw_digits_bnorm2d_cnns.ipynb``, commit ``cb13e64``). Its settings are :data:`ARTICLE`,
its reported accuracies :data:`ARTICLE_ACCURACY`; its per-epoch numbers are in
``data/article_logs.csv`` (:func:`article_curves`).

As a library::

    results = run_comparison(epochs=30, seed_count=5)  # {"with_bn": [History, ...], ...}
    facts = findings(results)                          # numbers and verdict words

The command line ``python -m bnlib.experiment`` (:mod:`bnlib.experiment`) runs the same.
Seeds beyond the article's are 5843, 5844, ... (:func:`seeds`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from bnlib import prose, settings
from bnlib.data import CLASS_NAMES, bundled_data_file
from bnlib.experiments.article_settings import ARTICLE
from bnlib.models import ARTICLE_TRACKED_WEIGHTS, count_parameters, three_conv_net
from bnlib.seeds import summarize
from bnlib.training import History, RunConfig, run_many

__all__ = [
    "ARTICLE",
    "ARTICLE_ACCURACY",
    "ARTICLE_LOGS",
    "ARTICLE_LOSS_LOWER_FROM_PROSE",
    "MODEL_NAMES",
    "TRAIN_IMAGES",
    "SETTINGS",
    "article_config",
    "chapter_setting",
    "PER_SEED_FORMATS",
    "class_counts",
    "dataset_facts",
    "first_seed",
    "network_facts",
    "setting_facts",
    "article_curves",
    "comparison_configs",
    "drops",
    "findings",
    "loss_lower_from",
    "mean_turning_angle",
    "oscillation",
    "path_length",
    "layer_rows",
    "per_seed",
    "per_seed_rows",
    "run_comparison",
    "seeds",
    "summary",
]


#: The article's test accuracy after 30 epochs, as its notebook prints it (cell 12 of
#: ``hindi_hw_digits_bnorm2d_cnns.ipynb``, kbmurali/hindi_hw_digits at cb13e64): 2,974 and
#: 2,772 of the 3,000 test images.
ARTICLE_ACCURACY = {"with_bn": 0.9913333333333333, "without_bn": 0.924}

#: The epoch from which, in the article's prose, BN's train loss is lower ("from about epoch 3").
#: Its notebook's logs show it lower from epoch 1 (:func:`article_curves`).
ARTICLE_LOSS_LOWER_FROM_PROSE = 3

#: The article's per-epoch numbers: its notebook's printed logs and, for the other epochs, its
#: figures read to four decimals (see ``data/article_logs.md``).
ARTICLE_LOGS = bundled_data_file("article_logs.csv")

#: Training images of the DHCD digits (Acharya et al. 2015): 1,700 per class.
TRAIN_IMAGES = 17_000

#: The two models, in the order of the CSV and figures: name -> ``batch_norm``.
MODEL_NAMES = {"with_bn": True, "without_bn": False}

#: The chapter's runs: the full setting (the article's 30 epochs, 5 seeds, every image) and
#: the short one (``BNBOOK_QUICK=1``: 2 epochs, 2 seeds, 2,000 training images).
SETTINGS = {"full": {"epochs": 30, "seed_count": 5, "train_subset": None},
            "quick": {"epochs": 2, "seed_count": 2, "train_subset": 2000}}


def chapter_setting() -> dict:
    """The keyword arguments of :func:`run_comparison` for this build (:data:`SETTINGS`)."""
    return dict(settings.full_or_quick(SETTINGS["full"], SETTINGS["quick"]))


def first_seed(results: Mapping[str, Sequence[History]]) -> dict[str, list[History]]:
    """The runs of the article's seed (the first), in the shape the figures take."""
    return {name: list(histories[:1]) for name, histories in results.items()}


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
        model="three_conv_net", model_kwargs={"batch_norm": batch_norm}, optimizer="sgd",
        lr=lr, batch_size=batch_size, epochs=epochs, seed=seed, train_subset=train_subset,
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
    workers: int | None = None,
    cache: bool = True,
    progress: bool | None = None,
    **options,
) -> dict[str, list[History]]:
    """Train both models for every seed (in parallel processes, through the result cache).

    ``options`` are those of :func:`comparison_configs` (``epochs``, ``seed_count``, ``lr``,
    ``batch_size``, ``train_subset``, ``test_subset``). Returns ``{"with_bn": [...],
    "without_bn": [...]}``, histories in the order of :func:`seeds`.
    """
    plan = comparison_configs(**options)
    histories = run_many([config for _, _, config in plan], workers=workers, cache=cache,
                         progress=progress)
    results: dict[str, list[History]] = {name: [] for name in MODEL_NAMES}
    for (name, _, _), history in zip(plan, histories):
        results[name].append(history)
    return results


def article_curves(metric: str, path: Path = ARTICLE_LOGS) -> dict[str, tuple[list, list]]:
    """The article's ``metric`` per epoch, ``{model: (epochs, values)}``, epochs counted from 1.

    ``metric`` is ``"test_accuracy"`` or ``"train_loss"`` (every epoch; other metrics, such as
    ``"test_loss"``, only at the epochs its notebook printed).
    """
    curves: dict[str, tuple[list, list]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["metric"] == metric:
                epochs, values = curves.setdefault(row["model"], ([], []))
                epochs.append(int(row["epoch"]))
                values.append(float(row["value"]))
    if not curves:
        raise KeyError(f"{path.name} has no metric {metric!r}")
    return {name: tuple(map(list, zip(*sorted(zip(*curve))))) for name, curve in curves.items()}


# --------------------------------------------------------------------------- data, network


def class_counts(train_labels: Sequence[int], test_labels: Sequence[int]) -> list[dict]:
    """Images per digit, with the digit as written in Devanagari:
    ``[{"digit": 0, "devanagari": "०", "train": 1700, "test": 300}, ...]``."""
    train, test = (np.bincount(np.asarray(y), minlength=10) for y in (train_labels,
                                                                       test_labels))
    return [{"digit": d, "devanagari": CLASS_NAMES[d], "train": int(a), "test": int(b)}
            for d, (a, b) in enumerate(zip(train, test))]


def dataset_facts(train_labels: Sequence[int], test_labels: Sequence[int]) -> dict:
    """Images in each split, the smallest and largest class of each, and the classes' sizes
    in words (``train_per_class``: ``"1,700 of each digit"`` or ``"1,650 to 1,750 of each
    digit"``)."""
    rows = class_counts(train_labels, test_labels)
    facts = {}
    for split in ("train", "test"):
        counts = [row[split] for row in rows]
        low, high = min(counts), max(counts)
        facts.update({f"n_{split}": sum(counts), f"{split}_min": low, f"{split}_max": high,
                      f"{split}_per_class": (f"{low:,} of each digit" if low == high
                                             else f"{low:,} to {high:,} of each digit")})
    return facts


def setting_facts() -> dict:
    """The article's settings (:data:`ARTICLE`) and the full setting's size (:data:`SETTINGS`),
    for the prose."""
    full = SETTINGS["full"]
    return {"article_lr": ARTICLE["lr"], "article_batch": ARTICLE["batch_size"],
            "article_epochs": ARTICLE["epochs"], "article_seed": ARTICLE["seed"],
            "full_epochs": full["epochs"], "full_seeds": full["seed_count"]}


def network_facts() -> dict:
    """Trainable parameters of the article's network without and with BN."""
    plain, bn = three_conv_net(batch_norm=False), three_conv_net(batch_norm=True)
    return {"params_without": count_parameters(plain), "params_with": count_parameters(bn),
            "params_extra": count_parameters(bn) - count_parameters(plain),
            "params_linear": count_parameters(plain[-1])}


def layer_rows(model: torch.nn.Module, input_shape: Sequence[int] = (1, 1, 32, 32)) -> list:
    """One row per layer of a ``Sequential``: its type, the shape of its output for one
    image (channels x height x width, or features), and its trainable parameters."""
    x = torch.zeros(*input_shape)
    rows = []
    with torch.no_grad():
        for layer in model.eval():
            x = layer(x)
            rows.append({"layer": type(layer).__name__,
                         "output": "x".join(map(str, x.shape[1:])),
                         "parameters": count_parameters(layer)})
    return rows


# --------------------------------------------------------------------------- the measures


def oscillation(history: History) -> float:
    """Mean absolute change of test accuracy from one epoch to the next (fraction; 0.01 = one
    percentage point). Defined from epoch 1 to the last; 0.0 for a single epoch."""
    accuracy = np.array(history.column("test_accuracy"), dtype=float)
    return float(np.abs(np.diff(accuracy)).mean()) if len(accuracy) > 1 else 0.0


def mean_turning_angle(history: History) -> float:
    """Mean turning angle of the two-weight path, in degrees.

    The path is the tracked weights at epochs 0, 1, ..., E; step k is the displacement from
    epoch k-1 to k. The turning angle between consecutive steps is the angle between their
    directions: 0 degrees goes straight on, 90 turns at a right angle, 180 reverses. Steps of
    zero length are left out; NaN if fewer than two remain.
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


def loss_lower_from(lower: Sequence[float], higher: Sequence[float]) -> int | None:
    """First epoch (from 1) from which ``lower`` stays below ``higher`` until the last epoch;
    None if it is not below at the last epoch. Accepts histories or per-epoch losses."""
    lower, higher = (_losses(x) for x in (lower, higher))
    below = [a < b for a, b in zip(lower, higher)]
    if not below or not below[-1]:
        return None
    epoch = len(below)
    while epoch > 1 and below[epoch - 2]:
        epoch -= 1
    return epoch


def _losses(x: History | Sequence[float]) -> list[float]:
    return x.column("train_loss") if isinstance(x, History) else list(x)


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
                other = results["without_bn"][i]
                row["loss_lower_from"] = loss_lower_from(history, other) or 0
            rows.append(row)
    return rows


#: Short column names and formats for a narrow table of :func:`per_seed` rows.
PER_SEED_FORMATS = {"model": "", "seed": "d", "accuracy": ".2%", "oscill.": ".2%",
                    "drops": "d", "angle": ".0f", "length": ".2e", "lower from": "d"}

_SHORT = {"final_accuracy": "accuracy", "oscillation": "oscill.", "turning_angle": "angle",
          "path_length": "length", "loss_lower_from": "lower from"}


def per_seed_rows(results: Mapping[str, Sequence[History]]) -> list[dict]:
    """:func:`per_seed` with the short column names of :data:`PER_SEED_FORMATS`."""
    return [{_SHORT.get(key, key): value for key, value in row.items()}
            for row in per_seed(results)]


def summary(results: Mapping[str, Sequence[History]]) -> list[dict]:
    """One row per model: the last epoch's test accuracy over seeds (:func:`bnlib.seeds.summarize`:
    mean, sample standard deviation - NaN for one seed - min, max), the mean oscillation, drops, path length and turning angle
    (degrees), and the mean train loss at the last epoch. Python floats, ready for glue."""
    rows = []
    for name, histories in results.items():
        final = summarize(h.final.test_accuracy for h in histories)
        angles = np.array([mean_turning_angle(h) for h in histories], dtype=float)
        rows.append({
            "model": name,
            "seeds": len(histories),
            "epochs": len(histories[0].epochs),
            "final_accuracy_mean": final.mean,
            "final_accuracy_std": final.sd,
            "final_accuracy_min": final.low,
            "final_accuracy_max": final.high,
            "final_train_loss_mean": float(np.mean([h.final.train_loss for h in histories])),
            "oscillation_mean": float(np.mean([oscillation(h) for h in histories])),
            "drops_mean": float(np.mean([drops(h) for h in histories])),
            "path_length_mean": float(np.mean([path_length(h) for h in histories])),
            "turning_angle_mean": (float(np.nanmean(angles)) if not np.isnan(angles).all()
                                   else math.nan),
            "article_accuracy": ARTICLE_ACCURACY.get(name, math.nan),
        })
    return rows


# --------------------------------------------------------------------------- the findings


def findings(results: Mapping[str, Sequence[History]]) -> dict:
    """The chapter's numbers and verdict words, for one ``glue_findings`` call.

    ``results`` is :func:`run_comparison`'s ``{"with_bn": [...], "without_bn": [...]}`` with
    the same seeds in the same order; the first seed is the article's. Accuracies are
    fractions, differences between accuracies percentage points, angles degrees.
    """
    bn, plain = results["with_bn"], results["without_bn"]
    if len(bn) != len(plain) or not bn:
        raise ValueError("both models need the same, non-zero number of seeds")
    first = {"with_bn": bn[0], "without_bn": plain[0]}
    n = len(bn)
    facts: dict = {
        "epochs": len(bn[0].epochs),
        "seed_count": n,
        "train_images": bn[0].config.train_subset or TRAIN_IMAGES,
        "seconds_per_epoch": float(np.mean([r.seconds for h in bn for r in h.epochs])),
        "transitions": len(bn[0].epochs) - 1,
    }
    facts.update(_first_seed(first))
    facts.update(_article(results))
    facts.update(_over_seeds(results))
    pairs = list(zip(bn, plain))
    gaps = [100 * (b.final.test_accuracy - p.final.test_accuracy) for b, p in pairs]
    counts = {
        "bn_higher": sum(g > 0 for g in gaps),
        "loss_by_3": sum((loss_lower_from(b, p) or math.inf) <= 3 for b, p in pairs),
        "osc_more_plain": sum(oscillation(p) > oscillation(b) for b, p in pairs),
        "drops_more_plain": sum(drops(p) > drops(b) for b, p in pairs),
        "angle_more_plain": sum(mean_turning_angle(p) > mean_turning_angle(b)
                                for b, p in pairs),
    }
    for name, count in counts.items():
        facts[name] = count
        facts[f"{name}_verdict"] = prose.holds(count, n)
    facts.update(gap_min=min(gaps), gap_max=max(gaps))
    facts.update(gap_min_text=prose.number(min(gaps), "+.1f"),
                 gap_max_text=prose.number(max(gaps), "+.1f"))
    return facts


def _first_seed(first: Mapping[str, History]) -> dict:
    """The measures of the article's seed, one run per model."""
    facts = {}
    for name, history in first.items():
        facts[f"acc_{name}"] = history.final.test_accuracy
        facts[f"diff_{name}"] = 100 * (history.final.test_accuracy - ARTICLE_ACCURACY[name])
        facts[f"diff_{name}_text"] = prose.number(facts[f"diff_{name}"], "+.1f")
        facts[f"loss_{name}"] = history.final.train_loss
        facts[f"osc_{name}"] = 100 * oscillation(history)
        facts[f"drops_{name}"] = drops(history)
        facts[f"angle_{name}"] = mean_turning_angle(history)
        facts[f"length_{name}"] = path_length(history)
    bn, plain = first["with_bn"], first["without_bn"]
    lower_from = loss_lower_from(bn, plain)
    facts["gap_seed"] = 100 * (bn.final.test_accuracy - plain.final.test_accuracy)
    facts["gap_seed_text"] = prose.number(facts["gap_seed"], "+.1f")
    facts["length_ratio"] = path_length(bn) / path_length(plain)
    facts["lower_from_seed"] = lower_from or 0
    facts["loss_seed_phrase"] = _lower_from_phrase(lower_from)
    facts["loss_seed_vs_prose"] = _earlier_or_later(lower_from, ARTICLE_LOSS_LOWER_FROM_PROSE)
    return facts


def _lower_from_phrase(epoch: int | None) -> str:
    """``"from epoch 2 to the last"``, ``"at every epoch"``, or the failure of both."""
    if epoch is None:
        return "not at the last epoch"
    return "at every epoch" if epoch == 1 else f"from epoch {epoch} to the last"


def _earlier_or_later(epoch: int | None, reference: int) -> str:
    """How ``epoch`` compares with the article's ``reference`` epoch, as words."""
    if epoch is None:
        return "unlike the article, where it is lower at the end"
    return prose.comparison(epoch, reference, less="earlier than in the article's words",
                            more="later than in the article's words",
                            same="as in the article's words")


def _article(results: Mapping[str, Sequence[History]]) -> dict:
    """The article's own numbers: its reported accuracies, its curves' peak and loss."""
    accuracy, loss = article_curves("test_accuracy"), article_curves("train_loss")
    epochs, values = accuracy["without_bn"]
    peak = int(np.argmax(values))
    with_bn_at_peak = dict(zip(*accuracy["with_bn"]))[epochs[peak]]
    return {
        "article_with_bn": ARTICLE_ACCURACY["with_bn"],
        "article_without_bn": ARTICLE_ACCURACY["without_bn"],
        "article_gap": 100 * (ARTICLE_ACCURACY["with_bn"] - ARTICLE_ACCURACY["without_bn"]),
        "article_peak_without_bn": values[peak],
        "article_peak_epoch": epochs[peak],
        "article_gap_at_peak": 100 * (with_bn_at_peak - values[peak]),
        "article_loss_prose": ARTICLE_LOSS_LOWER_FROM_PROSE,
        "article_loss_from": loss_lower_from(loss["with_bn"][1], loss["without_bn"][1]) or 0,
        "article_loss_first_with_bn": loss["with_bn"][1][0],
        "article_loss_first_without_bn": loss["without_bn"][1][0],
    }


def _over_seeds(results: Mapping[str, Sequence[History]]) -> dict:
    """Mean, spread and range across seeds per model, and where the article's value lies."""
    facts = {}
    for row in summary(results):
        name = row["model"]
        facts[f"mean_{name}"] = row["final_accuracy_mean"]
        facts[f"std_{name}"] = 100 * row["final_accuracy_std"]
        facts[f"min_{name}"] = row["final_accuracy_min"]
        facts[f"max_{name}"] = row["final_accuracy_max"]
        facts[f"osc_mean_{name}"] = 100 * row["oscillation_mean"]
        facts[f"drops_mean_{name}"] = row["drops_mean"]
        facts[f"angle_mean_{name}"] = row["turning_angle_mean"]
        facts[f"article_band_{name}"] = prose.position(
            ARTICLE_ACCURACY[name], row["final_accuracy_min"], row["final_accuracy_max"])
    return facts
