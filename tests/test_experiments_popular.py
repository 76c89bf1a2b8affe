"""bnlib.experiments.popular: each measurement against hand-computed values on small inputs,
and findings() branch by branch on synthetic outcomes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnlib.exercises import popular as variants
from bnlib.experiments import popular
from bnlib.models import three_conv_net

def test_normalisation_factor_is_m_over_m_minus_1():
    conv = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3
    found = popular.normalisation_factor(conv, fc_batch=4)
    # Output variances: (var_b + eps) / (var_u + eps) apart, var_u = var_b * m / (m - 1).
    assert found["fc_variance_factor"] == pytest.approx(4 / 3, rel=1e-3)
    assert found["conv_variance_factor"] == pytest.approx(32 / 31, rel=1e-4)
    assert found["conv_values_per_channel"] == 32
    assert found["fc_output_error"] == pytest.approx(1 - (3 / 4) ** 0.5, rel=1e-2)

def test_running_variance_ratio_approaches_m_minus_1_over_m():
    conv = [torch.randn(8, 2, 2, 2, generator=torch.Generator().manual_seed(k))
            for k in range(60)]
    found = popular.running_variance_ratio(conv, fc_batches=60, fc_batch=4)
    # After 60 steps of momentum 0.1 the initial ones weigh 0.9**60 < 0.002.
    assert 0.74 < found["fc_ratio"] < 0.76
    assert 30 / 32 < found["conv_ratio"] < 32 / 32 and abs(found["conv_ratio"] - 31 / 32) < 0.01
    assert found["fc_eval_error"] > 0.05

def _small_trained():
    torch.manual_seed(0)
    model = three_conv_net(batch_norm=True)
    images = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(40) % 10
    with torch.no_grad():
        for batch in images.split(8):
            model(batch)  # running statistics away from zeros and ones
    return model.eval(), images, labels

def test_convert_keeps_weights_and_statistics():
    model, images, _ = _small_trained()
    copy_ = popular.convert(model, variants.TutorialBatchNorm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy_.modules())
    with torch.no_grad():
        assert torch.allclose(copy_(images), model(images), atol=1e-5)

def test_grad_mode_evaluation_and_round_trip():
    model, images, labels = _small_trained()
    grad = popular.grad_mode_evaluation(model, images[:10], labels[:10])
    assert grad["torch_no_grad"] == grad["variant_no_grad"] == grad["torch_grad"]
    assert grad["running_mean_drift"] > 1e-3  # eval() with gradients on updated them
    trip = popular.round_trip(model, images, labels)
    assert trip["missing_keys"] == trip["torch_keys"] == 6
    assert 0 <= trip["reloaded"] <= 1

def test_momentum_replay_keras_momentum_tracks_the_last_batch():
    model, images, labels = _small_trained()
    found = popular.momentum_replay(model, images, images, labels, batches=1)
    # One replayed batch: momentum 0.99 is nearly that batch's variance, further from the
    # population of all 40 images than momentum 0.1's average of old and new.
    assert set(found) >= {"torch_var_error", "keras_var_error", "population_accuracy"}
    assert found["keras_var_error"] > 0

def test_detached_training_moves_the_biases_that_bn_keeps_fixed():
    images = torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(64) % 10
    chosen = popular.Setting(steps=4, test_images=8, replay=1, population_images=64, lr=0.05)
    found = popular.detached_training(images, labels, images[:8], labels[:8], chosen)
    assert found["torch"]["bias_change"] < 1e-5   # zero gradient, up to float32 round-off
    assert found["detached"]["bias_change"] > 100 * max(found["torch"]["bias_change"], 1e-8)

def _results(**changes):
    results = {
        "normalisation": {"fc_variance_factor": 4 / 3, "fc_output_error": 0.13,
                          "conv_variance_factor": 1.00003, "conv_values_per_channel": 32768},
        "running_variance": {"fc_ratio": 0.75, "fc_eval_error": 0.15, "conv_ratio": 0.99997},
        "grad_mode": {"torch_grad": 0.95, "variant_grad": 0.80, "variant_no_grad": 0.95,
                      "torch_no_grad": 0.95, "running_mean_drift": 0.05},
        "round_trip": {"before": 0.95, "reloaded": 0.50, "missing_keys": 6, "torch_keys": 6},
        "momentum": {"keras_accuracy": 0.94, "torch_accuracy": 0.95,
                     "population_accuracy": 0.95, "keras_var_error": 0.05,
                     "torch_var_error": 0.005},
        "detached": {name: {"bias_change": c, "bias_norm": 1.0, "weight_growth": 1.0,
                            "train_loss": 1.0, "accuracy": 0.9}
                     for name, c in (("torch", 1e-7), ("detached", 0.5))},
        "checker": {name: {"passed": False, "named": True, "off": ["eval y"]}
                    for name in variants.VARIANTS},
        "steps": 300, "test_images": 1000, "population_images": 4000, "replay": 50,
    }
    for path, value in changes.items():
        part, key = path.split("__")
        target = results[part] if key not in ("torch", "detached") else results[part][key]
        if key in ("torch", "detached"):
            target.update(value)
        else:
            target[key] = value
    return results

def test_findings_every_departure_shows_on_clear_outcomes():
    found = popular.findings(_results())
    assert all(found[f"shows_{name}"] for name in variants.VARIANTS)
    assert found["shown_count"] == 6 and found["unbiased_conv_word"] == "invisible"
    rows = popular.table_rows(found)
    assert [r["departure"] for r in rows] == [variants.DESCRIPTIONS[n] for n in (
        "GradModeSwitch", "BiasedRunningVariance", "UnbiasedNormalisation",
        "DetachedStatistics", "PlainTensorStatistics", "KerasMomentum")]
    assert all(r["shows"] == "yes" for r in rows)
    assert found["checker_named_count"] == 6 and rows[0]["module checker: off"] == "eval y"


def test_findings_count_only_failing_named_checker_verdicts():
    results = _results()
    results["checker"]["KerasMomentum"] = {"passed": True, "named": False, "off": []}
    results["checker"]["GradModeSwitch"]["named"] = False
    assert popular.findings(results)["checker_named_count"] == 4


def test_checker_verdicts_name_every_variant_and_what_is_off():
    verdicts = popular.checker_verdicts()
    assert all(v["named"] and not v["passed"] for v in verdicts.values())
    assert verdicts["DetachedStatistics"]["off"] == ["dx"]
    assert verdicts["PlainTensorStatistics"]["off"][-1] == "reloaded eval y"
    assert "train y" in verdicts["UnbiasedNormalisation"]["off"]

@pytest.mark.parametrize("change, name", [
    ({"normalisation__fc_variance_factor": 1.001}, "UnbiasedNormalisation"),
    ({"running_variance__fc_ratio": 0.995}, "BiasedRunningVariance"),
    ({"grad_mode__variant_grad": 0.945}, "GradModeSwitch"),
    ({"round_trip__reloaded": 0.949}, "PlainTensorStatistics"),
    ({"momentum__keras_var_error": 0.01}, "KerasMomentum"),
    ({"detached__detached": {"bias_change": 0.005}}, "DetachedStatistics"),
])
def test_findings_each_departure_hidden_below_its_threshold(change, name):
    found = popular.findings(_results(**change))
    assert not found[f"shows_{name}"]
    assert found["shown_count"] == 5
    row = next(r for r in popular.table_rows(found)
               if r["departure"] == variants.DESCRIPTIONS[name])
    assert row["shows"] == "no"

def test_findings_conv_factor_visible_above_threshold():
    found = popular.findings(_results(normalisation__conv_variance_factor=1.01))
    assert found["unbiased_conv_visible"] and found["unbiased_conv_word"] == "visible"
