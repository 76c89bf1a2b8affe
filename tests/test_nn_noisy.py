"""NoisyBatchNorm against torch's own BN plus noise of the drawn mean and variance.
(The probes that lived in bnlib.shift are tested in tests/test_probes_*.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnlib.nn import NoisyBatchNorm


# ---------------------------------------------------------------------------- NoisyBatchNorm


@pytest.mark.parametrize("shape", [(8, 5), (4, 5, 3, 3)])
def test_noisy_bn_keeps_shape_in_both_modes(shape):
    layer = NoisyBatchNorm(5)
    x = torch.randn(shape)
    assert layer(x).shape == shape
    layer.eval()
    assert layer(x).shape == shape


def test_noisy_bn_rejects_other_ranks():
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\)"):
        NoisyBatchNorm(5)(torch.randn(4, 5, 6))


def test_noisy_bn_rejects_bad_bounds():
    with pytest.raises(ValueError, match="var_bound"):
        NoisyBatchNorm(3, var_bound=0.5)
    with pytest.raises(ValueError, match="mean_bound"):
        NoisyBatchNorm(3, mean_bound=-1.0)


@pytest.mark.parametrize(
    "shape, reference",
    [((20_000, 3), nn.BatchNorm1d), ((500, 3, 8, 5), nn.BatchNorm2d)],
)
def test_noisy_bn_is_torch_bn_plus_noise_of_the_drawn_mean_and_variance(shape, reference):
    torch.manual_seed(0)
    noisy = NoisyBatchNorm(3, mean_bound=2.0, var_bound=3.0)
    bn = reference(3)
    with torch.no_grad():
        for layer in (noisy, bn):
            layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            layer.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    x = torch.randn(shape) * 3.0 + 2.0
    noise = noisy(x) - bn(x)
    # The running statistics are BN's own.
    assert torch.allclose(noisy.running_mean, bn.running_mean)
    assert torch.allclose(noisy.running_var, bn.running_var)
    # The drawn parameters lie in their ranges.
    assert noisy.noise_mean.abs().max() <= 2.0
    assert noisy.noise_var.min() >= 1.0 and noisy.noise_var.max() <= 3.0
    # Per channel, the noise has the drawn mean and variance (within sampling error).
    per_channel = noise.transpose(0, 1).reshape(3, -1)
    count = per_channel.shape[1]
    mean_tolerance = 5 * torch.sqrt(noisy.noise_var / count)
    assert torch.all((per_channel.mean(dim=1) - noisy.noise_mean).abs() < mean_tolerance)
    var_tolerance = 5 * math.sqrt(2 / count) * noisy.noise_var
    assert torch.all((per_channel.var(dim=1) - noisy.noise_var).abs() < var_tolerance)


def test_noisy_bn_redraws_its_noise_distribution_at_every_step():
    torch.manual_seed(1)
    layer = NoisyBatchNorm(4)
    x = torch.randn(16, 4)
    layer(x)
    first = (layer.noise_mean.clone(), layer.noise_var.clone())
    layer(x)
    assert not torch.equal(first[0], layer.noise_mean)
    assert not torch.equal(first[1], layer.noise_var)


def test_noisy_bn_is_seeded_by_the_global_generator():
    x = torch.randn(16, 4)
    layer = NoisyBatchNorm(4)
    torch.manual_seed(7)
    a = layer(x)
    torch.manual_seed(7)
    b = layer(x)
    assert torch.equal(a, b)


def test_noisy_bn_in_eval_mode_is_deterministic_torch_bn():
    torch.manual_seed(2)
    noisy, bn = NoisyBatchNorm(3), nn.BatchNorm2d(3)
    x = torch.randn(10, 3, 4, 4) * 2 + 1
    noisy(x)
    bn(x)
    noisy.eval()
    bn.eval()
    y = torch.randn(6, 3, 4, 4)
    assert torch.allclose(noisy(y), bn(y), atol=1e-6)
    assert torch.equal(noisy(y), noisy(y))


def test_noisy_mlp_of_the_models_module_runs():
    from bnlib import models

    model = models.sigmoid_mlp(norm="noisy_batch", hidden=(6, 5), in_features=4, classes=3)
    assert sum(isinstance(m, NoisyBatchNorm) for m in model.modules()) == 2
    assert model(torch.randn(7, 4)).shape == (7, 3)
