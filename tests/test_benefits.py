"""Chapter 6: its models, the variance-shift measurement, the summaries and the verdict rules.

The verdict rules are fed synthetic outcomes, branch by branch (ties and mixed seeds too); the
variance shift is checked against the closed form of Li et al. (2019) for dropout before BN.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from bnlib import models
from bnlib.experiments import benefits, plain
from bnlib.experiments import benefits_verdicts as v
from bnlib.probes import (
    DropoutVarianceProbe, VarianceShiftProbe, dropout_variance, dropout_variance_ratio,
    variance_shift,
)
from bnlib.training import EpochRecord, History, RunConfig

HOLDS, CONDITION, NOT_HERE = v.VERDICTS
INF = math.inf


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("depth", [1, 3, 6])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_plain_conv_stack_has_depth_convolutions(depth, batch_norm):
    net = models.plain_conv_stack(depth, batch_norm)
    kinds = [type(m) for m in net]
    assert kinds.count(nn.Conv2d) == depth
    assert kinds.count(nn.BatchNorm2d) == (depth if batch_norm else 0)
    assert nn.Identity not in kinds and not any(isinstance(m, nn.Dropout) for m in net)
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 10)


def test_plain_conv_stack_rejects_depth_zero():
    with pytest.raises(ValueError, match="depth"):
        models.plain_conv_stack(0)


def test_dropout_blocks_feed_the_next_batch_norm():
    net = models.dropout_conv_net(True, 0.5, "blocks")
    names = [type(m).__name__ for m in net]
    assert names[:9] == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout", "Conv2d", "BatchNorm2d",
                         "ReLU", "Dropout", "Conv2d"]
    assert names.count("Dropout") == 2


def test_dropout_head_comes_after_every_batch_norm():
    net = models.dropout_conv_net(True, 0.3, "head")
    names = [type(m).__name__ for m in net]
    assert names[-3:] == ["Flatten", "Dropout", "Linear"]
    assert names.count("Dropout") == 1 and net[-2].p == 0.3


def test_dropout_zero_is_the_article_network():
    torch.manual_seed(0)
    ours = models.dropout_conv_net(True, 0.0)
    torch.manual_seed(0)
    article = models.three_conv_net(True)
    x = torch.rand(4, 1, 32, 32)
    torch.testing.assert_close(ours(x), article(x), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [{"dropout": 1.0}, {"dropout": -0.1}, {"placement": "x"}])
def test_dropout_conv_net_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        models.dropout_conv_net(True, **{"dropout": 0.5, **kwargs})


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_scaled_init_multiplies_the_default_weights_only(scale):
    torch.manual_seed(3)
    scaled = models.scaled_init_net(True, scale)
    torch.manual_seed(3)
    default = models.three_conv_net(True)
    for (name, p), (_, q) in zip(scaled.named_parameters(), default.named_parameters()):
        is_weight = name.endswith("weight") and q.dim() > 1
        torch.testing.assert_close(p, q * scale if is_weight else q, rtol=1e-6, atol=0)


def test_new_models_are_registered_for_run_configs():
    for name, kwargs in [("plain_conv_stack", {"depth": 2}), ("scaled_init_net", {}),
                         ("dropout_conv_net", {"dropout": 0.5})]:
        assert isinstance(RunConfig(model=name, model_kwargs=kwargs).build_model(), nn.Sequential)


# --------------------------------------------------------------------------- variance shift


def test_variance_shift_of_dropout_before_bn_matches_li_et_al():
    """x ~ N(0, 1) through inverted dropout (keep q) has variance 1/q in training and 1 at test:
    the running variance learns 1/q = 2 for p = 0.5, the test input has 1."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(8, momentum=None)).train()
    for _ in range(200):
        net(torch.randn(512, 8))
    (layer,) = variance_shift(net, torch.randn(20000, 8))
    assert 1.9 < layer["running_var"] < 2.1
    assert 0.95 < layer["test_var"] < 1.05
    assert 1.85 < layer["ratio"] < 2.15 and 1.85 < layer["shift"] < 2.15


def test_variance_shift_against_a_hand_computed_case():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    bn = nn.BatchNorm2d(2)
    bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    images = torch.rand(6, 1, 8, 8, dtype=torch.float32)
    with torch.no_grad():
        seen = nn.functional.conv2d(images, conv.weight, conv.bias, padding=1).double()
    test_var = seen.permute(1, 0, 2, 3).reshape(2, -1).numpy().var(axis=1)
    ratio = torch.tensor([4.0, 0.25], dtype=torch.float64) / torch.from_numpy(test_var)
    (layer,) = variance_shift(nn.Sequential(conv, bn), images)
    assert layer["test_var"] == pytest.approx(test_var.mean(), rel=1e-6)
    assert layer["ratio"] == pytest.approx(float(ratio.mean()), rel=1e-6)
    assert layer["shift"] == pytest.approx(float(torch.maximum(ratio, 1 / ratio).mean()), rel=1e-6)


def test_variance_shift_probe_measures_once_at_its_step():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    probe = VarianceShiftProbe(torch.rand(4, 1, 8, 8), at_step=2)
    probe.start(net)
    probe.after_step(1, net, None, None)
    assert probe.result() == {"step": None, "layers": []}
    probe.after_step(2, net, None, None)
    result = probe.result()
    assert result["step"] == 2 and len(result["layers"]) == 1
    assert probe.key()["at_step"] == 2


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize("by_rate,expected", [
    ({0.01: [0.9, 0.9], 0.1: [0.9, 0.95], 1.0: [0.1, 0.1]}, (0.1, 1.0)),
    ({0.01: [0.9, 0.9], 0.1: [0.9, 0.2], 1.0: [0.1, 0.1]}, (0.01, 0.1)),    # mixed seeds
    ({0.01: [0.2, 0.2], 0.1: [0.9, 0.9], 1.0: [0.9, 0.9]}, (1.0, None)),   # trains to the top
    ({0.01: [0.1, 0.1], 0.1: [0.2, 0.3]}, (None, None)),                    # never trains
])
def test_largest_trainable(by_rate, expected):
    assert v.largest_trainable(by_rate) == expected


def test_steps_to():
    assert v.steps_to([0, 10, 20], [0.1, 0.6, 0.95], 0.9) == 20
    assert v.steps_to([0, 10, 20], [0.1, 0.6, 0.85], 0.9) is None


# Synthetic sweeps: rate -> final test accuracy per seed (0.9 trains, 0.1 does not).
OK, BAD = [0.9, 0.9], [0.1, 0.9]


@pytest.mark.parametrize("bn,plain,verdict", [
    ({0.01: OK, 0.1: OK, 1.0: OK}, {0.01: OK, 0.1: OK, 1.0: BAD}, HOLDS),
    # BN's largest is larger, but it fails above it: not "at every rate"
    ({0.01: OK, 0.1: OK, 1.0: BAD}, {0.01: OK, 0.1: BAD, 1.0: BAD}, CONDITION),
    # fails below its largest rate only: the rule as written counts every rate of the sweep
    ({0.01: BAD, 0.1: OK, 1.0: OK}, {0.01: OK, 0.1: BAD, 1.0: BAD}, CONDITION),
    ({0.01: OK, 0.1: OK, 1.0: BAD}, {0.01: OK, 0.1: OK, 1.0: BAD}, NOT_HERE),   # a tie
    ({0.01: OK, 0.1: BAD, 1.0: BAD}, {0.01: OK, 0.1: OK, 1.0: BAD}, NOT_HERE),  # smaller
    ({0.01: BAD, 0.1: BAD}, {0.01: OK, 0.1: BAD}, NOT_HERE),                     # BN never trains
    ({0.01: OK, 0.1: OK}, {0.01: BAD, 0.1: BAD}, HOLDS),                         # only BN trains
    ({0.01: OK, 0.1: BAD}, {0.01: BAD, 0.1: BAD}, CONDITION),
])
def test_learning_rate_verdict(bn, plain, verdict):
    assert v.learning_rate_verdict(bn, plain) == verdict


@pytest.mark.parametrize("args,verdict", [
    ((100, 200, 300, 900), HOLDS),
    ((100, INF, 300, INF), HOLDS),        # only BN reaches the target when tuned
    ((100, 110, 300, 900), CONDITION),    # faster only at the article's rate
    ((100, 100, 300, 300), NOT_HERE),     # ties
    ((200, 100, INF, INF), NOT_HERE),     # neither reaches it at the article's rate
    ((INF, INF, 300, 900), CONDITION),
    ((100, 110, math.nan, 300), NOT_HERE),  # the article's rate not measured
])
def test_convergence_verdict(args, verdict):
    assert v.convergence_verdict(*args) == verdict


@pytest.mark.parametrize("args,verdict", [
    ((5, 2, 5), HOLDS), ((4, 2, 5), CONDITION), ((3, 3, 5), NOT_HERE), ((2, 4, 5), NOT_HERE),
])
def test_init_verdict(args, verdict):
    assert v.init_verdict(*args) == verdict


@pytest.mark.parametrize("bn,plain,verdict", [
    ({3: OK, 6: OK, 12: OK}, {3: OK, 6: BAD, 12: BAD}, HOLDS),
    ({3: OK, 6: OK, 12: BAD}, {3: OK, 6: BAD, 12: BAD}, CONDITION),
    # deepest trains but a shallower depth does not: not "at every depth tried"
    ({3: BAD, 6: OK, 12: OK}, {3: OK, 6: BAD, 12: BAD}, CONDITION),
    ({3: OK, 6: OK, 12: OK}, {3: BAD, 6: BAD, 12: BAD}, HOLDS),     # the plain stack never trains
    ({3: OK, 6: BAD, 12: BAD}, {3: OK, 6: BAD, 12: BAD}, NOT_HERE),  # a tie
    ({3: BAD, 6: BAD, 12: BAD}, {3: OK, 6: BAD, 12: BAD}, NOT_HERE),
    ({3: OK, 6: BAD, 12: BAD}, {3: OK, 6: OK, 12: BAD}, NOT_HERE),
])
def test_depth_verdict(bn, plain, verdict):
    assert v.depth_verdict(bn, plain) == verdict


def test_deepest_trainable():
    assert v.deepest_trainable({3: OK, 6: BAD, 12: OK}) == 12
    assert v.deepest_trainable({3: BAD}) is None


def test_dropout_variance_ratio_against_sampling():
    """The closed form against dropout applied to samples: a zero-mean unit gives 1/keep; a
    ReLU of a unit Gaussian (mean 1/sqrt(2 pi), variance 1/2 - 1/(2 pi)) about 2.47."""
    assert dropout_variance_ratio(0.5, 0.0, 1.0) == pytest.approx(2.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2_000_000, generator=generator, dtype=torch.float64))
    kept = torch.rand(x.shape, generator=generator, dtype=torch.float64) < 0.5
    measured = float((x * kept / 0.5).var() / x.var())
    predicted = dropout_variance_ratio(0.5, 1 / math.sqrt(2 * math.pi), 0.5 - 1 / (2 * math.pi))
    assert predicted == pytest.approx(2.467, abs=1e-3)
    assert measured == pytest.approx(predicted, rel=0.01)  # sampling error ~0.2% at 2e6


@pytest.mark.parametrize("args,verdict", [
    ((0.5, 3.0), HOLDS), ((1.5, 2.0), CONDITION), ((2.0, 2.0), NOT_HERE), ((3.0, 1.0), NOT_HERE),
])
def test_gradient_verdict(args, verdict):
    assert v.gradient_verdict(*args) == verdict


@pytest.mark.parametrize("args,verdict", [
    ((0.01, 0.05, 0.97, 0.95), HOLDS),
    ((0.01, 0.05, 0.95, 0.95), HOLDS),      # as good as dropout alone
    ((0.01, 0.05, 0.93, 0.95), CONDITION),
    ((0.05, 0.05, 0.97, 0.95), NOT_HERE),   # tie in the gap
    ((0.08, 0.05, 0.97, 0.95), NOT_HERE),
    ((0.04, 0.05, 0.97, 0.95, 0.02), NOT_HERE),   # smaller by less than the seeds' spread
    ((0.01, 0.05, 0.97, 0.95, 0.02), HOLDS),
    ((0.01, 0.05, 0.93, 0.95, 0.02), CONDITION),
])
def test_regularisation_verdict(args, verdict):
    assert v.regularisation_verdict(*args) == verdict


@pytest.mark.parametrize("args,verdict", [
    ((1.8, 1.05, 0.90, 0.95), HOLDS), ((1.8, 1.05, 0.96, 0.95), CONDITION),
    ((1.05, 1.05, 0.90, 0.95), NOT_HERE), ((1.0, 1.3, 0.90, 0.95), NOT_HERE),
])
def test_dropout_verdict(args, verdict):
    assert v.dropout_verdict(*args) == verdict


@pytest.mark.parametrize("args,verdict", [
    ((0.3, 0.2), HOLDS), ((0.3, 0.0), CONDITION), ((0.3, -0.02), CONDITION),
    ((0.01, 0.3), NOT_HERE),
])
def test_cost_verdict(args, verdict):
    assert v.cost_verdict(*args) == verdict


# --------------------------------------------------------------------------- the experiment


TINY = dataclasses.replace(benefits.QUICK, seeds=(0, 1), sweep_rates=(0.001, 0.1, 1.0),
                           init_scales=(0.1, 1.0), depths=(3, 6), target_accuracy=0.9)


def synthetic_results(bn_accuracy: float = 0.95) -> benefits.Results:
    """Results as if measured: BN trains from 0.1 up (not at 0.001) and faster, the plain net
    fails at 1.0."""
    steps = [0, 10, 20, 30]
    curve = {True: [0.1, 0.5, 0.92, 0.95], False: [0.1, 0.3, 0.6, 0.91]}
    sweep = {n: {lr: {"accuracy": [acc, acc], "diverged": [acc < 0.2] * 2, "steps": steps,
                      "test_loss": [[2.3, 1.0, 0.5, 0.3]] * 2,
                      "test_accuracy": [curve[n == "with_bn"]] * 2}
                 for lr, acc in zip(TINY.sweep_rates,
                                    (0.3, 0.9, bn_accuracy if n == "with_bn" else 0.1))}
             for n in benefits.NETWORKS}
    results = benefits.Results(
        setting=TINY, sweep=sweep,
        init={"with_bn": {0.1: [0.9, 0.9], 1.0: [0.95, 0.94]},
              "without_bn": {0.1: [0.1, 0.1], 1.0: [0.9, 0.92]}},
        depth={"with_bn": {3: {0.1: [0.95, 0.95]}, 6: {0.1: [0.93, 0.94]}},
               "without_bn": {3: {0.1: [0.9, 0.9]}, 6: {0.1: [0.1, 0.1]}}},
        gradients={"with_bn": {3: [1.0, 1.0, 1.0], 6: [2.0, 1.5, 1.2, 1.1, 1.0, 1.0]},
                   "without_bn": {3: [0.1, 0.5, 1.0], 6: [1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0]}},
        regularisation={
            "plain": {"train": [0.99, 0.99], "test": [0.90, 0.90], "shift": [[], []],
                      "ratio": [[], []]},
            "bn": {"train": [0.99, 0.99], "test": [0.96, 0.96],
                   "shift": [[1.0, 1.02, 1.04]] * 2, "ratio": [[1.0, 1.02, 1.04]] * 2},
            "dropout": {"train": [0.93, 0.93], "test": [0.92, 0.92], "shift": [[], []],
                        "ratio": [[], []]},
            "dropout_before_bn": {"train": [0.95, 0.95], "test": [0.93, 0.93],
                                  "shift": [[1.0, 1.8, 1.6]] * 2, "ratio": [[1.0, 1.8, 1.6]] * 2},
            "dropout_after_bn": {"train": [0.97, 0.97], "test": [0.96, 0.96],
                                 "shift": [[1.0, 1.03, 1.05]] * 2,
                                 "ratio": [[1.0, 1.03, 1.05]] * 2}},
        cost={"train_ms": {"without_bn": 3.0, "with_bn": 4.0},
              "inference_ms": {"without_bn": 10.0, "with_bn": 13.0},
              "folded_ms": {"without_bn": 10.0, "folded": 10.1},
              "batch_size": 32, "inference_batch": 256},
        confirmation={}, cost_confirmation={})
    results.regularisation["dropout_before_bn"]["behind_dropout"] = [
        [{"measured": 2.4, "predicted": 2.5}, {"measured": 2.2, "predicted": 2.3}]] * 2
    return dataclasses.replace(results, confirmation=copy.deepcopy(results.regularisation),
                               cost_confirmation=copy.deepcopy(results.cost))


def test_findings_of_a_synthetic_outcome():
    f = benefits.findings(synthetic_results())
    assert f["largest_lr_bn"] == "1" and f["largest_lr_plain"] == "0.1"
    assert f["fails_at_plain"] == "1" and f["fails_at_bn"] == "none"
    assert f["divergence_plain"] == "first fails at rate 1"
    assert f["divergence_bn"] == "still trains at the largest rate of the sweep"
    # BN's 0.3 at the smallest rate is below "trains": the rule counts every rate of the sweep
    assert f["verdict_lr"] == CONDITION
    assert f["steps_tuned_bn"] == "20" and f["steps_tuned_plain"] == "30"
    assert f["steps_article_bn"] == "20"
    assert f["verdict_speed"] == HOLDS and f["tuned_word"] == "needs fewer steps than"
    assert f["verdict_init"] == HOLDS and f["init_trained_plain"] == 1
    assert f["depth_rates"] == "rate 0.1"
    assert f["deepest_bn"] == "6" and f["deepest_plain"] == "3"
    assert f["verdict_depth"] == HOLDS
    assert f["grad_orders_plain"] == pytest.approx(4.0)
    assert f["verdict_gradients"] == HOLDS and f["grad_word_plain"] == "smaller"
    assert f["gap_plain"] == pytest.approx(0.09) and f["gap_bn"] == pytest.approx(0.03)
    assert f["gap_spread"] == 0.0  # the synthetic seeds agree
    assert f["verdict_regularisation"] == HOLDS
    assert f["shift_dropout_before_bn"] == pytest.approx(1.7)
    assert f["verdict_dropout"] == HOLDS
    assert f["train_share"] == pytest.approx(0.25) and f["verdict_cost"] == CONDITION
    assert f["gap_points_plain"] == pytest.approx(9.0)  # 0.99 - 0.90: nine percentage points
    assert f["behind_measured"] == pytest.approx(2.3)
    assert f["behind_predicted"] == pytest.approx(2.4)
    assert f["dropout_ratio_centred"] == pytest.approx(2.0)
    assert f["verdict_regularisation_fresh"] == HOLDS and f["verdict_cost_fresh"] == CONDITION
    assert f["confirmed_regularisation"] == "gives the same verdict"
    assert all(f[k] in v.VERDICTS for k in f if k.startswith("verdict_"))
    for value in f.values():
        plain(value)  # every finding can be glued


def test_findings_when_bn_fails_at_the_top_rate():
    f = benefits.findings(synthetic_results(bn_accuracy=0.1))
    assert f["largest_lr_bn"] == "0.1" and f["verdict_lr"] == NOT_HERE


def test_findings_when_nothing_trains_without_bn():
    r = synthetic_results()
    for entry in r.sweep["without_bn"].values():
        entry["accuracy"] = [0.1, 0.1]
    f = benefits.findings(r)
    assert f["largest_lr_plain"] == "none"
    assert f["divergence_plain"] == "trains at no rate of the sweep"
    assert f["verdict_lr"] == CONDITION  # BN does not train at 0.001 either
    r.sweep["with_bn"][0.001]["accuracy"] = [0.9, 0.9]
    assert benefits.findings(r)["verdict_lr"] == HOLDS


def test_findings_when_a_seed_misses_the_target_or_the_rate_is_missing():
    r = synthetic_results()
    r.sweep["without_bn"][0.1]["test_accuracy"][1] = [0.1, 0.2, 0.3, 0.4]
    del r.sweep["with_bn"][0.001]
    f = benefits.findings(r)
    assert f["steps_tuned_plain"] == "not reached in 1 of 2 seeds"
    assert f["steps_article_bn"] == "not measured"
    assert f["verdict_speed"] == HOLDS
    assert f["tuned_word"] == "needs fewer steps than"
    assert f["article_word"] == "is not compared at this rate with"


def test_speed_words_when_neither_network_reaches_the_target_at_the_articles_rate():
    r = synthetic_results()
    for network in benefits.NETWORKS:
        r.sweep[network][0.001]["test_accuracy"] = [[0.1, 0.2, 0.3, 0.4]] * 2
    f = benefits.findings(r)
    assert f["article_word"] == "does not reach the target in every seed, and neither does"
    assert f["verdict_speed"] == HOLDS


def test_speed_words_when_the_plain_network_is_faster_or_equal():
    r = synthetic_results()
    r.sweep["with_bn"][1.0]["test_accuracy"] = [[0.1, 0.5, 0.6, 0.95]] * 2
    r.sweep["without_bn"][0.1]["test_accuracy"] = [[0.1, 0.5, 0.92, 0.95]] * 2
    f = benefits.findings(r)
    assert f["tuned_word"] == "needs more steps than" and f["verdict_speed"] == CONDITION
    r.sweep["with_bn"][1.0]["test_accuracy"] = [[0.1, 0.5, 0.92, 0.95]] * 2
    assert benefits.findings(r)["tuned_word"] == "needs as many steps as"


def fake_history(config: RunConfig, accuracy: float, train_loss: float = 0.5,
                 probes: dict | None = None) -> History:
    record = EpochRecord(epoch=1, train_loss=train_loss, train_accuracy=accuracy + 0.02,
                         test_loss=0.4, test_accuracy=accuracy, seconds=1.0)
    return History(config=config, epochs=[record], initial={"test_loss": 2.3,
                   "test_accuracy": 0.1}, step_evals=[{"step": 8, "test_loss": 1.0,
                                                        "test_accuracy": 0.6}],
                   probes=probes or {})


def test_summarise_groups_runs_by_network_and_setting():
    parts = benefits.configs(TINY)
    histories = {part: [fake_history(c, 0.9, train_loss=math.nan if c.lr == 1.0 else 0.5,
                                     probes={"variance_shift": {"layers": [
                                         {"shift": 1.5, "ratio": 1.5}]}})
                        for c in runs] for part, runs in parts.items()}
    r = benefits.summarise(TINY, histories, gradients={}, cost={}, cost_confirmation={})
    assert set(r.sweep["with_bn"]) == {0.001, 0.1, 1.0}
    assert r.sweep["with_bn"][1.0]["diverged"] == [True, True]
    assert r.sweep["without_bn"][0.1]["steps"] == [0, 8]
    assert r.sweep["without_bn"][0.1]["test_accuracy"] == [[0.1, 0.6], [0.1, 0.6]]
    assert r.init["without_bn"][0.1] == [0.9, 0.9]
    assert set(r.depth["with_bn"]) == {3, 6}
    assert set(r.regularisation) == set(benefits.VARIANTS)
    assert r.regularisation["dropout_before_bn"]["shift"] == [[1.5], [1.5]]
    assert set(r.confirmation) == set(benefits.VARIANTS)
    assert len(r.confirmation["bn"]["test"]) == len(TINY.confirmation_seeds)


def test_confirmation_seeds_are_fresh():
    for s in (benefits.FULL, benefits.QUICK):
        assert len(s.confirmation_seeds) >= 2 and not set(s.confirmation_seeds) & set(s.seeds)
    assert len(benefits.FULL.confirmation_seeds) >= 3


def test_full_setting_fits_its_budget_and_quick_is_small():
    assert benefits.images_seen(benefits.FULL) <= 2_000_000
    assert benefits.images_seen(benefits.QUICK) <= 100_000
    assert len(benefits.FULL.seeds) >= 3 and len(benefits.QUICK.seeds) >= 2


def test_layer_gradient_norms_against_autograd():
    images, labels = torch.rand(8, 1, 32, 32), torch.randint(0, 10, (8,))
    norms = benefits.layer_gradient_norms(4, True, 5, images, labels)
    torch.manual_seed(5)
    model = models.plain_conv_stack(4, True).train()
    weights = [m.weight for m in model if isinstance(m, nn.Conv2d)]
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(images), labels), weights)
    assert norms == pytest.approx([float(torch.linalg.vector_norm(g)) for g in grads], rel=1e-5)


def test_cost_of_batch_norm_reports_every_time():
    cost = benefits.cost_of_batch_norm(repeats=1, batch_size=4, inference_batch=4)
    for part in ("train_ms", "inference_ms", "folded_ms"):
        assert all(t > 0 for t in cost[part].values())


# --------------------------------------------------------------------------- figures


def test_every_figure_draws_a_synthetic_outcome_with_labelled_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bnlib.plots import benefits as plots

    r = synthetic_results()
    r.sweep["without_bn"][1.0]["test_loss"][0] = [2.3, math.nan, math.nan, math.nan]
    figures = [
        plots.lr_sweep_figure(r.sweep, 0.5),
        plots.loss_curves_frame(r.sweep, 1.0),
        plots.convergence_figure(r.sweep, {"with_bn": [1.0, 0.001], "without_bn": [0.1]}, 0.9),
        plots.init_figure(r.init),
        plots.depth_figure(r.depth, r.gradients),
        plots.regularisation_figure(r.regularisation),
        plots.cost_figure(r.cost),
    ]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_ylabel(), fig
        assert any(ax.get_xlabel() for ax in fig.axes) or fig is figures[-1]
        plt.close(fig)


def test_best_rate_takes_the_smaller_rate_on_a_tie_and_compared_rates_add_the_article():
    by_rate = {0.1: {"accuracy": [0.9, 0.8]}, 0.3: {"accuracy": [0.8, 0.9]},
               0.01: {"accuracy": [0.5, 0.5]}}
    assert benefits.best_rate(by_rate) == 0.1
    r = synthetic_results()
    assert benefits.compared_rates(r) == {"without_bn": [0.1, 0.001], "with_bn": [1.0, 0.001]}


@pytest.mark.parametrize("rates,words", [
    ((0.1,), "rate 0.1"),
    ((0.03, 0.3), "the better of the rates 0.03 and 0.3"),
    ((0.01, 0.1, 1.0), "the best of the rates 0.01, 0.1 and 1"),
])
def test_depth_rates_are_worded_for_one_two_or_more(rates, words):
    s = dataclasses.replace(TINY, depth_rates=rates)
    r = synthetic_results()
    r.setting = s
    assert benefits.findings(r)["depth_rates"] == words


def test_regularisation_needs_a_gap_difference_beyond_the_seeds_spread():
    r = synthetic_results()
    r.regularisation["plain"]["test"] = [0.96, 0.86]      # gaps 0.03 and 0.13: sd 0.0707
    f = benefits.findings(r)
    assert f["gap_sd_plain"] == pytest.approx(0.1 / math.sqrt(2))
    assert f["gap_plain"] - f["gap_bn"] == pytest.approx(0.05)
    assert f["verdict_regularisation"] == NOT_HERE


@pytest.mark.parametrize("original, fresh, text", [
    (HOLDS, HOLDS, "gives the same verdict"),
    (HOLDS, CONDITION, "gives a different verdict, *holds with a condition*"),
])
def test_confirmation_text_every_branch(original, fresh, text):
    assert v.confirmation_text(original, fresh) == text


def test_findings_when_the_fresh_seeds_disagree():
    r = synthetic_results()
    r.confirmation["bn"]["test"] = [0.85, 0.85]  # BN's gap on the fresh seeds: 14 points
    f = benefits.findings(r)
    assert f["verdict_regularisation"] == HOLDS and f["verdict_regularisation_fresh"] == NOT_HERE
    assert f["confirmed_regularisation"] == "gives a different verdict, *does not hold here*"


def test_dropout_variance_against_a_hand_computation():
    """A network that is only dropout (p = 0.5) on inputs of channel means 0 and 3, variances 1
    and 4: the measured ratio is the variance of the dropped input over the undropped one,
    computed here with the same mask; the prediction the closed form per channel."""
    model = nn.Sequential(nn.Dropout(0.5))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 2, 2, 2, generator=generator) * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    x = x + torch.tensor([0.0, 3.0]).view(1, 2, 1, 1)
    [layer] = dropout_variance(model, x, seed=7)
    xd = x.double()
    mask = torch.rand(xd.shape, generator=torch.Generator().manual_seed(7), dtype=xd.dtype) < 0.5
    dropped = xd * mask / 0.5
    axes = [0, 2, 3]
    ratio = dropped.var(dim=axes, unbiased=False) / xd.var(dim=axes, unbiased=False)
    expected = float(ratio.mean())
    assert layer["measured"] == pytest.approx(expected, rel=1e-12)
    mean, var = xd.mean(dim=axes), xd.var(dim=axes, unbiased=False)
    assert layer["predicted"] == pytest.approx(float((2 * (1 + 0.5 * mean ** 2 / var)).mean()))
    # about (2 + 2 (1 + 0.5 * 9 / 4)) / 2 = 3.125; the sample agrees within its noise
    assert layer["predicted"] == pytest.approx(3.125, rel=0.02)
    assert layer["measured"] == pytest.approx(layer["predicted"], rel=0.05)
    assert not model.training and layer["channels"] == 2


def test_dropout_variance_probe_measures_at_the_last_step():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Dropout(0.5))
    images = torch.rand(16, 1, 8, 8)
    probe = DropoutVarianceProbe(images, at_step=2)
    probe.start(model)
    probe.after_step(1, model, images, None)
    assert probe.result()["layers"] == []
    probe.after_step(2, model, images, None)
    assert probe.result()["step"] == 2 and len(probe.result()["layers"]) == 1
