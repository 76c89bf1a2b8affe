"""bnlib.experiments.hindi_digits: the measures by hand, the article's data against its printed
numbers, and every verdict of findings() fed synthetic results (ties and mixed outcomes too)."""

import math

import pytest

from bnlib.experiments import hindi_digits as hd
from bnlib.training import EpochRecord, History, RunConfig


def fake_history(test_accuracy, train_loss=None, path=None, seed=5842) -> History:
    """A history with given per-epoch numbers (for the measures, no training)."""
    train_loss = train_loss or [1.0] * len(test_accuracy)
    path = path or [[0.0, 0.0]] * (len(test_accuracy) + 1)
    epochs = [
        EpochRecord(epoch=i + 1, train_loss=loss, train_accuracy=0.5, test_loss=1.0,
                    test_accuracy=acc, seconds=2.0, weights=list(path[i + 1]))
        for i, (acc, loss) in enumerate(zip(test_accuracy, train_loss))
    ]
    return History(config=RunConfig(epochs=len(epochs), seed=seed), epochs=epochs,
                   initial={"weights": list(path[0])})


ZIGZAG = [[0, 0], [1, 0], [1, 1], [2, 1]]  # turns of 90 degrees
STRAIGHT = [[0, 0], [1, 1], [2, 2], [3, 3]]  # no turn


def pair(bn_final, plain_final, bn_loss=(0.5, 0.4, 0.3), plain_loss=(1.0, 0.9, 0.8), seed=5842):
    """One seed of both models over three epochs, with given last accuracies and losses."""
    bn = fake_history([0.9, 0.95, bn_final], list(bn_loss), STRAIGHT, seed)
    plain = fake_history([0.8, 0.9, plain_final], list(plain_loss), ZIGZAG, seed)
    return bn, plain


def results_of(*pairs):
    return {"with_bn": [b for b, _ in pairs], "without_bn": [p for _, p in pairs]}


# --------------------------------------------------------------------------- measures


def test_oscillation_by_hand():
    assert hd.oscillation(fake_history([0.90, 0.94, 0.92, 0.93])) == pytest.approx(
        (0.04 + 0.02 + 0.01) / 3)
    assert hd.oscillation(fake_history([0.5])) == 0.0


def test_turning_angle_by_hand():
    assert hd.mean_turning_angle(fake_history([0.5] * 3, path=STRAIGHT)) == pytest.approx(
        0.0, abs=1e-12)
    assert hd.mean_turning_angle(fake_history([0.5] * 3, path=ZIGZAG)) == pytest.approx(90.0)
    back = fake_history([0.5] * 2, path=[[0, 0], [1, 0], [0, 0]])
    assert hd.mean_turning_angle(back) == pytest.approx(180.0)
    assert math.isnan(hd.mean_turning_angle(fake_history([0.5])))


def test_loss_lower_from_histories_and_lists():
    bn = fake_history([0.5] * 5, train_loss=[2.0, 1.0, 0.5, 0.6, 0.4])
    plain = fake_history([0.5] * 5, train_loss=[1.5, 1.2, 0.6, 0.5, 0.5])
    assert hd.loss_lower_from(bn, plain) == 5  # lower at 2-3, not 4, again at 5
    assert hd.loss_lower_from(plain, bn) is None
    assert hd.loss_lower_from([1.0, 1.0], [2.0, 2.0]) == 1
    assert hd.loss_lower_from([1.0, 2.0], [2.0, 2.0]) is None  # a tie at the end is not lower


def test_seeds_and_configs():
    assert hd.seeds(3) == [5842, 5843, 5844]
    with pytest.raises(ValueError):
        hd.seeds(0)
    plan = hd.comparison_configs(epochs=2, seed_count=2)
    assert [(name, seed) for name, seed, _ in plan] == [
        ("with_bn", 5842), ("with_bn", 5843), ("without_bn", 5842), ("without_bn", 5843)]
    config = plan[0][2]
    assert (config.optimizer, config.lr, config.momentum, config.batch_size) == (
        "sgd", 0.001, 0.0, 32)
    assert config.kwargs == {"batch_norm": True}


def test_drops_path_length_and_per_seed_by_hand():
    history = fake_history([0.90, 0.85, 0.95, 0.94], path=[[0, 0], [3, 4], [3, 4], [3, 5], [0, 1]])
    assert hd.drops(history) == 2
    assert hd.path_length(history) == pytest.approx(5 + 0 + 1 + 5)
    other = fake_history([0.5] * 4, train_loss=[2.0] * 4)
    rows = hd.per_seed({"with_bn": [history], "without_bn": [other]})
    assert rows[0]["loss_lower_from"] == 1 and "loss_lower_from" not in rows[1]
    assert rows[0]["drops"] == 2 and rows[1]["final_accuracy"] == 0.5


def test_summary_spread_by_hand():
    rows = hd.summary(results_of(pair(0.99, 0.90), pair(0.97, 0.92, seed=5843)))
    bn = rows[0]
    assert bn["final_accuracy_mean"] == pytest.approx(0.98)
    assert bn["final_accuracy_std"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))  # ddof=1
    assert (bn["final_accuracy_min"], bn["final_accuracy_max"]) == (0.97, 0.99)
    assert math.isnan(hd.summary(results_of(pair(0.99, 0.9)))[0]["final_accuracy_std"])


# --------------------------------------------------------------------------- the article's data


def test_article_curves_hold_the_notebooks_printed_numbers():
    accuracy, loss = hd.article_curves("test_accuracy"), hd.article_curves("train_loss")
    for curves in (accuracy, loss):
        assert {name: epochs for name, (epochs, _) in curves.items()} == {
            "with_bn": list(range(1, 31)), "without_bn": list(range(1, 31))}
    # printed by the notebook (cells 7, 11 and 12 of hindi_hw_digits_bnorm2d_cnns.ipynb)
    assert loss["with_bn"][1][0] == 0.629183 and loss["without_bn"][1][0] == 2.118166
    assert accuracy["without_bn"][1][3] == 0.869667
    assert accuracy["with_bn"][1][-1] == hd.ARTICLE_ACCURACY["with_bn"]
    assert accuracy["without_bn"][1][-1] == hd.ARTICLE_ACCURACY["without_bn"]
    # read off its figure: the accuracy without BN peaks near 95.9% at its 25th epoch
    values = accuracy["without_bn"][1]
    assert values.index(max(values)) + 1 == 25 and 0.955 < max(values) < 0.962
    assert hd.loss_lower_from(loss["with_bn"][1], loss["without_bn"][1]) == 1
    with pytest.raises(KeyError):
        hd.article_curves("no such metric")


# --------------------------------------------------------------------------- findings


def test_findings_when_every_seed_agrees_with_the_article():
    facts = hd.findings(results_of(pair(0.99, 0.90), pair(0.98, 0.91, seed=5843)))
    assert facts["bn_higher"] == 2 and facts["bn_higher_verdict"] == "holds in all 2 seeds"
    assert facts["gap_min"] == pytest.approx(7.0) and facts["gap_max"] == pytest.approx(9.0)
    assert facts["osc_more_plain_verdict"] == "holds in all 2 seeds"
    assert facts["angle_more_plain"] == 2  # zig-zag (90 degrees) against a straight path
    assert facts["drops_more_plain"] == 0  # no drops in either: a tie counts against
    assert facts["drops_more_plain_verdict"] == "does not hold in any of the 2 seeds"
    assert facts["loss_by_3_verdict"] == "holds in all 2 seeds"
    assert facts["lower_from_seed"] == 1 and facts["loss_seed_phrase"] == "at every epoch"
    assert facts["loss_seed_vs_prose"] == "earlier than in the article's words"
    assert facts["gap_seed"] == pytest.approx(9.0) and facts["gap_seed_text"] == "+9.0"
    assert (facts["gap_min_text"], facts["gap_max_text"]) == ("+7.0", "+9.0")
    assert (facts["epochs"], facts["seed_count"], facts["transitions"]) == (3, 2, 2)
    assert facts["seconds_per_epoch"] == pytest.approx(2.0)
    assert facts["train_images"] == hd.TRAIN_IMAGES
    assert facts["article_loss_from"] == 1 and facts["article_loss_prose"] == 3
    assert facts["article_peak_epoch"] == 25
    assert 2.5 < facts["article_gap_at_peak"] < 4.5  # 99.2% with BN there, read off its figure


def test_differences_from_the_article_print_their_sign_but_not_a_rounded_zeros():
    # the article's last accuracies are 99.13% (BN) and 92.40%: 99.12% is 0.01 points below
    facts = hd.findings(results_of(pair(0.9912, 0.95)))
    assert facts["diff_with_bn"] < 0 and facts["diff_with_bn_text"] == "0.0"
    assert facts["diff_without_bn_text"] == "+2.6"
    assert hd.findings(results_of(pair(0.98, 0.95)))["diff_with_bn_text"] == "-1.1"


def test_setting_facts_are_the_articles():
    facts = hd.setting_facts()
    assert (facts["article_lr"], facts["article_batch"], facts["article_epochs"],
            facts["article_seed"]) == (0.001, 32, 30, 5842)


def test_findings_mixed_outcome_and_a_tie_is_not_a_win():
    facts = hd.findings(results_of(pair(0.99, 0.90), pair(0.93, 0.93, seed=5843),
                                   pair(0.90, 0.95, seed=5844)))
    assert facts["bn_higher"] == 1 and facts["bn_higher_verdict"] == "holds in 1 of 3 seeds"
    assert facts["gap_min"] == pytest.approx(-5.0) and facts["gap_max"] == pytest.approx(9.0)
    assert (facts["gap_min_text"], facts["gap_max_text"]) == ("-5.0", "+9.0")


def test_findings_when_no_seed_agrees():
    bn_loses = pair(0.90, 0.99, bn_loss=(1.0, 0.9, 0.9), plain_loss=(0.5, 0.4, 0.3))
    facts = hd.findings(results_of(bn_loses, pair(0.90, 0.95, seed=5843)))
    assert facts["bn_higher_verdict"] == "does not hold in any of the 2 seeds"
    assert facts["lower_from_seed"] == 0 and facts["loss_seed_phrase"] == "not at the last epoch"
    assert facts["loss_seed_vs_prose"] == "unlike the article, where it is lower at the end"
    assert facts["loss_by_3"] == 1  # the second seed keeps the default, lower losses


def test_findings_one_seed():
    facts = hd.findings(results_of(pair(0.99, 0.90)))
    assert facts["bn_higher_verdict"] == "holds in the one seed"
    assert math.isnan(facts["std_with_bn"])
    assert hd.findings(results_of(pair(0.80, 0.90)))["bn_higher_verdict"] == (
        "does not hold in the one seed")


@pytest.mark.parametrize("bn_loss, epoch, phrase, versus", [
    ((0.9, 1.0, 0.7, 0.5), 3, "from epoch 3 to the last", "as in the article's words"),
    ((1.2, 1.0, 0.9, 0.5), 4, "from epoch 4 to the last", "later than in the article's words"),
])
def test_findings_loss_lower_from_later_epochs(bn_loss, epoch, phrase, versus):
    bn = fake_history([0.9] * 4, list(bn_loss), STRAIGHT + [[4, 4]])
    plain = fake_history([0.8] * 4, [1.0, 0.95, 0.9, 0.8], ZIGZAG + [[3, 2]])
    facts = hd.findings(results_of((bn, plain)))
    assert (facts["lower_from_seed"], facts["loss_seed_phrase"]) == (epoch, phrase)
    assert facts["loss_seed_vs_prose"] == versus
    assert facts["loss_by_3"] == int(epoch <= 3)


@pytest.mark.parametrize("finals, band", [
    ((0.995, 0.999), "below"),  # the article's 99.13% is under every seed
    ((0.99, 0.995), "within"),
    ((0.98, 0.99), "above"),
])
def test_findings_place_the_articles_accuracy_against_the_seeds(finals, band):
    pairs = [pair(final, 0.9, seed=5842 + i) for i, final in enumerate(finals)]
    assert hd.findings(results_of(*pairs))["article_band_with_bn"] == band


def test_findings_refuse_unpaired_seeds():
    bn, plain = pair(0.99, 0.9)
    with pytest.raises(ValueError, match="same"):
        hd.findings({"with_bn": [bn, bn], "without_bn": [plain]})


# --------------------------------------------------------------------------- data, network


def test_class_counts_and_dataset_facts_balanced_and_not():
    balanced = hd.dataset_facts([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2, list(range(10)))
    assert (balanced["n_train"], balanced["n_test"]) == (20, 10)
    assert balanced["train_per_class"] == "2 of each digit"
    assert balanced["test_per_class"] == "1 of each digit"
    uneven = hd.dataset_facts([0] * 3 + list(range(1, 10)) * 2, list(range(10)))
    assert (uneven["train_min"], uneven["train_max"]) == (2, 3)
    assert uneven["train_per_class"] == "2 to 3 of each digit"
    assert hd.class_counts([9], [0])[9] == {"digit": 9, "devanagari": "९", "train": 1, "test": 0}


def test_network_facts_and_layer_rows_by_hand():
    facts = hd.network_facts()
    # 3x3 convolutions: 1*16*9+16, twice 16*16*9+16; linear 4096*10+10; BN 2*16 per layer
    assert facts["params_without"] == 160 + 2 * 2320 + 40970
    assert facts["params_extra"] == 3 * 32 and facts["params_linear"] == 40970
    from bnlib.models import three_conv_net

    rows = hd.layer_rows(three_conv_net(batch_norm=True))
    assert [r["output"] for r in rows[-3:]] == ["16x16x16", "4096", "10"]
    assert sum(r["parameters"] for r in rows) == facts["params_with"]


def test_chapter_setting_full_and_short(monkeypatch):
    monkeypatch.setenv("BNBOOK_QUICK", "1")
    assert hd.chapter_setting() == hd.SETTINGS["quick"]
    monkeypatch.setenv("BNBOOK_QUICK", "0")
    assert hd.chapter_setting() == {"epochs": 30, "seed_count": 5, "train_subset": None}


def test_first_seed_and_short_rows():
    results = results_of(pair(0.99, 0.90), pair(0.98, 0.91, seed=5843))
    first = hd.first_seed(results)
    assert [h.config.seed for hs in first.values() for h in hs] == [5842, 5842]
    rows = hd.per_seed_rows(results)
    assert set(rows[0]) - {"final_train_loss"} == set(hd.PER_SEED_FORMATS)
