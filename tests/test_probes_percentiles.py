"""Percentiles of one unit's input against numpy's percentiles of a hand-computed input."""

import numpy as np
import pytest
import torch
from probe_models import assert_same_tensors, buffers_of, noisy_model, sgd_steps, small_bn_model
from torch import nn

from bnlib.probes import ActivationPercentileProbe, activation_percentiles
from bnlib.probes.measuring import last_module_name


def test_percentiles_of_a_known_sigmoid_input_match_numpy():
    model = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(1.0)
    x = torch.arange(101, dtype=torch.float32).unsqueeze(1)
    got = activation_percentiles(model, "1", x, unit=0)
    expected = np.percentile(2 * np.arange(101) + 1, [15, 50, 85])
    assert np.allclose(got, expected)
    assert last_module_name(model) == "1"


def test_percentiles_in_train_mode_use_the_batch_statistics_and_leave_bn_untouched():
    model = small_bn_model()
    x = torch.randn(50, 4, dtype=torch.float64)
    before = buffers_of(model)
    got = activation_percentiles(model, "2", x, unit=1, percentiles=(10, 50, 90))
    assert_same_tensors(before, buffers_of(model))
    assert model.training
    z = (x @ model[0].weight.T + model[0].bias).detach().numpy()[:, 1]
    zhat = (z - z.mean()) / np.sqrt(z.var() + model[1].eps)  # biased variance, as in training
    expected = np.percentile(zhat * 2.0 - 0.3, [10, 50, 90])
    assert np.allclose(got, expected)


def test_percentiles_in_eval_mode_use_the_running_statistics_and_restore_train_mode():
    model = small_bn_model()
    x = torch.randn(50, 4, dtype=torch.float64)
    got = activation_percentiles(model, "2", x, unit=2, train=False)
    assert model.training
    z = (x @ model[0].weight.T + model[0].bias).detach().numpy()[:, 2]
    zhat = (z - 0.5) / np.sqrt(1.5 + model[1].eps)
    expected = np.percentile(zhat * -1.0 + 0.7, [15, 50, 85])
    assert np.allclose(got, expected)


def test_percentiles_reject_a_bad_module_or_unit():
    model = small_bn_model()
    x = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        activation_percentiles(model, "nope", x)
    with pytest.raises(ValueError, match="unit=3"):
        activation_percentiles(model, "2", x, unit=3)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        activation_percentiles(model, "2", x, percentiles=(50, 101))


def test_percentile_probe_records_what_the_function_measures_at_that_step():
    model = noisy_model()
    x = torch.randn(10, 4)
    probe = ActivationPercentileProbe(x, unit=2, every=3, seed=11)
    sgd_steps(model, [probe])
    expected = activation_percentiles(model, "5", x, unit=2, seed=11 + 6)
    assert [probe.result()[k][-1] for k in ("p15", "p50", "p85")] == expected
    assert probe.result()["step"] == [0.0, 3.0, 6.0]
