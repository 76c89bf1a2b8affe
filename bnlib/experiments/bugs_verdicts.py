"""Chapter 08's numbers and words: ``findings`` of the measurements of
``bnlib.experiments.bugs``, and the small verdict rules it uses (each tested branch by
branch). Means are over seeds; ranges are the lowest and highest seed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bnlib.doctor import SHIFT_THRESHOLD
from bnlib.experiments.bugs import CORRUPT_SCALE, FREEZINGS, LOW_MOMENTUM, SANITY_PASSES
from bnlib.prose import comparison, count_of
from bnlib.seeds import CONVENTION, describe, summarize
from bnlib.running import momentum_for_updates

__all__ = ["CAUSES", "RECOVERY", "agreement", "blame", "codes_text", "findings", "found_in",
           "freezing_verdict", "moves", "ordinal",
           "strongest_layer"]

#: The runs of "when eval is worse than train", in the chapter's order.
CAUSES = ("reference", "sorted", "low_momentum", "sanity")
_ORDINALS = ("first", "second", "third", "fourth", "fifth")


def agreement(rows: Sequence[Mapping[str, Any]]) -> str:
    """"agree in every row" when torch's and bnlib's rows of the mode truth table say the same,
    else "disagree in N of M rows"."""
    def key(row):
        return (row["mode"], row["track_running_stats"], row["buffers"])
    torch_rows = {key(r): (r["normalises"], r["updates"]) for r in rows
                  if r["implementation"] == "torch"}
    bnlib_rows = {key(r): (r["normalises"], r["updates"]) for r in rows
                  if r["implementation"] == "bnlib"}
    if set(torch_rows) != set(bnlib_rows):
        raise ValueError("the two implementations were measured on different settings")
    differ = sum(torch_rows[k] != bnlib_rows[k] for k in torch_rows)
    if differ == 0:
        return "agree in every row"
    return f"disagree in {differ} of {len(torch_rows)} rows"


def found_in(outcomes: Sequence[Mapping[str, Any]], code: str, key: str = "codes") -> str:
    """In how many seeds the doctor reported ``code``: ``"in all 3 seeds"``, ``"in none of
    the 3 seeds"``..."""
    return count_of(sum(code in o[key] for o in outcomes), len(outcomes))


def moves(largest_change: float) -> str:
    """"moved" if any running variance changed at all, else "stayed exactly where they were"."""
    return "moved" if largest_change > 0 else "stayed exactly where they were"


def ordinal(index: int) -> str:
    """"first", "second", ... for a 0-based layer index."""
    return _ORDINALS[index] if index < len(_ORDINALS) else f"{index + 1}th"


def strongest_layer(shifts: Sequence[Sequence[float]]) -> str:
    """The BN layer (as "first", "second"...) whose shift, averaged over seeds, is largest;
    ``shifts``: per seed, one shift per layer."""
    return ordinal(int(np.argmax(np.mean(np.asarray(shifts, dtype=float), axis=0))))


#: Recalibration "recovers" the accuracy when it adds more than this (a fraction): far more than
#: the test-set noise of a few hundred digits between two evaluations of the same weights (none).
RECOVERY = 0.05


def blame(largest_shift: float, eval_accuracy: float, recalibrated: float,
          threshold: float = SHIFT_THRESHOLD) -> str:
    """Who is to blame for an eval-mode accuracy, from the largest per-layer shift and what
    recalibration does: the running statistics (shift above ``threshold``, recalibration adds
    more than ``RECOVERY``), the weights (shift within it, recalibration adds no more than
    that), else neither clearly."""
    recovers = recalibrated - eval_accuracy > RECOVERY
    if largest_shift > threshold and recovers:
        return "the running statistics are to blame"
    if largest_shift <= threshold and not recovers:
        return "the weights are to blame"
    return "neither the statistics nor the weights are clearly to blame"


def freezing_verdict(frozen: float, recalibrated_frozen: float, unfrozen: float) -> str:
    """What held the frozen network back on the new digits (accuracies as fractions):
    "the statistics it kept" if recalibrating them on the new digits before freezing adds more
    than ``RECOVERY``; else "the freezing itself" if the unfrozen network is ahead of the
    recalibrated frozen one by more than that; else "neither clearly"."""
    if recalibrated_frozen - frozen > RECOVERY:
        return "the statistics it kept"
    if unfrozen - recalibrated_frozen > RECOVERY:
        return "the freezing itself"
    return "neither clearly"


def codes_text(codes: Sequence[str]) -> str:
    """The doctor's codes as prose: "`a` and `b`", or "nothing" for none."""
    if not codes:
        return "nothing"
    quoted = [f"`{c}`" for c in codes]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _mean(values) -> float:
    return summarize(values).mean


def _union(outcomes: Sequence[Mapping[str, Any]], key: str = "codes") -> list[str]:
    return sorted({c for o in outcomes for c in o[key]})


def _worse(worse: Mapping[str, Any]) -> dict:
    out: dict[str, Any] = {"steps": worse["steps"], "low_momentum": LOW_MOMENTUM,
                           "low_survives": (1 - LOW_MOMENTUM) ** worse["steps"],
                           "sanity_passes": SANITY_PASSES}
    for cause in CAUSES:
        runs = worse[cause]
        ev, tm = _mean([r["eval"] for r in runs]), _mean([r["train_mode"] for r in runs])
        shifts = [r["shift"] for r in runs]
        out |= {f"{cause}_eval": ev, f"{cause}_train": tm,
                f"{cause}_eval_text": describe(summarize([r["eval"] for r in runs]), ".2%"),
                f"{cause}_recal": _mean([r["recalibrated"] for r in runs]),
                f"{cause}_gap": tm - ev,
                f"{cause}_eval_word": comparison(ev, tm, "below", "above", "equal to"),
                f"{cause}_strongest": strongest_layer(shifts),
                f"{cause}_found": found_in(runs, "statistics-shift"),
                f"{cause}_codes": codes_text(_union(runs))}
        per_layer = np.mean(np.asarray(shifts), axis=0)
        for i, value in enumerate(per_layer, 1):
            out[f"{cause}_shift_{i}"] = float(value)
        out[f"{cause}_shift_max"] = float(per_layer.max())
        out[f"{cause}_blame"] = blame(float(per_layer.max()), ev, out[f"{cause}_recal"])
    out["reference_clean"] = count_of(sum(not r["codes"] for r in worse["reference"]),
                                      len(worse["reference"]))
    return out


def _averaged(averaged: Sequence[Mapping[str, Any]]) -> dict:
    out = {}
    for name in ("swa", "ema"):
        runs = [a[name] for a in averaged]
        for key in ("stored", "update_bn", "recalibrated"):
            out[f"{name}_{key}"] = _mean([r[key] for r in runs])
        out[f"{name}_found"] = found_in(runs, "statistics-shift")
        out[f"{name}_update_word"] = comparison(out[f"{name}_update_bn"],
                                                out[f"{name}_recalibrated"],
                                                "below", "above", "equal to")
    return out


def _finetune(finetune: Mapping[str, Any]) -> dict:
    out = {"pretrained_old": finetune["pretrained_old"],
           "pretrained_new": finetune["pretrained_new"]}
    for how in FREEZINGS:
        runs = finetune[how]
        largest = max(r["moved"] for r in runs)
        out |= {f"{how}_moved": largest, f"{how}_moves": moves(largest),
                f"{how}_new": _mean([r["new"] for r in runs]),
                f"{how}_old": _mean([r["old"] for r in runs]),
                f"{how}_codes": codes_text(_union(runs)),
                f"{how}_watched": codes_text(_union(runs, "watched"))}
    out["old_max"] = max(out[f"{how}_old"] for how in FREEZINGS)
    out["freezing_verdict"] = freezing_verdict(out["freeze_batch_norm_new"],
                                               out["recalibrate_then_freeze_new"],
                                               out["none_new"])
    out["frozen_new_word"] = comparison(out["freeze_batch_norm_new"], out["none_new"],
                                        "below", "above", "equal to")
    return out


def _checkpoint(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict:
    out = {"ckpt_weights": max(r["weights"] for way in runs.values() for r in way),
           "ckpt_effective": 1 - 0.9 ** 2, "ckpt_fixed_momentum": momentum_for_updates(0.1, 2)}
    for way, rows in runs.items():
        out |= {f"{way}_stats": max(r["stats"] for r in rows),
                f"{way}_tracked": rows[0]["tracked"],
                f"{way}_ckpt_eval": _mean([r["eval"] for r in rows]),
                f"{way}_watched": codes_text(_union(rows, "watched"))}
    out["ckpt_eval_word"] = comparison(out["checkpoint_ckpt_eval"], out["plain_ckpt_eval"],
                                       "lower than", "higher than", "the same as")
    return out


def _precision(amp: Mapping[str, Any]) -> dict:
    out = {"amp_before": amp["before"], "float16_max": amp["float16_max"],
           "corrupt_scale": CORRUPT_SCALE}
    for way in ("forward_overflow", "guarded", "backward_overflow", "bfloat16"):
        r = amp[way]
        out |= {f"{way}_eval": r["eval"], f"{way}_recal": r["recalibrated"],
                f"{way}_skipped": r["skipped"], f"{way}_largest": r["largest"],
                f"{way}_finite": "finite" if r["finite"] else "not finite",
                f"{way}_codes": codes_text(r["codes"])}
    return out


def _layout(layout: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict:
    right = _mean([r["accuracy"] for r in layout["channels_first"]])
    wrong = _mean([r["accuracy"] for r in layout["as_produced"]])
    return {"layout_right": right, "layout_wrong": wrong, "layout_cost": right - wrong,
            "layout_word": comparison(wrong, right, "below", "above", "equal to"),
            "layout_found": found_in(layout["as_produced"], "bn1d-normalises-length"),
            "layout_clean": count_of(sum(not r["codes"] for r in layout["channels_first"]),
                                     len(layout["channels_first"]))}


def findings(results: Mapping[str, Any]) -> dict:
    """The numbers and words chapter 08 glues. ``results``: ``setting``, ``truth``
    (``bnlib.experiments.bugs.mode_truth_table``), ``worse``
    (``bnlib.experiments.bugs.eval_worse_runs``), ``finetune``, ``checkpoint``,
    ``amp`` (mixed precision), ``warmup`` and ``layout`` (the ``*_runs`` functions)."""
    chosen, warm = results["setting"], results["warmup"]
    out: dict[str, Any] = {"n_seeds": len(chosen["seeds"]), "n_train": chosen["train_images"],
                           "n_test": chosen["test_images"], "epochs": chosen["epochs"],
                           "finetune_images": chosen["finetune_images"],
                           "truth_agree": agreement(results["truth"]),
                           "spread_convention": CONVENTION,
                           "truth_rows": len(results["truth"]) // 2}
    out |= _worse(results["worse"]) | _averaged(results["worse"]["averaged"])
    out |= _finetune(results["finetune"]) | _checkpoint(results["checkpoint"])
    out |= _precision(results["amp"]) | _layout(results["layout"])
    out |= {"warmup_shift": warm["shift_after_warmup"], "warmup_stats": warm["stats"],
            "warmup_eval": warm["eval"], "warmup_reference": warm["reference_eval"],
            "warmup_survives": warm["survives"], "warmup_steps": warm["steps"],
            "warmup_watched": codes_text(warm["watched"])}
    return out
