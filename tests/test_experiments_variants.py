"""bnlib.experiments.variants: the runs it configures, its summaries, and every branch of every
verdict, fed synthetic outcomes (ties and mixed outcomes included)."""

from __future__ import annotations

import math

import pytest
from torch import nn

from bnlib.experiments import variants as E
from bnlib.nn import GhostBatchNorm2d


def group(*errors: float) -> dict:
    """The summary of one (method, k) group whose seeds had these test errors."""
    return E.summarise([{"method": "m", "k": 1, "test_error": e} for e in errors])[("m", 1)]


def test_batch_size_configs_build_the_layers_they_name():
    configs = E.batch_size_configs(sizes=(32, 2), renorm_sizes=(2,), real_sizes=(4,),
                                          seeds=(0, 1),
                                          train_subset=64, epochs=1)
    assert [(m, k) for m, k, _ in configs[:5]] == [
        (E.BN_GHOST, 32), (E.BN_GHOST, 2), (E.GN, 0), (E.BRN_GHOST, 2),
        (E.BN_SMALL, 4)]
    assert len(configs) == 10 and {c.seed for _, _, c in configs} == {0, 1}
    layers = [c.build_model()[1] for _, _, c in configs[:5]]
    assert isinstance(layers[0], GhostBatchNorm2d) and layers[1].ghost_batch_size == 2
    assert isinstance(layers[2], nn.GroupNorm) and layers[2].num_groups == 4
    assert isinstance(layers[3], GhostBatchNorm2d) and layers[3].ghost_batch_size == 2
    # warm-up over one epoch: 64 / 32 = 2 steps
    assert (layers[3].rmax, layers[3].dmax, layers[3].warmup_steps) == (3.0, 5.0, 2)
    assert isinstance(layers[4], nn.BatchNorm2d)
    assert configs[4][2].batch_size == 4 and configs[4][2].lr == pytest.approx(0.01 * 4 / 32)
    assert {c.optimizer for _, _, c in configs} == {"momentum"}
    with pytest.raises(ValueError, match="ghost batch size 64"):
        E.batch_size_configs(sizes=(64,))


def test_summarise_hand_computed():
    rows = [{"method": "m", "k": 2, "test_error": 0.1}, {"method": "m", "k": 2, "test_error": 0.3},
            {"method": "g", "k": 0, "test_error": 0.2}]
    out = E.summarise(rows)
    assert out[("m", 2)].mean == pytest.approx(0.2)
    assert out[("m", 2)].sd == pytest.approx(math.sqrt(0.02))  # sample sd: (0.1, 0.3) -> 0.141
    one = out[("g", 0)]
    assert (one.mean, one.low, one.high, one.n) == (0.2, 0.2, 0.2, 1) and math.isnan(one.sd)




def test_change_phrase_reads_the_seeds_ranges():
    assert E.change_phrase(group(0.03, 0.04), group(0.05, 0.06)) == (
        "rose by 2.0 percentage points in every seed")
    assert E.change_phrase(group(0.05, 0.06), group(0.03, 0.04)) == (
        "fell by 2.0 percentage points in every seed")
    assert E.change_phrase(group(0.05), group(0.04)) == "fell by 1.0 percentage points (one seed)"
    assert E.change_phrase(group(0.04), group(0.05)) == "rose by 1.0 percentage points (one seed)"
    assert E.change_phrase(group(0.03, 0.05), group(0.04, 0.07)) == (
        "changed by +1.5 percentage points, with the seeds' ranges overlapping")
    assert E.change_phrase(group(0.04), group(0.04)) == "did not change (one seed)"
    assert E.change_phrase(group(0.0600), group(0.0603)) == (
        "rose by less than 0.1 percentage points (one seed)")
    # equal means, ranges overlapping: no direction claimed, and a zero has no sign
    assert E.change_phrase(group(0.03, 0.05), group(0.04, 0.04)) == (
        "changed by 0.0 percentage points, with the seeds' ranges overlapping")
    # a fall of 0.01 points rounds to zero: "0.0", not "-0.0"
    assert E.change_phrase(group(0.03, 0.05), group(0.0398, 0.0400)) == (
        "changed by 0.0 percentage points, with the seeds' ranges overlapping")


def test_renorm_verdict_every_branch():
    bn = group(0.10, 0.12)
    assert E.renorm_verdict(bn, group(0.05, 0.06), 2) == "helped at k = 2 in every seed"
    assert E.renorm_verdict(bn, group(0.20, 0.30), 1) == "hurt at k = 1 in every seed"
    assert E.renorm_verdict(group(0.1), group(0.2), 1) == "hurt at k = 1 (one seed)"
    assert E.renorm_verdict(group(0.1), group(0.1), 1) == "made no clear difference at k = 1"
    assert E.renorm_verdict(bn, group(0.11, 0.20), 2) == "made no clear difference at k = 2"
    assert E.renorm_verdict(bn, group(0.10, 0.12), 2) == "made no clear difference at k = 2"


def test_gn_verdict_every_branch():
    bn = group(0.03, 0.04)
    assert E.gn_verdict(group(0.05, 0.06), bn) == (
        "worse than batch norm at full size in every seed")
    assert E.gn_verdict(group(0.05), group(0.04)) == "worse than batch norm at full size (one seed)"
    assert E.gn_verdict(group(0.01, 0.02), bn).startswith("better than")
    assert E.gn_verdict(group(0.035, 0.05), bn).startswith("about as good")
    assert E.gn_verdict(group(0.03, 0.04), bn).startswith("about as good")


def test_shape_word_every_branch():
    assert E.shape_word(-0.1, 0.47) == "no rise at all"
    assert E.shape_word(0.0, 0.47) == "no rise at all"
    assert E.shape_word(0.1, 0.47) == "a far milder rise than theirs"
    assert E.shape_word(0.3, 0.47) == "a milder rise than theirs"
    assert E.shape_word(0.47, 0.47) == "a rise as steep as theirs or steeper"
    assert E.shape_word(0.9, 0.47) == "a rise as steep as theirs or steeper"


def test_small_words():
    assert E.worst_phrase(1) == "where our batch norm is hurt most"
    assert E.worst_phrase(4) == "not where our batch norm is hurt most (that is k = 4)"
    assert E.agreement_word(24, 24) == "all" and E.agreement_word(23, 24) == "only"
    assert E.seeds_phrase(1) == "1 seed" and E.seeds_phrase(3) == "3 seeds"


def test_wu_he_numbers_are_their_table_2_and_section_4_1():
    assert E.WU_HE_2018["batch norm"] == {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7}
    assert E.WU_HE_2018["group norm"] == {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}
    assert E.WU_HE_2018["batch renorm"] == {4: 26.3}


def _synthetic_results(real_error: float) -> dict:
    setting = {"sizes": (32, 2, 1), "renorm_sizes": (2, 1), "real_sizes": (2,),
               "seeds": (0, 1), "train_subset": 64, "epochs": 1}
    errors = {(E.BN_GHOST, 32): (0.02, 0.03), (E.BN_GHOST, 2): (0.05, 0.06),
              (E.BN_GHOST, 1): (0.04, 0.05), (E.GN, 0): (0.025, 0.035),
              (E.BRN_GHOST, 2): (0.03, 0.035), (E.BRN_GHOST, 1): (0.045, 0.05),
              (E.BN_SMALL, 2): (real_error, real_error + 0.01)}
    rows = [{"method": m, "k": k, "seed": s, "test_error": e, "train_loss": 0.1, "seconds": 30.0,
             "cached": False}
            for (m, k), values in errors.items() for s, e in enumerate(values)]
    methods = ("batch norm", "layer norm")
    differences = {(m, t): 1e-14 for m in methods for t in ("a", "b")}
    differences[("layer norm", "b")] = 0.5
    return {"setting_name": "short", "setting": setting, "rows": rows,
            "identities": {"x": 1e-16}, "namesakes": {"y": 2e-16}, "differences": differences}


def test_findings_on_a_synthetic_outcome(monkeypatch):
    monkeypatch.setattr(E, "BA_2016_TABLE", {"batch norm": (True, True),
                                             "layer norm": (True, True)})
    f = E.findings(_synthetic_results(real_error=0.08))
    assert f["inv_agree"] == 3 and f["inv_cells"] == 4 and f["inv_agree_word"] == "only"
    assert f["inv_small_max"] == 1e-14 and f["inv_large_min"] == 0.5
    assert f["bn_2"] == pytest.approx(0.055) and f["bn_2_phrase"].startswith("rose by 3.0")
    assert f["worst_phrase"].endswith("(that is k = 2)")
    assert f["brn_word"] == "helped at k = 2 in every seed and made no clear difference at k = 1"
    assert f["gn_word"].startswith("about as good")
    assert f["real_k"] == 2 and f["real_phrase"].startswith("rose by")
    assert f["real_steps"] == 32 and f["steps"] == 2 and f["n_runs"] == 14
    assert f["our_rel"] == pytest.approx((0.055 - 0.025) / 0.025)
    assert f["our_rel_text"] == "+120%"
    assert f["wh_rel"] == pytest.approx((34.7 - 23.6) / 23.6)
    assert f["minutes"] == pytest.approx(14 * 30 / 60)
    assert f["seeds_phrase"] == "2 seeds" and f["setting_name"] == "short"
    f = E.findings(_synthetic_results(real_error=0.03))  # 0.03, 0.04 below 0.05, 0.06
    assert f["real_phrase"].startswith("fell by")


def test_every_value_of_the_findings_can_be_glued():
    from bnlib.experiments import plain

    for name, value in E.findings(_synthetic_results(0.05)).items():
        plain(value)  # raises for anything glue cannot show
        assert isinstance(name, str)


def test_chapter_glues_only_names_the_findings_hold_and_cites_wu_and_he_as_published():
    import re
    from pathlib import Path

    chapter = Path(__file__).resolve().parent.parent / "book" / "04_variants.md"
    f = E.findings(_synthetic_results(0.05))
    glued = set(re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", chapter.read_text()))
    assert glued <= set(f), sorted(glued - set(f))
    # Wu & He 2018: Table 2 (instance norm), Section 4.2 and Table 6 (COCO, against frozen BN)
    assert f["wh_in"] == 28.4
    assert (f["wh_coco_c4_box"], f["wh_coco_c4_mask"]) == (1.1, 0.8)
    assert (f["wh_coco_fpn_long_box"], f["wh_coco_fpn_long_mask"]) == (2.2, 1.6)
