"""Chapter 04's experiment: batch norm when the batches get small (after Wu & He 2018).

The network of the book (the article's three convolutions) is trained on the DHCD digits with
batch norm whose statistics cover only k images, for several k, beside group norm and batch
renorm. Two designs of "small batches" are run:

* **ghost batches** (Hoffer et al. 2017): the optimiser batch stays 32 images, but each batch
  norm layer computes its statistics over consecutive groups of k of them; only the
  normalisation changes;
* **real batches of k** with the learning rate scaled linearly and the same epochs: Wu & He's
  design (8 GPUs of k images each, learning rate 0.1 * k / 32), where the optimisation changes
  with k as well.

:func:`run` trains (or reads from the cache) every run of a setting (:data:`SETTINGS`),
:func:`summarise` groups them by method and k, and :func:`findings` turns the results of the
whole chapter (identities, invariances, this experiment) into the numbers and words it glues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bnlib.prose import number
from bnlib.seeds import SeedSummary, summarize
from bnlib.settings import full_or_quick
from bnlib.experiments.variant_identities import BA_2016_TABLE

if TYPE_CHECKING:
    from bnlib.training import RunConfig

__all__ = [
    "BN_GHOST",
    "BN_SMALL",
    "BRN_GHOST",
    "GN",
    "IOFFE_2017_SCHEDULE",
    "RENORM_LIMITS",
    "SETTINGS",
    "WU_HE_2018", "WU_HE_2018_COCO",
    "agreement_word",
    "batch_size_configs",
    "batch_size_experiment",
    "change_phrase",
    "findings",
    "gn_verdict",
    "renorm_verdict",
    "run",
    "seeds_phrase",
    "shape_word",
    "summarise",
    "worst_phrase",
]

#: Method name, in the experiment's rows, of batch norm over ghost batches of k images.
BN_GHOST = "batch norm"
#: Method name of group norm (independent of k; its rows have k = 0).
GN = "group norm"
#: Method name of batch renorm over ghost batches of k images.
BRN_GHOST = "batch renorm"
#: Method name of plain batch norm trained with real mini-batches of k images (learning rate
#: scaled by k / 32, same epochs): Wu & He's design.
BN_SMALL = "batch norm, real batch of k"

#: Our batch renorm limits, reached after one epoch of linear relaxation from (1, 0).
RENORM_LIMITS = {"rmax": 3.0, "dmax": 5.0}

#: The full setting (the published numbers) and the short one (``BNBOOK_QUICK=1``) of
#: :func:`batch_size_configs`; k = 1 goes one step beyond Wu & He's smallest size, 2.
SETTINGS = {
    "full": {"sizes": (32, 16, 8, 4, 2, 1), "renorm_sizes": (2, 1), "real_sizes": (8, 2),
             "seeds": (0, 1), "train_subset": 3000, "epochs": 3},
    "short": {"sizes": (32, 4, 2, 1), "renorm_sizes": (2, 1), "real_sizes": (2,),
              "seeds": (0,), "train_subset": 1000, "epochs": 2},
}

#: Wu & He (2018), ResNet-50 on ImageNet, 8 GPUs, 100 epochs: validation error (%) against
#: images per GPU, their Table 2 (batch norm and group norm); and batch renorm tuned to
#: r_max = 1.5, d_max = 0.5 at 4 images per GPU (their Section 4.1); instance norm's error at
#: 32 images per GPU (Table 2), which Section 4.1 compares with batch norm at 2.
#: Cited, not measured here.
WU_HE_2018 = {
    "batch norm": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
    "group norm": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1},
    "batch renorm": {4: 26.3},
    "renorm limits": {"rmax": 1.5, "dmax": 0.5},
    "instance norm": 28.4,
}

#: Wu & He (2018), Section 4.2, Mask R-CNN on COCO fine-tuned with 1 image per GPU: group norm's
#: gain in average precision (points) over batch norm frozen at its pre-trained statistics
#: (BN*), with the C4 backbone and with FPN and the long schedule (Table 6); and the loss
#: (about 6 AP, batch size 2) of fine-tuning batch norm instead of freezing it.
WU_HE_2018_COCO = {"c4_box": 1.1, "c4_mask": 0.8, "fpn_long_box": 2.2, "fpn_long_mask": 1.6,
                   "finetuned_bn_loss": 6}

#: Ioffe (2017), Section 4.1: batch renorm held at r_max = 1, d_max = 0 (batch norm) for the
#: first 5,000 steps, then relaxed to reach d_max = 5 at 25,000 steps and r_max = 3 at 40,000.
IOFFE_2017_SCHEDULE = {"hold_steps": 5000, "rmax": 3.0, "rmax_steps": 40000,
                       "dmax": 5.0, "dmax_steps": 25000}

def batch_size_configs(
    sizes: Sequence[int] = (32, 16, 8, 4, 2),
    renorm_sizes: Sequence[int] = (4, 2),
    real_sizes: Sequence[int] = (),
    seeds: Sequence[int] = (0,),
    train_subset: int | None = 4000,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 0.01,
    momentum: float = 0.9,
    groups: int = 4,
) -> list[tuple[str, int, RunConfig]]:
    """The runs of chapter 04's batch-size experiment, as ``(method, k, config)`` triples.

    Every run trains the article's three-conv net with the same optimiser (SGD with momentum,
    ``lr``), the same mini-batch of ``batch_size`` images, the same steps and data; only the set of
    images each normalisation layer averages over changes:

    * :data:`BN_GHOST`: batch norm with statistics over ghost batches of k images, k in ``sizes``;
    * :data:`GN`: group norm (``groups`` groups; independent of k, run once, drawn as a flat line);
    * :data:`BRN_GHOST`: batch renorm (:data:`RENORM_LIMITS`, relaxed from (1, 0) over the first
      epoch)
      over ghost batches of k, k in ``renorm_sizes`` (``norm="ghost_batch"`` with ``rmax``,
      ``dmax``);
    * :data:`BN_SMALL`: plain batch norm trained with real mini-batches of k images, k in
      ``real_sizes``, with the learning rate scaled by k / batch_size and the same epochs (so
      batch_size / k times more steps): Wu & He's design, where the optimiser batch shrank with
      the images per GPU and the learning rate was scaled linearly.
    """
    from bnlib.training import RunConfig

    base = RunConfig(model="three_conv_net", optimizer="momentum", lr=lr, momentum=momentum,
                     batch_size=batch_size, epochs=epochs, train_subset=train_subset)
    steps_per_epoch = -(-(train_subset or 17000) // batch_size)
    out = []
    for seed in seeds:
        for k in sizes:
            if k > batch_size or k < 1:
                raise ValueError(
                    f"ghost batch size {k} must be in 1..{batch_size} (the mini-batch)"
                )
            kwargs = {"norm": "ghost_batch", "norm_options": {"ghost_batch_size": k}}
            out.append((BN_GHOST, k, base.replace(model_kwargs=kwargs, seed=seed)))
        gn_kwargs = {"norm": "group", "groups": groups}
        out.append((GN, 0, base.replace(model_kwargs=gn_kwargs, seed=seed)))
        for k in renorm_sizes:
            options = {"ghost_batch_size": k, **RENORM_LIMITS, "warmup_steps": steps_per_epoch}
            kwargs = {"norm": "ghost_batch", "norm_options": options}
            out.append((BRN_GHOST, k, base.replace(model_kwargs=kwargs, seed=seed)))
        for k in real_sizes:
            out.append((BN_SMALL, k, base.replace(model_kwargs={"norm": "batch"}, seed=seed,
                                                  batch_size=k, lr=lr * k / batch_size)))
    return out


def batch_size_experiment(
    configs: Sequence[tuple[str, int, RunConfig]], workers: int | None = None
) -> list[dict]:
    """Run (or read from the cache) every configuration of :func:`batch_size_configs`, in parallel.

    Returns one row per run: ``method``, ``k`` (0 for group norm), ``seed``, ``test_error``
    (fraction misclassified on the 3,000 test images, eval mode, after the last epoch),
    ``train_loss`` (last epoch, nats), ``seconds``, ``cached``.
    """
    from bnlib.training import run_many

    histories = run_many([config for _, _, config in configs], workers=workers)
    return [
        {"method": method, "k": k, "seed": config.seed, "test_error": 1.0 - h.final.test_accuracy,
         "train_loss": h.final.train_loss, "seconds": h.total_seconds, "cached": h.cached}
        for (method, k, config), h in zip(configs, histories)
    ]


def summarise(rows: Sequence[dict], key: str = "test_error") -> dict[tuple[str, int], SeedSummary]:
    """``{(method, k): SeedSummary}`` of ``key`` over seeds (:func:`bnlib.seeds.summarize`: the
    mean, the sample standard deviation, nan for one seed, and the range)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["k"]), []).append(float(row[key]))
    return {group: summarize(values) for group, values in groups.items()}


def run(setting: str | None = None, workers: int | None = None) -> dict:
    """Train (or read from the cache) every run of :data:`SETTINGS` ``[setting]`` (default: the
    full setting, or the short one under ``BNBOOK_QUICK=1``).

    Returns ``{"setting_name", "setting", "rows"}`` (``rows`` from :func:`batch_size_experiment`).
    """
    name = setting or full_or_quick("full", "short")
    chosen = SETTINGS[name]
    rows = batch_size_experiment(batch_size_configs(**chosen), workers=workers)
    return {"setting_name": name, "setting": chosen, "rows": rows}


# --------------------------------------------------------------------------- verdicts


def change_phrase(before: SeedSummary, after: SeedSummary) -> str:
    """Words for how a test error moved from one group of runs to another, each summarised by
    :func:`summarise` (:class:`~bnlib.seeds.SeedSummary` of fractions).

    A change counts as a rise (or fall) only when every seed of ``after`` lies above (or below)
    every seed of ``before``: "rose by 1.2 percentage points in every seed"; otherwise the seeds'
    ranges overlap: "changed by +0.3 percentage points, with the seeds' ranges overlapping".
    With one seed per group, any difference counts ("... (one seed)"), and equal errors are
    "did not change".
    """
    change = (after.mean - before.mean) * 100
    qualifier = _qualifier(before, after)
    amount = f"{abs(change):.1f}" if abs(change) >= 0.05 else "less than 0.1"
    if after.low > before.high:
        return f"rose by {amount} percentage points {qualifier}"
    if after.high < before.low:
        return f"fell by {amount} percentage points {qualifier}"
    if max(before.n, after.n) == 1:
        return "did not change (one seed)"
    return (f"changed by {number(change, '+.1f')} percentage points, with the seeds' ranges "
            "overlapping")


def _qualifier(a: SeedSummary, b: SeedSummary) -> str:
    """"(one seed)" when neither group has more than one seed, else "in every seed"."""
    return "(one seed)" if max(a.n, b.n) == 1 else "in every seed"


def renorm_verdict(bn: SeedSummary, brn: SeedSummary, k: int) -> str:
    """Batch renorm against batch norm over the same groups of ``k`` images (summaries):
    "helped" or "hurt" only when every seed of one lies beyond every seed of the other."""
    if brn.high < bn.low:
        return f"helped at k = {k} {_qualifier(bn, brn)}"
    if brn.low > bn.high:
        return f"hurt at k = {k} {_qualifier(bn, brn)}"
    return f"made no clear difference at k = {k}"


def gn_verdict(gn: SeedSummary, bn: SeedSummary) -> str:
    """Group norm against batch norm at full size (summaries), seed ranges compared."""
    if gn.low > bn.high:
        return f"worse than batch norm at full size {_qualifier(gn, bn)}"
    if gn.high < bn.low:
        return f"better than batch norm at full size {_qualifier(gn, bn)}"
    return "about as good as batch norm at full size (the seeds' ranges overlap)"


def shape_word(ours: float, theirs: float) -> str:
    """How our relative rise of batch norm's error (from k = 32 to 2) compares with Wu & He's
    (both fractions of the error at 32)."""
    if ours <= 0:
        return "no rise at all"
    if ours < theirs / 3:
        return "a far milder rise than theirs"
    if ours < theirs:
        return "a milder rise than theirs"
    return "a rise as steep as theirs or steeper"


def worst_phrase(worst_k: int) -> str:
    """Whether k = 1 is where batch norm's error is highest (``worst_k``: the k that is)."""
    if worst_k == 1:
        return "where our batch norm is hurt most"
    return f"not where our batch norm is hurt most (that is k = {worst_k})"


def agreement_word(agree: int, cells: int) -> str:
    """"all" when every measured cell agrees with the published table, else "only"."""
    return "all" if agree == cells else "only"


def seeds_phrase(seeds: int) -> str:
    """"1 seed", "2 seeds"."""
    return f"{seeds} seed" if seeds == 1 else f"{seeds} seeds"


# --------------------------------------------------------------------------- findings


def _invariance_findings(results: Mapping[str, Any], tolerance: float = 1e-8) -> dict:
    differences = results["differences"]
    measured = {}
    for (method, name), value in differences.items():
        measured.setdefault(method, []).append(value < tolerance)
    cells = [(m, j) for m in measured for j in range(len(measured[m]))]
    agree = sum(measured[m][j] == BA_2016_TABLE[m][j] for m, j in cells)
    small = [v for v in differences.values() if v < tolerance]
    large = [v for v in differences.values() if v >= tolerance]
    return {"identity_max": max(results["identities"].values()),
            "namesake_max": max(results["namesakes"].values()),
            "inv_agree": agree, "inv_cells": len(cells),
            "inv_agree_word": agreement_word(agree, len(cells)),
            "inv_small_max": max(small), "inv_large_min": min(large)}


def _sources() -> dict:
    bn, gn = WU_HE_2018["batch norm"], WU_HE_2018["group norm"]
    out = {f"wh_bn_{k}": v for k, v in bn.items()}
    out |= {f"wh_gn_{k}": v for k, v in gn.items()}
    out |= {"wh_gn_min": min(gn.values()), "wh_gn_max": max(gn.values()),
            "wh_brn_4": WU_HE_2018["batch renorm"][4],
            "wh_brn_rmax": WU_HE_2018["renorm limits"]["rmax"],
            "wh_brn_dmax": WU_HE_2018["renorm limits"]["dmax"],
            "wh_in": WU_HE_2018["instance norm"],
            "wh_rel": (bn[2] - bn[32]) / bn[32]}
    out |= {f"ioffe_{name}": value for name, value in IOFFE_2017_SCHEDULE.items()}
    out |= {f"wh_coco_{name}": value for name, value in WU_HE_2018_COCO.items()}
    return out


def _experiment_findings(results: Mapping[str, Any]) -> dict:
    setting, rows = results["setting"], results["rows"]
    summary = summarise(rows)
    error = {group: s.mean for group, s in summary.items()}
    sizes = sorted(setting["sizes"], reverse=True)
    largest, control = sizes[0], min(setting["real_sizes"])
    big = summary[(BN_GHOST, largest)]

    def change(before: tuple[str, int], after: tuple[str, int]) -> str:
        return change_phrase(summary[before], summary[after])

    ours = (error[(BN_GHOST, 2)] - error[(BN_GHOST, largest)]) / error[(BN_GHOST, largest)]
    steps = setting["epochs"] * -(-setting["train_subset"] // 32)
    out = {
        "setting_name": results["setting_name"], "n_runs": len(rows),
        "seeds_phrase": seeds_phrase(len(setting["seeds"])),
        "subset": setting["train_subset"], "epochs": setting["epochs"], "steps": steps,
        "steps_per_epoch": -(-setting["train_subset"] // 32),
        "minutes": sum(r["seconds"] for r in rows) / 60,
        "brn_rmax": RENORM_LIMITS["rmax"], "brn_dmax": RENORM_LIMITS["dmax"],
        "largest": largest, "bn_large": error[(BN_GHOST, largest)],
        "bn_2": error[(BN_GHOST, 2)], "bn_1": error[(BN_GHOST, 1)], "gn_err": error[(GN, 0)],
        "bn_2_phrase": change((BN_GHOST, largest), (BN_GHOST, 2)),
        "bn_1_phrase": change((BN_GHOST, largest), (BN_GHOST, 1)),
        "gn_vs_bn": change((BN_GHOST, largest), (GN, 0)),
        "gn_word": gn_verdict(summary[(GN, 0)], big),
        "our_rel": ours, "our_rel_text": number(ours, "+.0%"), "shape_word": shape_word(ours, _sources()["wh_rel"]),
        "worst_phrase": worst_phrase(max(sizes, key=lambda k: error[(BN_GHOST, k)])),
        "brn_word": " and ".join(renorm_verdict(summary[(BN_GHOST, k)], summary[(BRN_GHOST, k)], k)
                                 for k in setting["renorm_sizes"]),
        "real_k": control, "real_err": error[(BN_SMALL, control)],
        "ghost_err": error[(BN_GHOST, control)],
        "real_phrase": change((BN_GHOST, control), (BN_SMALL, control)),
        "real_vs_large": change((BN_GHOST, largest), (BN_SMALL, control)),
        "real_steps": setting["epochs"] * -(-setting["train_subset"] // control),
    }
    for k in setting["renorm_sizes"]:
        out[f"brn_{k}"] = error[(BRN_GHOST, k)]
        out[f"brn_{k}_phrase"] = change((BN_GHOST, k), (BRN_GHOST, k))
    return out


def findings(results: Mapping[str, Any]) -> dict:
    """The numbers and words chapter 04 glues, from ``results``: ``identities`` and
    ``namesakes`` (name -> largest difference), ``differences`` (from
    :func:`bnlib.experiments.variant_identities.invariance_differences`), and the output of :func:`run`.

    Fractions stay fractions (the prose formats them as percentages); the cited numbers of
    :data:`WU_HE_2018` and :data:`IOFFE_2017_SCHEDULE` are included under ``wh_*`` and
    ``ioffe_*``.
    """
    return {**_invariance_findings(results), **_sources(), **_experiment_findings(results)}
