"""Chapter 6: the benefits claimed for batch normalization, measured one claim at a time.

Each claim is tested on the DHCD digits with and without BN, over several seeds:

1. higher learning rates: a log-spaced sweep of plain SGD's rate (:attr:`Setting.sweep_rates`);
2. faster convergence: steps to a fixed test accuracy, each network at its own best rate of the
   sweep and at the article's rate (0.001), read from the sweep's test curves;
3. initialisation: PyTorch's default initial weights scaled by :attr:`Setting.init_scales`;
4. depth and gradients: plain stacks of :attr:`Setting.depths` convolutions, each at the better
   of :attr:`Setting.depth_rates`; per-layer gradient norms at initialisation;
5. regularisation and dropout: the train/test gap; dropout before and after BN and the
   "variance shift" of Li et al. (2019) (:class:`bnlib.probes.VarianceShiftProbe`);
6. cost: BN's share of a training step's and an inference pass's time, unfolded and folded.

:func:`run` trains everything through :func:`bnlib.training.run_many` (one pool, cached) and
returns :class:`Results`, plain numbers only; :func:`findings` turns them into the numbers and
verdict words the chapter glues. Each verdict is one of :data:`VERDICTS`, decided by a small
function of numbers (``*_verdict``) tested branch by branch.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from bnlib import models, prose
from bnlib.data import load_hindi_digits
from bnlib.experiments.benefits_verdicts import (
    CONDITION, HOLDS, NOT_HERE, TRAINS_ACCURACY, VERDICTS, convergence_verdict, cost_verdict,
    deepest_trainable, depth_verdict, divergence_text, dropout_verdict, gradient_verdict,
    init_verdict, largest_trainable, learning_rate_verdict, rate_text, rates_text,
    confirmation_text, regularisation_verdict, speed_words, steps_text, steps_to, trains,
)
from bnlib.probes import DropoutVarianceProbe, VarianceShiftProbe, dropout_variance_ratio
from bnlib.seeds import summarize, tolerance
from bnlib.settings import full_or_quick, torch_threads
from bnlib.training import History, RunConfig, run_many

__all__ = [
    "ARTICLE_LR", "CONDITION", "FIXED_LR", "FULL", "HOLDS", "NETWORKS", "NOT_HERE", "QUICK",
    "TRAINS_ACCURACY", "VARIANTS", "VERDICTS", "Results", "Setting", "configs",
    "best_rate", "compared_rates", "cost_of_batch_norm", "findings", "images_seen",
    "layer_gradient_norms", "run", "setting",
    "summarise",
]

#: The two networks compared throughout, by the names chapter 5's CSV uses.
NETWORKS = ("without_bn", "with_bn")
#: The article's learning rate (plain SGD).
ARTICLE_LR = 0.001
#: The rate of the initialisation and regularisation runs: one at which both networks train.
FIXED_LR = 0.03
#: Dropout and BN combinations: variant -> (model keyword arguments).
VARIANTS = {
    "plain": {"batch_norm": False},
    "bn": {"batch_norm": True},
    "dropout": {"batch_norm": False, "dropout": 0.5, "placement": "blocks"},
    "dropout_before_bn": {"batch_norm": True, "dropout": 0.5, "placement": "blocks"},
    "dropout_after_bn": {"batch_norm": True, "dropout": 0.5, "placement": "head"},
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """Sizes of the experiment (training images are the first N of a seeded permutation)."""

    seeds: tuple[int, ...]
    test_subset: int
    sweep_rates: tuple[float, ...]
    sweep_subset: int
    sweep_epochs: int
    eval_every: int
    target_accuracy: float
    init_scales: tuple[float, ...]
    init_subset: int
    init_epochs: int
    depths: tuple[int, ...]
    depth_rates: tuple[float, ...]
    depth_subset: int
    depth_epochs: int
    regularisation_subset: int
    regularisation_epochs: int
    gradient_batch: int
    timing_repeats: int
    #: Seeds that played no part in choosing the regularisation and cost rules (which were
    #: tightened after the first full-setting results): the rules' confirmation.
    confirmation_seeds: tuple[int, ...] = ()


FULL = Setting(
    seeds=(0, 1, 2), test_subset=1000,
    sweep_rates=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), sweep_subset=4000,
    sweep_epochs=2, eval_every=25, target_accuracy=0.9,
    init_scales=(0.1, 0.3, 1.0, 3.0, 10.0), init_subset=4000, init_epochs=2,
    depths=(3, 6, 12, 24), depth_rates=(0.03, 0.3), depth_subset=4000, depth_epochs=2,
    regularisation_subset=2000, regularisation_epochs=8, gradient_batch=256,
    timing_repeats=30, confirmation_seeds=(3, 4, 5),
)
QUICK = Setting(
    seeds=(0, 1), test_subset=250,
    sweep_rates=(0.001, 0.01, 0.1, 1.0, 3.0), sweep_subset=800, sweep_epochs=1,
    eval_every=5, target_accuracy=0.5,
    init_scales=(0.1, 1.0, 10.0), init_subset=800, init_epochs=1,
    depths=(3, 6, 12), depth_rates=(0.1,), depth_subset=640, depth_epochs=1,
    regularisation_subset=400, regularisation_epochs=3, gradient_batch=64, timing_repeats=5,
    confirmation_seeds=(2, 3),
)


def setting() -> Setting:
    """:data:`QUICK` with ``BNBOOK_QUICK=1``, :data:`FULL` otherwise."""
    return full_or_quick(FULL, QUICK)


# --------------------------------------------------------------------------- the runs


def _steps(subset: int, epochs: int, batch_size: int = 32) -> int:
    return epochs * math.ceil(subset / batch_size)


def _config(s: Setting, model: str, kwargs: Mapping, lr: float, subset: int, epochs: int,
            seed: int, eval_every: int | None = None) -> RunConfig:
    return RunConfig(model=model, model_kwargs=dict(kwargs), lr=lr, epochs=epochs, seed=seed,
                     train_subset=subset, test_subset=s.test_subset, eval_every_steps=eval_every)


def configs(s: Setting) -> dict[str, list[RunConfig]]:
    """Every run of the chapter, by part: ``sweep``, ``init``, ``depth``, ``regularisation`` and
    ``confirmation`` (the regularisation runs again, on :attr:`Setting.confirmation_seeds`)."""
    bn = {name: {"batch_norm": name == "with_bn"} for name in NETWORKS}
    return {
        "sweep": [_config(s, "three_conv_net", bn[n], lr, s.sweep_subset, s.sweep_epochs, seed,
                          s.eval_every)
                  for n in NETWORKS for lr in s.sweep_rates for seed in s.seeds],
        "init": [_config(s, "scaled_init_net", {**bn[n], "init_scale": scale}, FIXED_LR,
                         s.init_subset, s.init_epochs, seed)
                 for n in NETWORKS for scale in s.init_scales for seed in s.seeds],
        "depth": [_config(s, "plain_conv_stack", {**bn[n], "depth": depth}, lr, s.depth_subset,
                          s.depth_epochs, seed)
                  for n in NETWORKS for depth in s.depths for lr in s.depth_rates
                  for seed in s.seeds],
        "regularisation": [_config(s, "dropout_conv_net", kwargs, FIXED_LR,
                                   s.regularisation_subset, s.regularisation_epochs, seed)
                           for kwargs in VARIANTS.values() for seed in s.seeds],
        "confirmation": [_config(s, "dropout_conv_net", kwargs, FIXED_LR,
                                 s.regularisation_subset, s.regularisation_epochs, seed)
                         for kwargs in VARIANTS.values() for seed in s.confirmation_seeds],
    }


def images_seen(s: Setting) -> int:
    """Training-image passes (forward and backward) of all runs together."""
    return sum(c.train_subset * c.epochs for part in configs(s).values() for c in part)


def _shift_images(count: int = 512) -> torch.Tensor:
    """A fixed random sample of test images (the stored test set is sorted by class)."""
    images, _ = load_hindi_digits("test")
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]]


@dataclasses.dataclass
class Results:
    """What :func:`run` measured, as plain numbers (lists are over seeds, in seed order).

    Attributes:
        setting: the :class:`Setting`.
        sweep: network -> rate -> ``{"accuracy": [...], "diverged": [...] (loss not finite),
            "steps": [...], "test_loss": [[...] per seed], "test_accuracy": [[...] per seed]}``
            (curves from step 0, every ``eval_every`` steps).
        init: network -> scale -> final test accuracies.
        depth: network -> depth -> rate -> final test accuracies.
        gradients: network -> depth -> per-convolution gradient norm at initialisation.
        regularisation: variant -> ``{"train": [...], "test": [...], "shift": [[per BN layer]
            per seed], "ratio": [[...]], "behind_dropout": [[per dropout layer] per seed]}``
            (train accuracy over the last epoch, train mode; ``behind_dropout``: dicts of
            :func:`bnlib.probes.dropout_variance`, for the "dropout before BN" network).
        cost: :func:`cost_of_batch_norm`'s dict.
        confirmation: as ``regularisation``, on the fresh seeds.
        cost_confirmation: a second, independent :func:`cost_of_batch_norm`.
    """

    setting: Setting
    sweep: dict
    init: dict
    depth: dict
    gradients: dict
    regularisation: dict
    cost: dict
    confirmation: dict
    cost_confirmation: dict


def _network(history: History) -> str:
    return NETWORKS[int(bool(history.config.kwargs.get("batch_norm", False)))]


def _curve(history: History, name: str) -> list[float]:
    return [history.initial[name]] + [e[name] for e in history.step_evals]


def summarise(s: Setting, histories: Mapping[str, Sequence[History]], gradients: dict,
              cost: dict, cost_confirmation: dict) -> Results:
    """:class:`Results` from the histories of :func:`configs`'s parts."""
    sweep: dict = {n: {} for n in NETWORKS}
    for h in histories["sweep"]:
        entry = sweep[_network(h)].setdefault(h.config.lr, {
            "accuracy": [], "diverged": [], "test_loss": [], "test_accuracy": [],
            "steps": [0] + [e["step"] for e in h.step_evals]})
        entry["accuracy"].append(h.final.test_accuracy)
        entry["diverged"].append(not math.isfinite(h.final.train_loss))
        entry["test_loss"].append(_curve(h, "test_loss"))
        entry["test_accuracy"].append(_curve(h, "test_accuracy"))
    init: dict = {n: {} for n in NETWORKS}
    for h in histories["init"]:
        init[_network(h)].setdefault(h.config.kwargs["init_scale"], []).append(
            h.final.test_accuracy)
    depth: dict = {n: {} for n in NETWORKS}
    for h in histories["depth"]:
        by_rate = depth[_network(h)].setdefault(h.config.kwargs["depth"], {})
        by_rate.setdefault(h.config.lr, []).append(h.final.test_accuracy)
    return Results(s, sweep, init, depth, gradients, _by_variant(histories["regularisation"]),
                   cost, _by_variant(histories["confirmation"]), cost_confirmation)


def _by_variant(histories: Sequence[History]) -> dict:
    """The regularisation runs' outcomes by variant (see :class:`Results`)."""
    out: dict = {}
    for h in histories:
        variant = next(v for v, kw in VARIANTS.items() if dict(kw) == h.config.kwargs)
        entry = out.setdefault(variant, {"train": [], "test": [], "shift": [], "ratio": [],
                                         "behind_dropout": []})
        entry["train"].append(h.final.train_accuracy)
        entry["test"].append(h.final.test_accuracy)
        layers = h.probes.get("variance_shift", {}).get("layers", [])
        entry["shift"].append([layer["shift"] for layer in layers])
        entry["ratio"].append([layer["ratio"] for layer in layers])
        entry["behind_dropout"].append(h.probes.get("dropout_variance", {}).get("layers", []))
    return out


def layer_gradient_norms(depth: int, batch_norm: bool, seed: int, images: torch.Tensor,
                         labels: torch.Tensor) -> list[float]:
    """Euclidean norm of each convolution's weight gradient (first to last), at initialisation,
    for one mini-batch in train mode: :func:`bnlib.models.plain_conv_stack` seeded by ``seed``."""
    torch.manual_seed(seed)
    model = models.plain_conv_stack(depth, batch_norm).train()
    nn.functional.cross_entropy(model(images), labels).backward()
    return [float(m.weight.grad.norm()) for m in model if isinstance(m, nn.Conv2d)]


def _gradients(s: Setting) -> dict:
    images, labels = load_hindi_digits("train")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    batch = pick[: s.gradient_batch]
    out: dict = {}
    with torch_threads(1):
        for n in NETWORKS:
            for depth in s.depths:
                norms = [layer_gradient_norms(depth, n == "with_bn", seed, images[batch],
                                              labels[batch]) for seed in s.seeds]
                out.setdefault(n, {})[depth] = [statistics.fmean(v) for v in zip(*norms)]
    return out


def cost_of_batch_norm(repeats: int, batch_size: int = 32, inference_batch: int = 256) -> dict:
    """Milliseconds of one SGD step (``batch_size`` images) and of one inference pass
    (``inference_batch`` images, eval mode) of the article's network without BN, with BN, and
    with BN folded into its convolutions (:func:`bnlib.inference.fold_all`), one thread,
    timed interleaved against the network without BN (:func:`bnlib.timing.interleaved`)."""
    from bnlib.inference import fold_all
    from bnlib.timing import interleaved

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 1, 32, 32, generator=generator)
    y = torch.randint(0, 10, (batch_size,), generator=generator)
    x_eval = torch.rand(inference_batch, 1, 32, 32, generator=generator)
    torch.manual_seed(0)
    nets = {n: models.three_conv_net(n == "with_bn") for n in NETWORKS}

    def step(net: nn.Module):
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)

        def one() -> None:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
        return one

    def infer(net: nn.Module):
        net.eval()
        return lambda: net(x_eval)

    with torch_threads(1):
        plain_train, bn_train, _ = interleaved(step(nets["without_bn"]), step(nets["with_bn"]),
                                               repeats)
        folded = fold_all(nets["with_bn"].eval())
        with torch.inference_mode():
            plain_eval, bn_eval, _ = interleaved(infer(nets["without_bn"]),
                                                 infer(nets["with_bn"]), repeats)
            plain_eval_2, folded_eval, _ = interleaved(infer(nets["without_bn"]), infer(folded),
                                                       repeats)
    return {"train_ms": {"without_bn": plain_train * 1e3, "with_bn": bn_train * 1e3},
            "inference_ms": {"without_bn": plain_eval * 1e3, "with_bn": bn_eval * 1e3},
            "folded_ms": {"without_bn": plain_eval_2 * 1e3, "folded": folded_eval * 1e3},
            "batch_size": batch_size, "inference_batch": inference_batch}


def run(s: Setting | None = None, workers: int | None = None, cache: bool = True) -> Results:
    """Train every run of :func:`configs` in one :func:`bnlib.training.run_many` pool, measure
    gradients at initialisation and the cost; return :class:`Results`."""
    s = s or setting()
    parts = configs(s)
    images = _shift_images()
    probes = {part: [[] for _ in runs] for part, runs in parts.items()}
    for part in ("regularisation", "confirmation"):
        probes[part] = [_regularisation_probes(c, images) for c in parts[part]]
    flat = [c for part in parts.values() for c in part]
    flat_probes = [p for part in parts for p in probes[part]]
    histories = run_many(flat, flat_probes, workers=workers, cache=cache)
    split, start = {}, 0
    for part, runs in parts.items():
        split[part], start = histories[start:start + len(runs)], start + len(runs)
    cost = cost_of_batch_norm(s.timing_repeats)
    return summarise(s, split, _gradients(s), cost, cost_of_batch_norm(s.timing_repeats))


def _regularisation_probes(c: RunConfig, images: torch.Tensor) -> list:
    """The variance shift of every BN network; the variance right behind dropout where dropout
    feeds a convolution and its BN (the "dropout before BN" network)."""
    last = _steps(c.train_subset, c.epochs)
    probes = [VarianceShiftProbe(images, last)] if c.kwargs["batch_norm"] else []
    if c.kwargs["batch_norm"] and c.kwargs.get("placement") == "blocks":
        probes.append(DropoutVarianceProbe(images, last))
    return probes



# --------------------------------------------------------------------------- findings

_TAGS = {"without_bn": "plain", "with_bn": "bn"}


def best_rate(by_rate: Mapping[float, Mapping]) -> float:
    """The sweep's rate with the highest mean final test accuracy (the smaller one on a tie)."""
    return max(sorted(by_rate),
               key=lambda lr: statistics.fmean(by_rate[lr]["accuracy"]))


def compared_rates(results: Results) -> dict[str, list[float]]:
    """Network -> [its best rate, the article's rate] (the latter only if it was swept)."""
    best = {n: best_rate(by_rate) for n, by_rate in results.sweep.items()}
    return {n: [best[n]] + ([ARTICLE_LR] if ARTICLE_LR in by_rate and ARTICLE_LR != best[n]
                            else [])
            for n, by_rate in results.sweep.items()}


def _learning_rates(r: Results, f: dict) -> dict:
    """Claims 1 and 2: the sweep, the largest rate that trains, steps to the target."""
    s, found = r.setting, {}
    for n, tag in _TAGS.items():
        by_rate = {lr: e["accuracy"] for lr, e in r.sweep[n].items()}
        best = best_rate(r.sweep[n])
        largest, fails = largest_trainable(by_rate)
        f[f"best_lr_{tag}"] = best
        best_runs = summarize(by_rate[best])
        f[f"best_acc_{tag}"], f[f"best_sd_{tag}"] = best_runs.mean, best_runs.sd
        f[f"largest_lr_{tag}"] = rate_text(largest, "none")
        f[f"fails_at_{tag}"] = rate_text(fails, "none")
        f[f"divergence_{tag}"] = divergence_text(largest, fails)
        f[f"diverged_{tag}"] = sum(sum(e["diverged"]) for e in r.sweep[n].values())
        found[tag] = {"largest": largest, "fails": fails}
        for when, lr in (("tuned", best), ("article", ARTICLE_LR)):
            entry = r.sweep[n].get(lr)
            if entry is None:  # the article's rate is not in this sweep
                found[tag][when], f[f"steps_{when}_{tag}"] = math.nan, "not measured"
                continue
            steps = [steps_to(entry["steps"], curve, s.target_accuracy)
                     for curve in entry["test_accuracy"]]
            found[tag][when], f[f"steps_{when}_{tag}"] = steps_text(steps)
    bn, plain = found["bn"], found["plain"]
    f["verdict_lr"] = learning_rate_verdict(
        *({lr: e["accuracy"] for lr, e in r.sweep[n].items()} for n in ("with_bn", "without_bn")))
    f["verdict_speed"] = convergence_verdict(bn["tuned"], plain["tuned"], bn["article"],
                                             plain["article"])
    f["tuned_word"] = speed_words(bn["tuned"], plain["tuned"])
    f["article_word"] = speed_words(bn["article"], plain["article"])
    return f


def _init_and_depth(r: Results, f: dict) -> dict:
    """Claims 3 and 4: initial-weight scales, depth, gradients at initialisation."""
    s, counts, deepest, orders = r.setting, {}, {}, {}
    for n, tag in _TAGS.items():
        counts[tag] = sum(trains(accuracies) for accuracies in r.init[n].values())
        f[f"init_trained_{tag}"] = counts[tag]
        f[f"init_worst_{tag}"] = min(statistics.fmean(a) for a in r.init[n].values())
        best = {d: max(by_rate.values(), key=statistics.fmean)
                for d, by_rate in r.depth[n].items()}
        deepest[tag] = best
        deepest_depth = deepest_trainable(best)
        f[f"deepest_{tag}"] = "none" if deepest_depth is None else str(deepest_depth)
        deepest_runs = summarize(best[max(s.depths)])
        f[f"acc_deepest_{tag}"], f[f"sd_deepest_{tag}"] = deepest_runs.mean, deepest_runs.sd
        norms = r.gradients[n][max(s.depths)]
        orders[tag] = math.log10(max(norms) / min(norms))
        f[f"grad_orders_{tag}"] = orders[tag]
        f[f"grad_first_last_{tag}"] = norms[0] / norms[-1]
        f[f"grad_word_{tag}"] = prose.comparison(norms[0], norms[-1], "smaller", "larger",
                                                 "neither smaller nor larger")
    f["verdict_init"] = init_verdict(counts["bn"], counts["plain"], len(s.init_scales))
    f["verdict_depth"] = depth_verdict(deepest["bn"], deepest["plain"])
    f["verdict_gradients"] = gradient_verdict(orders["bn"], orders["plain"])
    return f


def _behind_dropout(per_seed: Sequence[Sequence[float]]) -> float:
    """Mean over seeds and over the BN layers that follow a dropout layer in the "blocks"
    placement (all but the first BN); ``nan`` for a network without BN."""
    values = [v for layers in per_seed for v in layers[1:]]
    return statistics.fmean(values) if values else math.nan


def _regularisation(reg: Mapping[str, Mapping], tag: str = "") -> dict:
    """Claim 5 from one set of regularisation runs (train/test gap, dropout, variance shift);
    every key ends in ``tag`` ("" for the first seeds, "_fresh" for the confirmation)."""
    f: dict = {}
    gaps = {}
    for variant, entry in reg.items():
        test = summarize(entry["test"])
        gaps[variant] = summarize(a - b for a, b in zip(entry["train"], entry["test"]))
        f[f"test_{variant}{tag}"], f[f"test_sd_{variant}{tag}"] = test.mean, test.sd
        f[f"train_{variant}{tag}"] = statistics.fmean(entry["train"])
        f[f"gap_{variant}{tag}"] = f[f"train_{variant}{tag}"] - f[f"test_{variant}{tag}"]
        f[f"gap_points_{variant}{tag}"] = 100 * f[f"gap_{variant}{tag}"]
        f[f"gap_sd_{variant}{tag}"] = gaps[variant].sd
    for variant in ("bn", "dropout_before_bn", "dropout_after_bn"):
        f[f"shift_{variant}{tag}"] = _behind_dropout(reg[variant]["shift"])
        f[f"ratio_{variant}{tag}"] = _behind_dropout(reg[variant]["ratio"])
    f[f"gap_spread{tag}"] = tolerance(gaps["bn"], gaps["plain"])
    f[f"gap_spread_points{tag}"] = 100 * f[f"gap_spread{tag}"]
    f[f"verdict_regularisation{tag}"] = regularisation_verdict(
        f[f"gap_bn{tag}"], f[f"gap_plain{tag}"], f[f"test_bn{tag}"], f[f"test_dropout{tag}"],
        f[f"gap_spread{tag}"])
    f[f"verdict_dropout{tag}"] = dropout_verdict(
        f[f"shift_dropout_before_bn{tag}"], f[f"shift_dropout_after_bn{tag}"],
        f[f"test_dropout_before_bn{tag}"], f[f"test_dropout_after_bn{tag}"])
    return f


def _cost(c: Mapping, tag: str = "") -> dict:
    """Claim 6 from one timing run; every key ends in ``tag``."""
    f = {f"train_ms_plain{tag}": c["train_ms"]["without_bn"],
         f"train_ms_bn{tag}": c["train_ms"]["with_bn"],
         f"infer_ms_plain{tag}": c["inference_ms"]["without_bn"],
         f"infer_ms_bn{tag}": c["inference_ms"]["with_bn"],
         f"infer_ms_folded{tag}": c["folded_ms"]["folded"]}
    f[f"train_share{tag}"] = 1 - f[f"train_ms_plain{tag}"] / f[f"train_ms_bn{tag}"]
    f[f"infer_share{tag}"] = 1 - f[f"infer_ms_plain{tag}"] / f[f"infer_ms_bn{tag}"]
    f[f"folded_share{tag}"] = 1 - c["folded_ms"]["without_bn"] / c["folded_ms"]["folded"]
    f[f"verdict_cost{tag}"] = cost_verdict(f[f"train_share{tag}"], f[f"folded_share{tag}"])
    return f


def _behind_dropout_layers(reg: Mapping[str, Mapping]) -> dict:
    """The variance ratio right behind dropout in the "dropout before BN" network, measured and
    as the formula predicts from each channel's mean and variance (means over seeds and
    dropout layers; ``nan`` if not measured); and the formula's two reference values."""
    layers = [layer for per_seed in reg["dropout_before_bn"].get("behind_dropout", [])
              for layer in per_seed]
    keep = 1 - VARIANTS["dropout_before_bn"]["dropout"]
    relu_mean, relu_var = 1 / math.sqrt(2 * math.pi), 0.5 - 1 / (2 * math.pi)  # ReLU of N(0, 1)
    return {"keep": keep, "relu_mean_sq_over_var": relu_mean ** 2 / relu_var,
            "dropout_ratio_centred": dropout_variance_ratio(keep, 0.0, 1.0),
            "dropout_ratio_relu": dropout_variance_ratio(keep, relu_mean, relu_var),
            "behind_measured": (statistics.fmean(x["measured"] for x in layers) if layers
                                else math.nan),
            "behind_predicted": (statistics.fmean(x["predicted"] for x in layers) if layers
                                 else math.nan)}


def _regularisation_and_cost(r: Results, f: dict) -> dict:
    """Claims 5 and 6, on the first seeds and timing and on their confirmation."""
    f |= _regularisation(r.regularisation) | _regularisation(r.confirmation, "_fresh")
    f |= _cost(r.cost) | _cost(r.cost_confirmation, "_fresh")
    f |= _behind_dropout_layers(r.regularisation)
    f["fresh_seeds"] = ", ".join(map(str, r.setting.confirmation_seeds))
    f["n_fresh"] = len(r.setting.confirmation_seeds)
    for claim in ("regularisation", "dropout", "cost"):
        f[f"confirmed_{claim}"] = confirmation_text(f[f"verdict_{claim}"],
                                                    f[f"verdict_{claim}_fresh"])
    return f


def _measured(f: dict) -> dict:
    """One line per claim for the summary table."""
    return {
        "measured_lr": f"largest rate that trains: {f['largest_lr_bn']} with BN, "
                       f"{f['largest_lr_plain']} without",
        "measured_speed": f"steps to {f['target']:.0%} at each best rate: "
                          f"{f['steps_tuned_bn']} with BN, {f['steps_tuned_plain']} without",
        "measured_init": f"trains at {f['init_trained_bn']} of {f['n_scales']} scales with BN, "
                         f"{f['init_trained_plain']} without",
        "measured_depth": f"deepest stack that trains: {f['deepest_bn']} with BN, "
                          f"{f['deepest_plain']} without",
        "measured_gradients": f"gradient norms span {f['grad_orders_bn']:.1f} orders of "
                              f"magnitude with BN, {f['grad_orders_plain']:.1f} without",
        "measured_regularisation": f"train/test gap {prose.number(f['gap_points_bn'], '.1f')} "
                                   f"points with BN, {prose.number(f['gap_points_plain'], '.1f')} "
                                   f"without (seeds vary by {f['gap_spread_points']:.1f}); "
                                   f"fresh seeds: {f['verdict_regularisation_fresh']}",
        "measured_dropout": f"variance shift {f['shift_dropout_before_bn']:.2f} behind dropout, "
                            f"{f['shift_dropout_after_bn']:.2f} with dropout after BN",
        "measured_cost": f"{f['train_share']:.0%} of a training step, "
                         f"{f['folded_share']:.0%} of a folded inference pass; fresh timing: "
                         f"{f['verdict_cost_fresh']}",
    }


def findings(results: Results) -> dict:
    """Every number and verdict word chapter 6 glues (verdicts: one of :data:`VERDICTS`)."""
    s = results.setting
    f = {"n_seeds": len(s.seeds), "n_rates": len(s.sweep_rates),
         "sweep_low": min(s.sweep_rates), "sweep_high": max(s.sweep_rates),
         "sweep_images": s.sweep_subset, "sweep_epochs": s.sweep_epochs,
         "sweep_steps": _steps(s.sweep_subset, s.sweep_epochs), "eval_every": s.eval_every,
         "test_images": s.test_subset, "trains_accuracy": TRAINS_ACCURACY,
         "target": s.target_accuracy, "article_lr": ARTICLE_LR, "fixed_lr": FIXED_LR,
         "n_scales": len(s.init_scales), "scale_low": min(s.init_scales),
         "scale_high": max(s.init_scales), "init_images": s.init_subset,
         "init_epochs": s.init_epochs, "depths": ", ".join(map(str, s.depths)),
         "deepest_tried": max(s.depths), "depth_rates": rates_text(s.depth_rates),
         "depth_images": s.depth_subset, "depth_epochs": s.depth_epochs,
         "reg_images": s.regularisation_subset, "reg_epochs": s.regularisation_epochs,
         "dropout": VARIANTS["dropout"]["dropout"], "images_seen": images_seen(s)}
    _learning_rates(results, f)
    _init_and_depth(results, f)
    _regularisation_and_cost(results, f)
    f.update(_measured(f))
    return f
