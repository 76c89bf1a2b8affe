"""Chapter 01's measures and verdicts, each branch fed a synthetic outcome (ties and mixed
outcomes too), and its findings from hand-made histories."""

from types import SimpleNamespace

import pytest

from bnlib.experiments import ics

NAMES = ("standard", "BN", "noisy BN")


def test_band_summary_on_a_hand_made_band():
    band = {"p15": [0.0, 1.0, -1.0], "p50": [1.0, 3.0, 2.0], "p85": [2.0, 4.0, 3.0]}
    got = ics.band_summary(band)
    assert got == {"median_width": 3.0, "middle_range": 2.0, "middle_jitter": 1.5}
    with pytest.raises(ValueError, match="two measurements"):
        ics.band_summary({"p15": [0.0], "p50": [0.0], "p85": [0.0]})


def test_median_from_skips_earlier_steps_and_largest_drop_finds_the_fall():
    result = {"step": [0, 10, 20, 30], "relative": [9.0, 1.0, 3.0, 2.0]}
    assert ics.median_from(result, "relative") == 2.0
    assert ics.median_from(result, "relative", 15) == 2.5
    with pytest.raises(ValueError, match="no measurement"):
        ics.median_from(result, "relative", 31)
    assert ics.largest_drop([0.5, 0.9, 0.6, 0.8, 0.75]) == pytest.approx(0.3)
    assert ics.largest_drop([0.1, 0.2, 0.3]) == 0.0


@pytest.mark.parametrize("a, b, spread, words", [
    (0.9, 0.5, 0.1, "ahead of"),
    (0.5, 0.9, 0.1, "behind"),
    (0.55, 0.5, 0.1, "level with"),
    (0.5, 0.5, 0.0, "level with"),    # a tie with no spread
])
def test_relation(a, b, spread, words):
    assert ics.relation(a, b, spread) == words


@pytest.mark.parametrize("bn, std, words", [
    (0.1, 0.2, "reduced"), (0.3, 0.2, "increased"), (0.2, 0.2, "did not change"),
])
def test_ics_verdict_compares_the_second_half_medians(bn, std, words):
    assert ics.ics_verdict(bn, std) == words


SPREAD = {name: 0.01 for name in NAMES}
STEADY = {"standard": 0.1, "BN": 0.05, "noisy BN": 0.5}  # the noise unsettles the input


@pytest.mark.parametrize("first, jitter, start", [
    ({"standard": 0.5, "BN": 0.5, "noisy BN": 0.9}, STEADY, "BN had no head start"),
    ({"standard": 0.6, "BN": 0.5, "noisy BN": 0.9}, STEADY, "BN had no head start"),
    ({"standard": 0.5, "BN": 0.9, "noisy BN": 0.9},
     {"standard": 0.1, "BN": 0.05, "noisy BN": 0.1}, "the noise did not make"),
    ({"standard": 0.5, "BN": 0.9, "noisy BN": 0.9}, STEADY, "noisy BN kept BN's head start"),
    ({"standard": 0.5, "BN": 0.9, "noisy BN": 0.95}, STEADY, "noisy BN kept BN's head start"),
    ({"standard": 0.5, "BN": 0.9, "noisy BN": 0.7}, STEADY, "noisy BN kept only part"),
    ({"standard": 0.5, "BN": 0.9, "noisy BN": 0.5}, STEADY, "the noise took away"),
    ({"standard": 0.5, "BN": 0.9, "noisy BN": 0.3}, STEADY, "the noise took away"),
])
def test_noisy_verdict_compares_noisy_bn_with_bn_first(first, jitter, start):
    assert ics.noisy_verdict(first, SPREAD, jitter).startswith(start)


def test_noisy_verdict_says_whether_noisy_bn_was_level_with_or_ahead_of_bn():
    level = ics.noisy_verdict({"standard": 0.5, "BN": 0.9, "noisy BN": 0.9}, SPREAD, STEADY)
    ahead = ics.noisy_verdict({"standard": 0.5, "BN": 0.9, "noisy BN": 0.95}, SPREAD, STEADY)
    assert "(level with BN)" in level and "(ahead of BN)" in ahead


def test_noisy_verdict_reads_a_gap_within_the_seed_spread_as_no_gap():
    wide = {name: 0.2 for name in NAMES}
    first = {"standard": 0.5, "BN": 0.9, "noisy BN": 0.75}
    assert ics.noisy_verdict(first, SPREAD, STEADY).startswith("noisy BN kept only part")
    assert ics.noisy_verdict(first, wide, STEADY).startswith("noisy BN kept BN's head start")


def smooth(loss_range, grad_change, beta):
    return {"loss_range": loss_range, "grad_change": grad_change, "beta": beta}


@pytest.mark.parametrize("bn, words", [
    (smooth(1, 1, 1), "all three measures agree with Santurkar et al."),
    (smooth(3, 3, 3), "none of the three measures agrees with Santurkar et al."),
    (smooth(2, 2, 2), "none of the three measures agrees with Santurkar et al."),  # ties
    (smooth(1, 3, 3), "the range of the loss agrees with Santurkar et al., the gradient "
                      "change and the effective beta-smoothness do not"),
    (smooth(1, 1, 2), "the range of the loss and the gradient change agree with Santurkar "
                      "et al., the effective beta-smoothness does not"),
])
def test_smoothness_verdict(bn, words):
    assert ics.smoothness_verdict(bn, smooth(2, 2, 2)) == words


def fake_history(accuracy, p50, relative, beta):
    """What findings reads from a History, with the given numbers."""
    steps = [0.0, 10.0, 20.0, 30.0]
    return SimpleNamespace(
        epochs=[SimpleNamespace(test_accuracy=accuracy)],
        final=SimpleNamespace(test_accuracy=accuracy + 0.05),
        step_evals=[{"step": 10, "test_accuracy": accuracy},
                    {"step": 20, "test_accuracy": accuracy - 0.02}],
        probes={
            "percentiles": {"step": steps, "p15": [-1.0] * 4, "p50": p50, "p85": [1.0] * 4},
            "ics": {"step": steps, "relative": relative, "cosine": [1.0, 0.9, 0.8, 0.7]},
            "landscape": {"step": steps, "loss_min": [1.0] * 4, "loss_max": [2.0] * 4,
                          "grad_change_min": [0.1] * 4, "grad_change_max": [0.2] * 4,
                          "beta_smoothness": [beta] * 4, "grad_norm": [1.0] * 4},
        },
    )


def findings_of(std_ics, bn_ics):
    """Findings of three hand-made networks (two identical seeds each) whose ICS
    measurements at steps 0, 10, 20, 30 are ``std_ics``, ``bn_ics`` (noisy BN: 0.5)."""
    setting = ics.Setting(lr=0.5, epochs=1, train_subset=2400, every=10, seeds=(0, 1))
    histories = {
        "standard": fake_history(0.5, [0.0, 1.0, 0.0, 1.0], std_ics, 3.0),
        "BN": fake_history(0.9, [0.0, 0.1, 0.0, 0.1], bn_ics, 1.0),
        "noisy BN": fake_history(0.9, [0.0, 2.0, 0.0, 2.0], [0.0, 0.5, 0.5, 0.5], 1.0),
    }
    by_seed = {name: [h, h] for name, h in histories.items()}
    return ics.findings(ics.Results(setting, histories, by_seed))


def test_findings_from_hand_made_histories():
    f = findings_of([0.0, 0.1, 0.4, 0.4], [0.0, 0.9, 0.2, 0.2])
    assert f["steps"] == 40 and f["half"] == 20
    assert f["acc1_bn"] == 0.9 and f["drop_bn"] == pytest.approx(0.02)
    assert f["seed_acc1_sd_bn"] == 0.0
    # Full-run medians (step >= 1) and second-half medians (step >= 20) disagree here:
    assert f["ics_rel_bn"] == 0.2 and f["ics_rel_std"] == 0.4
    assert f["ics_late_bn"] == 0.2 and f["ics_late_std"] == 0.4
    assert f["ics_verdict"] == "reduced"
    assert f["middle_jitter_std"] == 1.0 and f["middle_jitter_bn"] == pytest.approx(0.1)
    assert f["range_word"] == "less" and f["faster_word"] == "higher"
    assert f["smooth_verdict"].startswith("the effective beta-smoothness agrees")
    assert f["noisy_verdict"].startswith("noisy BN kept BN's head start")
    assert f["paper_n_sigma"] == 1.25 and f["noise_var_bound"] == 2.0


def test_the_second_half_decides_the_ics_verdict():
    f = findings_of([0.0, 0.5, 0.3, 0.3], [0.0, 0.1, 0.1, 0.6])
    assert f["ics_rel_bn"] < f["ics_rel_std"]      # over the whole run BN looks lower ...
    assert f["ics_verdict"] == "increased"          # ... but not over the second half


def test_settings_and_configurations():
    assert ics.FULL.steps == 2272 and ics.QUICK.steps == 100
    configs = ics.configs(ics.QUICK)
    assert list(configs) == list(NAMES)
    assert configs["noisy BN"].kwargs == {"norm": "noisy_batch"}
    assert "100 steps" in ics.describe(ics.QUICK)
    assert all(len(line) <= 60 for line in ics.describe(ics.FULL).splitlines())
