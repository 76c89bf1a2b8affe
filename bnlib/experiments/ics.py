"""Chapter 01's experiment: internal covariate shift, measured, and Santurkar et al.'s critique.

Three versions of the sigmoid MLP of Ioffe & Szegedy's Figure 1 (``bnlib.models.sigmoid_mlp``)
train on the DHCD digits with plain SGD: without normalisation ("standard"), with BatchNorm1d
("BN") and with :class:`bnlib.nn.NoisyBatchNorm` ("noisy BN"). Seed 0 of each carries the
probes of :mod:`bnlib.probes` (percentiles of one sigmoid's input, Santurkar et al.'s
gradient ICS, the loss along the gradient); further seeds train without probes.

:func:`run` trains them (through :func:`bnlib.training.run_many`, so results are cached) and
:func:`findings` turns the results into the numbers and verdicts the chapter glues.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from bnlib import prose, training
from bnlib.data import load_hindi_digits
from bnlib.probes import ActivationPercentileProbe, ICSProbe, LandscapeProbe
from bnlib.seeds import summarize
from bnlib.settings import full_or_quick

__all__ = [
    "FULL",
    "NETWORKS",
    "QUICK",
    "SANTURKAR_NOISE",
    "Results",
    "Setting",
    "band_summary",
    "configs",
    "describe",
    "findings",
    "fixed_batches",
    "ics_verdict",
    "noisy_verdict",
    "probes",
    "relation",
    "run",
    "setting",
    "smoothness_verdict",
]

#: The three networks: name in the text -> ``norm`` of ``bnlib.models.sigmoid_mlp``.
NETWORKS = {"standard": None, "BN": "batch", "noisy BN": "noisy_batch"}
#: Short names of the networks in the findings' keys (``acc1_bn``, ``ics_late_std``, ...).
KEYS = {"standard": "std", "BN": "bn", "noisy BN": "noisy"}

#: Santurkar et al. (2018), Appendix A.2.1, Algorithm 1 ("Noisy" BatchNorm): for each unit j
#: and step t, mu ~ U(-n_mu, n_mu) and sigma ~ U(1, n_sigma); then for each activation a of
#: unit j, m ~ U(mu - r_mu, mu + r_mu), s ~ N(sigma, r_sigma) and a <- s * a + m. Their values.
SANTURKAR_NOISE = {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1}


@dataclasses.dataclass(frozen=True)
class Setting:
    """What the experiment trains: learning rate, epochs, training digits (None: all 17,000),
    measurement interval in steps, seeds (the first carries the probes)."""

    lr: float
    epochs: int
    train_subset: int | None
    every: int
    seeds: tuple[int, ...]
    batch_size: int = 60

    @property
    def steps(self) -> int:
        """Optimizer steps of one run."""
        n_train = self.train_subset or 17_000
        return math.ceil(n_train / self.batch_size) * self.epochs


FULL = Setting(lr=0.5, epochs=8, train_subset=None, every=40, seeds=(0, 1, 2))
QUICK = Setting(lr=0.5, epochs=2, train_subset=3000, every=10, seeds=(0, 1))


def setting() -> Setting:
    """:data:`QUICK` with ``BNBOOK_QUICK=1`` (Binder, quick checks), :data:`FULL` otherwise."""
    return full_or_quick(FULL, QUICK)


def describe(s: Setting) -> str:
    """The setting in a few short lines, for the reader."""
    digits = f"{s.train_subset:,}" if s.train_subset else "all 17,000"
    return (f"plain SGD, learning rate {s.lr}, batches of {s.batch_size}\n"
            f"{s.epochs} epochs over {digits} training digits: {s.steps:,} steps\n"
            f"measured every {s.every} steps; seeds {', '.join(map(str, s.seeds))}")


def configs(s: Setting) -> dict[str, training.RunConfig]:
    """One run configuration per network (seed ``s.seeds[0]``, test accuracy every
    ``s.every`` steps)."""
    return {
        name: training.RunConfig(
            model="sigmoid_mlp", model_kwargs={"norm": norm}, optimizer="sgd", lr=s.lr,
            batch_size=s.batch_size, epochs=s.epochs, seed=s.seeds[0],
            train_subset=s.train_subset, eval_every_steps=s.every, channels_last=False,
        )
        for name, norm in NETWORKS.items()
    }


def fixed_batches(seed: int = 0, size: int = 60) -> dict[str, torch.Tensor]:
    """Two fixed batches drawn once: ``train_x``, ``train_y`` (training digits, for the
    gradient measurements) and ``held_out`` (test digits, for the percentiles)."""
    x_train, y_train = load_hindi_digits("train")
    x_test, _ = load_hindi_digits("test")
    draw = torch.Generator().manual_seed(seed)
    train = torch.randperm(len(x_train), generator=draw)[:size]
    held_out = torch.randperm(len(x_test), generator=draw)[:size]
    return {"train_x": x_train[train], "train_y": y_train[train],
            "held_out": x_test[held_out]}


def probes(s: Setting, batches: Mapping[str, torch.Tensor]) -> list:
    """The three probes of the seed-0 runs: percentiles of sigmoid 0 of the last hidden layer
    (every ``s.every // 2`` steps), the gradient ICS of the middle hidden layer and the loss
    along the gradient for step sizes 0.25, 0.5, 1 and 2 times the learning rate."""
    x, y = batches["train_x"], batches["train_y"]
    return [
        ActivationPercentileProbe(batches["held_out"], unit=0, every=s.every // 2),
        ICSProbe(x, y, layer=1, lr=s.lr, every=s.every),
        LandscapeProbe(x, y, step_sizes=[s.lr * k for k in (0.25, 0.5, 1, 2)],
                       every=s.every),
    ]


@dataclasses.dataclass
class Results:
    """``histories``: network -> the seed-0 run with probes; ``by_seed``: network -> one
    history per seed of ``setting.seeds`` (the first is the seed-0 run)."""

    setting: Setting
    histories: dict[str, Any]
    by_seed: dict[str, list[Any]]


def run(s: Setting | None = None) -> Results:
    """Train every network of :data:`NETWORKS`: seed 0 with the probes, the other seeds
    without (results come from the cache when the code and configuration are unchanged)."""
    s = s or setting()
    runs = configs(s)
    watched = probes(s, fixed_batches())
    histories = dict(zip(runs, training.run_many(list(runs.values()), [watched] * len(runs))))
    more = [c.replace(seed=seed, eval_every_steps=None)
            for c in runs.values() for seed in s.seeds[1:]]
    extra = iter(training.run_many(more))
    by_seed = {name: [histories[name]] + [next(extra) for _ in s.seeds[1:]] for name in runs}
    return Results(s, histories, by_seed)


# ----------------------------------------------------------------------------- measures


def band_summary(
    result: Mapping[str, Sequence[float]], lower: str = "p15", middle: str = "p50",
    upper: str = "p85",
) -> dict[str, float]:
    """How wide and how steady a percentile band is (an ``ActivationPercentileProbe`` result).

    Returns ``median_width`` (median of ``upper - lower``), ``middle_range`` (max - min of
    ``middle``: how far the centre travelled) and ``middle_jitter`` (mean absolute change of
    ``middle`` between consecutive measurements). Units: those of the activation.
    """
    lo, mid, hi = (torch.tensor(result[k], dtype=torch.float64) for k in (lower, middle, upper))
    if len(mid) < 2:
        raise ValueError("band_summary needs at least two measurements")
    return {
        "median_width": float((hi - lo).median()),
        "middle_range": float(mid.max() - mid.min()),
        "middle_jitter": float(mid.diff().abs().mean()),
    }


def median_from(result: Mapping[str, Sequence[float]], key: str, from_step: float = 1) -> float:
    """Median of ``result[key]`` over the measurements taken at ``step >= from_step``."""
    values = [v for t, v in zip(result["step"], result[key]) if t >= from_step]
    if not values:
        raise ValueError(f"no measurement of {key!r} at step {from_step} or later")
    return statistics.median(values)


def largest_drop(values: Sequence[float]) -> float:
    """Largest fall between consecutive values (0 if the values never fall)."""
    return max([0.0] + [a - b for a, b in zip(values, values[1:])])


# ----------------------------------------------------------------------------- verdicts


def relation(a: float, b: float, spread: float) -> str:
    """``"level with"`` if ``|a - b| <= spread``, else ``"ahead of"`` (a > b) or ``"behind"``.

    ``spread`` is the seed-to-seed standard deviation (:attr:`bnlib.seeds.SeedSummary.tolerance`:
    0 with one seed): a difference within it is no difference."""
    if abs(a - b) <= spread:
        return "level with"
    return "ahead of" if a > b else "behind"


def ics_verdict(bn: float, standard: float) -> str:
    """What BN did to Santurkar et al.'s ICS, from the two networks' medians of
    ``||G - G'|| / ||G||`` over the second half of training: a verb phrase."""
    return prose.comparison(bn, standard, less="reduced", more="increased",
                            same="did not change")


def noisy_verdict(first: Mapping[str, float], spread: Mapping[str, float],
                  jitter: Mapping[str, float]) -> str:
    """What the noisy-BN experiment says, as Santurkar et al. read theirs: noisy BN against BN
    (did it keep BN's advantage?) and against the standard network, provided BN had an
    advantage and the noise made the distribution less steady than the standard network's.

    Args:
        first: network name -> mean test accuracy after one epoch over the seeds.
        spread: network name -> its sample standard deviation over the seeds (0 for one seed).
        jitter: network name -> mean step-to-step movement of the followed median.

    Returns:
        A clause (no capital, no final period); each outcome has its own.
    """
    def versus(a: str, b: str) -> str:
        return relation(first[a], first[b], max(spread[a], spread[b]))

    if versus("BN", "standard") != "ahead of":
        return ("BN had no head start over the standard network in these runs, so there was "
                "nothing for the noise to take away and the experiment is not a test")
    if jitter["noisy BN"] <= jitter["standard"]:
        return ("the noise did not make the sigmoid's input less steady than the standard "
                "network's, so these runs do not test the argument")
    if versus("noisy BN", "BN") != "behind":
        return (f"noisy BN kept BN's head start ({versus('noisy BN', 'BN')} BN) although "
                "its input moved more than the standard network's, as in Santurkar et "
                "al.'s experiment")
    if versus("noisy BN", "standard") == "ahead of":
        return ("noisy BN kept only part of BN's head start: behind BN, ahead of the "
                "standard network, so in these runs part of the advantage went with the "
                "stability")
    return ("the noise took away BN's head start, as the ICS hypothesis predicts and "
            "unlike in Santurkar et al.'s experiment")


#: The three smoothness measures, key in the findings -> words in the verdict.
SMOOTHNESS = {"loss_range": "the range of the loss", "grad_change": "the gradient change",
              "beta": "the effective beta-smoothness"}


def smoothness_verdict(bn: Mapping[str, float], standard: Mapping[str, float]) -> str:
    """Which of the three measures of :data:`SMOOTHNESS` are smaller with BN, as Santurkar
    et al. found all three (a tie counts as not smaller). A clause."""
    agree = [words for key, words in SMOOTHNESS.items() if bn[key] < standard[key]]
    disagree = [words for words in SMOOTHNESS.values() if words not in agree]
    if not disagree:
        return "all three measures agree with Santurkar et al."
    if not agree:
        return "none of the three measures agrees with Santurkar et al."
    verb = {1: ("agrees", "does"), 2: ("agree", "do")}
    return (f"{' and '.join(agree)} {verb[len(agree)][0]} with Santurkar et al., "
            f"{' and '.join(disagree)} {verb[len(disagree)][1]} not")


# ----------------------------------------------------------------------------- findings


def _accuracy_curve(history: Any) -> list[float]:
    return [e["test_accuracy"] for e in history.step_evals]


def findings(results: Results) -> dict[str, Any]:
    """The numbers and verdicts of chapter 01, by the names its prose glues."""
    s, histories = results.setting, results.histories
    n_train = s.train_subset or 17_000
    out: dict[str, Any] = {
        "lr": s.lr, "epochs": s.epochs, "n_train": n_train, "steps": s.steps,
        "every": s.every, "pct_every": s.every // 2, "n_seeds": len(s.seeds),
        "half": s.steps // 2, **{f"paper_{k}": v for k, v in SANTURKAR_NOISE.items()},
    }
    model = configs(s)["noisy BN"].build_model()
    noisy = next(m for m in model.modules() if hasattr(m, "mean_bound"))
    out["noise_mean_bound"], out["noise_var_bound"] = noisy.mean_bound, noisy.var_bound
    out["paper_shift_max"] = SANTURKAR_NOISE["n_mu"] + SANTURKAR_NOISE["r_mu"]
    bands = {n: band_summary(h.probes["percentiles"]) for n, h in histories.items()}
    first, spread, late, land = {}, {}, {}, {}
    for name, key in KEYS.items():
        h, runs = histories[name], results.by_seed[name]
        out[f"acc1_{key}"] = h.epochs[0].test_accuracy
        out[f"accF_{key}"] = h.final.test_accuracy
        out.update({f"{stat}_{key}": v for stat, v in bands[name].items()})
        out[f"drop_{key}"] = largest_drop(_accuracy_curve(h))
        for when, values in (("acc1", [r.epochs[0].test_accuracy for r in runs]),
                             ("accF", [r.final.test_accuracy for r in runs])):
            seed_summary = summarize(values)
            out[f"seed_{when}_{key}"] = seed_summary.mean
            out[f"seed_{when}_sd_{key}"] = seed_summary.sd
            if when == "acc1":
                first[name], spread[name] = seed_summary.mean, seed_summary.tolerance
        ics, r = h.probes["ics"], h.probes["landscape"]
        late[name] = median_from(ics, "relative", s.steps / 2)
        out[f"ics_late_{key}"] = late[name]
        out[f"ics_rel_{key}"] = median_from(ics, "relative")
        out[f"ics_cos_{key}"] = median_from(ics, "cosine")
        spans = [hi - lo for lo, hi in zip(r["loss_min"], r["loss_max"])]
        land[name] = {"loss_range": statistics.median(spans[1:]),
                      "grad_norm": median_from(r, "grad_norm"),
                      "grad_change": median_from(r, "grad_change_max"),
                      "beta": median_from(r, "beta_smoothness")}
        out.update({f"{stat}_{key}": v for stat, v in land[name].items()})
    bn, std = "BN", "standard"
    out["faster_word"] = prose.comparison(out["acc1_bn"], out["acc1_std"],
                                          "lower", "higher", "the same")
    out["range_word"] = prose.comparison(bands[bn]["middle_range"],
                                         bands[std]["middle_range"], "less", "more", "as much")
    out["width_word"] = prose.comparison(bands[bn]["median_width"],
                                         bands[std]["median_width"],
                                         "narrower", "wider", "as wide")
    out["ics_late_word"] = prose.comparison(late[bn], late[std], same="the same")
    out["ics_verdict"] = ics_verdict(late[bn], late[std])
    for stat in ("loss_range", "grad_change", "beta", "grad_norm"):
        out[f"{stat}_word"] = prose.comparison(land[bn][stat], land[std][stat], same="the same")
    out["smooth_verdict"] = smoothness_verdict(land[bn], land[std])
    jitter = {n: b["middle_jitter"] for n, b in bands.items()}
    out["noisy_verdict"] = noisy_verdict(first, spread, jitter)
    return out
