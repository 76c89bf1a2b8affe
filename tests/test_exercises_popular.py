"""bnlib.exercises.popular: the tutorial layer equals torch's; each popular departure does what
its docstring says (checked against hand-computed values), and the module checker names it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnlib.exercises import popular

GEN = torch.Generator().manual_seed(11)
X2 = 1.0 + 2.0 * torch.randn(4, 3, generator=GEN, dtype=torch.float64)
X4 = 1.0 + 2.0 * torch.randn(4, 3, 2, 2, generator=GEN, dtype=torch.float64)


def _torch(x):
    return (nn.BatchNorm1d if x.dim() == 2 else nn.BatchNorm2d)(3).double()


@pytest.mark.parametrize("x", [X2, X4], ids=["fc", "conv"])
def test_tutorial_layer_equals_torch_in_train_and_eval(x):
    ours, theirs = popular.TutorialBatchNorm(3).double(), _torch(x)
    for k in range(3):
        assert torch.allclose(ours(x + k), theirs(x + k), rtol=0, atol=1e-12)
    assert torch.allclose(ours.running_var, theirs.running_var, rtol=0, atol=1e-12)
    assert torch.allclose(ours.eval()(x), theirs.eval()(x), rtol=0, atol=1e-12)
    assert set(ours.state_dict()) == {"weight", "bias", "running_mean", "running_var"}


def test_module_checker_passes_the_tutorial_layer_and_torchs_own():
    assert popular.check_batch_norm_module(popular.TutorialBatchNorm)

    def torch_layer(c):  # BatchNorm1d accepts (N, C) only: a layer for both shapes
        return TorchEither(c)

    assert popular.check_batch_norm_module(torch_layer)


class TorchEither(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.weight, self.bias = self.bn.weight, self.bn.bias

    @property
    def running_mean(self):
        return self.bn.running_mean

    @property
    def running_var(self):
        return self.bn.running_var

    def forward(self, x):
        return self.bn(x[..., None, None]).flatten(1) if x.dim() == 2 else self.bn(x)


@pytest.mark.parametrize("mistake", popular.MODULE_MISTAKES, ids=lambda m: m.name)
def test_module_checker_names_each_popular_departure(mistake):
    name = next(k for k, v in popular.DESCRIPTIONS.items() if v == mistake.name)
    verdict = popular.check_batch_norm_module(popular.VARIANTS[name])
    assert not verdict and verdict.mistake == mistake.name
    assert max(verdict.errors.values()) > 1e4 * verdict.tolerance
    assert all(len(line) <= 79 for line in repr(verdict).splitlines())


def test_module_checker_unknown_departure_and_broken_layers():
    other = popular.check_batch_norm_module(lambda c: popular.TutorialBatchNorm(c, momentum=0.3))
    assert not other and other.mistake == ""
    assert other.errors["train y fc"] < 1e-12 and other.errors["running mean fc"] > 1e-3
    broken = popular.check_batch_norm_module(lambda c: nn.Identity())
    assert not broken and "raised AttributeError" in repr(broken)


def test_grad_mode_switch_follows_autograd_not_train_eval():
    layer = popular.GradModeSwitch(3).double()
    with torch.no_grad():
        y = layer(X2)  # train() but no_grad: the running statistics (zeros and ones)
    assert torch.allclose(y, X2 / (1 + 1e-5) ** 0.5, rtol=0, atol=1e-12)
    layer.eval()
    y = layer(X2)  # eval() but gradients on: the batch statistics
    assert torch.allclose(y, _torch(X2)(X2), rtol=0, atol=1e-12)


def test_biased_running_variance_and_unbiased_normalisation():
    m = 4
    biased = X2.var(dim=0, correction=0)
    layer = popular.BiasedRunningVariance(3).double()
    layer(X2)
    assert torch.allclose(layer.running_var, 0.9 + 0.1 * biased, rtol=0, atol=1e-12)
    y = popular.UnbiasedNormalisation(3).double()(X2)
    expected = (X2 - X2.mean(0)) / torch.sqrt(biased * m / (m - 1) + 1e-5)
    assert torch.allclose(y, expected, rtol=0, atol=1e-12)


def test_detached_statistics_give_the_direct_path_only():
    x = X2.clone().requires_grad_(True)
    dy = torch.randn(4, 3, generator=GEN, dtype=torch.float64)
    (popular.DetachedStatistics(3).double()(x) * dy).sum().backward()
    direct = dy / torch.sqrt(X2.var(dim=0, correction=0) + 1e-5)
    assert torch.allclose(x.grad, direct, rtol=0, atol=1e-12)
    assert x.grad.sum(0).abs().max() > 1e-3  # a BN gradient would sum to zero


def test_plain_tensor_statistics_leave_the_state_dict_and_keras_momentum():
    plain = popular.PlainTensorStatistics(3).double()
    plain(X2)
    assert set(plain.state_dict()) == {"weight", "bias"}
    assert plain.running_mean.abs().max() > 0.01  # it did update, as a plain attribute
    keras = popular.KerasMomentum(3).double()
    keras(X2)
    assert torch.allclose(keras.running_mean, 0.99 * X2.mean(0), rtol=0, atol=1e-12)


def test_every_variant_has_a_source_and_a_description():
    assert set(popular.SOURCES) == set(popular.VARIANTS) == set(popular.DESCRIPTIONS)
    assert all(len(d) <= 60 for d in popular.DESCRIPTIONS.values())
