"""bnlib.experiments.inference: its measurements against direct computations with torch's own
layers (and Keras 3's), and every branch of its verdict words, fed synthetic outcomes."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from _nets import tiny_net
from torch import nn

from bnlib.experiments import inference as E
from bnlib.experiments import plain
from bnlib.inference import predict_in_train_mode
from bnlib.training import evaluate


def test_versus_eval_every_branch():
    assert E.versus_eval(0.95, 0.95) == "exactly as in"
    assert E.versus_eval(0.9447, 0.95) == "0.53 points below"
    assert E.versus_eval(0.9553, 0.95) == "0.53 points above"


@pytest.mark.parametrize("batch_size, seed", [(1, 0), (4, None), (5, 3)])
def test_train_mode_accuracy_equals_the_argmax_of_train_mode_logits(batch_size, seed):
    model = tiny_net().eval()
    images = torch.rand(13, 1, 6, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (13,), generator=torch.Generator().manual_seed(1))
    logits, _ = predict_in_train_mode(model, images, batch_size, order_seed=seed)
    expected = float((logits.argmax(1) == labels).double().mean())
    assert E.train_mode_accuracy(model, images, labels, batch_size, seed) == expected
    assert not model.training and model[1].running_mean is not None  # the model is untouched


def test_batch_statistics_only_normalises_each_batch_by_itself_in_eval_mode():
    model = tiny_net()
    x = torch.rand(6, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = copy.deepcopy(model).train()(x)
        got = E.batch_statistics_only(model).eval()(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_train_versus_eval_has_a_row_per_order_and_batch_size():
    model = tiny_net().float()
    images, labels = torch.rand(12, 1, 6, 6), torch.randint(0, 5, (12,))
    result = E.train_versus_eval(model, images, labels)
    assert len(result["rows"]) == 2 * len(E.BATCH_SIZES)
    assert result["eval"] == evaluate(model, images, labels)[1]


def test_running_var_ratios_by_hand():
    before, after = tiny_net(), tiny_net()
    with torch.no_grad():
        for a, b in zip(before.modules(), after.modules()):
            if isinstance(a, nn.BatchNorm2d):
                a.running_var.fill_(2.0)
                b.running_var.fill_(1.0)
    np.testing.assert_allclose(E.running_var_ratios(before, after), [0.5, 0.5])


def test_tracking_errors_on_a_synthetic_trace():
    steps = 10
    population = np.zeros((steps, 2))
    population[:, 1] = np.linspace(0.0, 9.0, steps)  # channel 1 drifts
    batch = population + np.where(np.arange(steps) % 2, 0.5, -0.5)[:, None]
    trace = {"batch_mean": batch.tolist(), "population_mean": population.tolist(),
             "population_var": np.ones((steps, 2)).tolist(), "momentum": 0.1,
             "running_mean": E.running_average(batch, 0.1).tolist()}
    out = E.tracking_errors(trace)
    assert out["channel"] == 1 and out["settle"] == 5 and out["steps"] == steps
    assert out["batch_noise"] == pytest.approx(0.5)
    assert out["trace_match"] == 0.0
    # momentum 0.5 follows the batches more closely than the cumulative average does
    assert out["errors"][0.5] < out["errors"][None]


def test_rule_differences_are_round_off_for_torch_and_exact_zero_for_the_mean():
    bn = nn.BatchNorm1d(3).double()
    batches = [torch.randn(8, 3, dtype=torch.float64) for _ in range(5)]
    for x in batches:
        bn(x)
    out = E.rule_differences(bn, batches)
    assert out["torch_rule_diff"] < 1e-12 and out["keras_rule_diff"] < 1e-12


def test_keras_versus_torch_on_a_small_convolution():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras  # noqa: F401  (pinned in requirements.txt: a missing install fails, not skips)

    torch.manual_seed(8)
    conv = nn.Conv2d(1, 3, 3, padding=1)
    images = torch.rand(40, 1, 2, 2) * 4
    ports = E.keras_versus_torch(conv, images, batch_size=2)
    assert ports["steps"] == 20 and ports["m"] == 8
    np.testing.assert_allclose(ports["keras_mean"], ports["torch_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ports["rule_var"], ports["keras_var"], rtol=1e-5, atol=1e-6)
    f = E._keras_findings(ports)
    # the batches' part of the variance: Keras's is (m - 1) / m of PyTorch's
    assert f["keras_var_ratio"] == pytest.approx(7 / 8, rel=1e-4)
    assert f["eps_effect"] > 0



def test_recalibration_curve_with_the_whole_set_gives_the_exact_population_statistics():
    model = tiny_net().float()
    train_images = torch.rand(40, 1, 6, 6)
    test_images, test_labels = torch.rand(10, 1, 6, 6), torch.randint(0, 5, (10,))
    rows = E.recalibration_curve(model, train_images, test_images, test_labels, sizes=[40, 5], draws=2,
                                 batch_size=16)
    assert [(r["samples"], r["draw"]) for r in rows] == [(40, 0), (40, 1), (5, 0), (5, 1)]
    # reference: BN layers set by hand to the eval-mode statistics of their inputs, layer by layer
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        x = train_images
        for layer in reference:
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.copy_(x.double().mean((0, 2, 3)))
                layer.running_var.copy_(x.double().var((0, 2, 3), unbiased=True))
            x = layer(x)
    loss, acc = evaluate(reference, test_images, test_labels)
    for row in rows[:2]:  # every draw of all 40 images holds the same images
        assert row["test_accuracy"] == acc
        assert row["test_loss"] == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ValueError, match="sample size 41"):
        E.recalibration_curve(model, train_images, test_images, test_labels, sizes=[41])



def _synthetic_results(precise: float, served: float, train_mode: float,
                       unfrozen: float = 0.3) -> dict:
    rows = [{"order": order, "batch_size": size, "accuracy": train_mode}
            for order in ("shuffled", "sorted by class") for size in E.BATCH_SIZES]
    rows[0]["accuracy"] = 0.5  # batch 1, shuffled: the worst
    trace_errors = {m: 0.1 for m in E.MOMENTA} | {0.01: 0.05}
    ports = {"keras_mean": np.zeros(2), "torch_mean": np.zeros(2),
             "keras_var": np.array([1.5, 2.0]), "torch_var": np.array([2.0, 3.0]),
             "rule_mean": np.zeros(2), "rule_var": np.array([1.5, 2.0]),
             "literal_mean": np.ones(2), "population_mean": np.zeros(2),
             "population_std": np.ones(2), "steps": 0, "momentum": 0.99, "m": 2,
             "keras_eps": 1e-3, "torch_eps": 1e-5, "eps_effect": 0.01}
    curve = [{"samples": n, "draw": d, "test_accuracy": 0.9 + 0.01 * d, "test_loss": 0.3}
             for n in (10, 1000) for d in range(2)]
    return {
        "setting": {"epochs": 2, "train_subset": None, "small_epochs": 1, "small_images": 100},
        "counts": {"n_train": 100, "n_test": 50, "n_check": 50},
        "rule": {"torch_rule_diff": 0.0, "keras_rule_diff": 0.0}, "eval_accuracy": 0.95,
        "tracking": {"channel": 3, "settle": 5, "steps": 10, "errors": trace_errors,
                     "batch_noise": 0.2, "trace_match": 0.0},
        "keras": ports, "train_mode": {"rows": rows, "eval": 0.95},
        "served_accuracy": served, "served_ratios": np.array([0.5, 0.6, 0.7]),
        "instance_diff": 1e-7,
        "precise": {"images": 100, "accuracy": precise, "loss": 0.2,
                    "running_accuracy": 0.95, "running_loss": 0.25},
        "curve": curve,
        "gap": [{"batch_size": b, "mean_error": b ** -0.5, "variance_ratio": 0.99}
                for b in E.GAP_SIZES],
        "mode_rows": [{"batch_size": 4, "train_mode_accuracy": 0.9, "eval_mode_accuracy": 0.8},
                      {"batch_size": 32, "train_mode_accuracy": 0.9, "eval_mode_accuracy": 0.9}],
        "fold_difference": 1e-6,
        "speed": {"repeats": 3, "results": [
            {"batch_size": 1, "unfolded_ms": 2.0, "folded_ms": 1.0, "speedup": 2.0}]},
        "frozen": {"unfrozen": unfrozen, "frozen": 0.95, "zeros": 300, "batch_size": 32},
    }


@pytest.mark.parametrize("precise, word", [(0.96, "higher than"), (0.94, "lower than"),
                                           (0.95, "the same as")])
def test_findings_precise_word_every_branch(precise, word):
    assert E.findings(_synthetic_results(precise, 0.9, 0.9))["precise_word"] == word


@pytest.mark.parametrize("served, word", [(0.9, "went down"), (0.97, "went up"),
                                          (0.95, "stayed the same,")])
def test_findings_served_word_every_branch(served, word):
    assert E.findings(_synthetic_results(0.95, served, 0.9))["served_word"] == word


@pytest.mark.parametrize("train_mode, phrase", [(0.9, "in none of the 10 settings"),
                                                (0.96, "in 9 of 10 settings")])
def test_findings_train_mode_words(train_mode, phrase):
    f = E.findings(_synthetic_results(0.95, 0.9, train_mode))
    assert f["above_phrase"] == phrase
    assert f["worst_label"] == "batches of 1 shuffled" and f["worst_accuracy"] == 0.5
    assert f["worst_vs"] == "45.00 points below"
    assert f["vs_sorted_256"] == E.versus_eval(train_mode, 0.95)


def test_findings_numbers_and_the_remaining_words():
    f = E.findings(_synthetic_results(0.95, 0.9, 0.9))
    assert f["mode_word_4"] == "lower" and f["mode_gap_4"] == pytest.approx(0.1)
    assert f["mode_word_32"] == "equal" and f["mode_gap_32"] == 0.0
    assert f["mode_gap_points_4"] == pytest.approx(10.0)  # 0.9 - 0.8: ten percentage points
    assert f["mode_gap_trend"] == "larger"                 # 0.1 at batch 4, 0 at batch 32
    assert f["gap_trend"] == "falls"
    assert f["precise_effect"] == "helped on one measure and not on the other"  # same accuracy
    assert f["best_momentum"] == "0.01" and f["channel"] == 3
    assert f["train_images"] == 100 and f["precise_loss_word"] == "lower"
    assert f["gap_slope"] == pytest.approx(-0.5)
    # steps 0: the starting variance 1 keeps weight 1; the rest: 0.5 / 1 and 1 / 2
    assert f["keras_var_ratio"] == pytest.approx(0.5) and f["keras_bias"] == 0.5
    assert f["literal_error"] == 1.0 and f["proper_error"] == 0.0
    assert f["spread_1000"] == pytest.approx(0.05)
    assert f["speedup_1"] == 2.0 and f["served_var_ratio_3"] == 0.7
    assert f["zeros_weight"] == pytest.approx(1 - 0.9**10)  # 300 images: 10 batches of 32
    for value in f.values():
        plain(value)  # every value can be glued


@pytest.mark.parametrize("unfrozen, word", [(0.3, "fell to"), (0.96, "rose to"), (0.95, "stayed at")])
def test_findings_unfrozen_word_every_branch(unfrozen, word):
    assert E.findings(_synthetic_results(0.95, 0.9, 0.9, unfrozen))["unfrozen_word"] == word


@pytest.mark.parametrize("accuracy, loss, effect", [
    (0.96, 0.20, "helped on both measures"),
    (0.94, 0.30, "did worse than the running averages on both measures"),
    (0.96, 0.30, "helped on one measure and not on the other"),
    (0.94, 0.20, "helped on one measure and not on the other"),
    (0.95, 0.25, "changed neither measure"),
    (0.95, 0.20, "helped on one measure and not on the other"),
])
def test_precise_effect_every_branch(accuracy, loss, effect):
    """Against running averages of 95% accuracy and 0.25 nats."""
    assert E.precise_effect(accuracy, 0.95, loss, 0.25) == effect


@pytest.mark.parametrize("slope, word", [(-0.5, "falls"), (0.1, "grows"), (0.0, "stays flat")])
def test_trend_word_every_branch(slope, word):
    assert E.trend_word(slope) == word


@pytest.mark.parametrize("eval_4, eval_32, trend", [
    (0.8, 0.9, "larger"),    # gaps 0.1 at batch 4, 0 at 32
    (0.9, 0.8, "smaller"),   # gaps 0 at 4, 0.1 at 32
    (0.25, 0.75, "the same"),  # 0.25 at both against train mode 0.5, exact in binary
])
def test_mode_gap_trend_every_branch(eval_4, eval_32, trend):
    r = _synthetic_results(0.95, 0.9, 0.9)
    train = 0.5 if trend == "the same" else 0.9
    r["mode_rows"] = [{"batch_size": 4, "train_mode_accuracy": train, "eval_mode_accuracy": eval_4},
                      {"batch_size": 32, "train_mode_accuracy": train,
                       "eval_mode_accuracy": eval_32}]
    assert E.findings(r)["mode_gap_trend"] == trend


@pytest.mark.parametrize("ratio, start", [(0.99, "in a convolutional channel most"),
                                          (0.91, "in a convolutional channel most"),
                                          (0.5, "a large part")])
def test_spread_word_every_branch(ratio, start):
    assert E.spread_word(ratio).startswith(start)
