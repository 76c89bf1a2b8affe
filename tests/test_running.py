"""bnlib.running against torch's own BN layers, Keras 3's BatchNormalization and hand-worked cases."""

import os

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.running import CONVENTIONS, momentum_for_updates, running_average, running_statistics



@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_running_average_matches_torch_batchnorm_updates(momentum):
    torch.manual_seed(1)
    bn = nn.BatchNorm1d(3, momentum=momentum).double()
    batches = [torch.randn(5, 3, dtype=torch.float64) * 2 + 1 for _ in range(7)]
    torch_means, torch_vars = [], []
    for x in batches:
        bn(x)
        torch_means.append(bn.running_mean.clone().numpy())
        torch_vars.append(bn.running_var.clone().numpy())
    means = [x.mean(0).numpy() for x in batches]
    unbiased = [x.var(0, unbiased=True).numpy() for x in batches]  # torch keeps the unbiased one
    np.testing.assert_allclose(running_average(means, momentum, 0.0), torch_means, rtol=0, atol=1e-12)
    np.testing.assert_allclose(running_average(unbiased, momentum, 1.0), torch_vars, rtol=0, atol=1e-12)


def test_keras_convention_by_hand_and_equal_to_pytorch_with_complementary_momentum():
    # Keras, momentum 0.9, from 0: 0.9*0 + 0.1*1 = 0.1, then 0.9*0.1 + 0.1*2 = 0.29
    np.testing.assert_allclose(running_average([1.0, 2.0], 0.9, 0.0, "keras"), [0.1, 0.29], atol=1e-15)
    # PyTorch, momentum 0.9: 0.1*0 + 0.9*1 = 0.9, then 0.1*0.9 + 0.9*2 = 1.89
    np.testing.assert_allclose(running_average([1.0, 2.0], 0.9, 0.0), [0.9, 1.89], atol=1e-15)
    values = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_allclose(running_average(values, 0.99, 1.0, "keras"),
                               running_average(values, 0.01, 1.0, "pytorch"), atol=1e-14)


def test_cumulative_average_is_the_plain_mean_so_far():
    values = np.array([3.0, 5.0, 10.0])
    np.testing.assert_allclose(running_average(values, None, initial=100.0), [3.0, 4.0, 6.0])


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_values": []}, "non-empty"),
    ({"batch_values": [1.0], "convention": "tf"}, "convention"),
    ({"batch_values": [1.0], "momentum": None, "convention": "keras"}, "Keras"),
    ({"batch_values": [1.0], "momentum": 1.5}, r"\[0, 1\]"),
])
def test_running_average_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        running_average(**kwargs)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_running_statistics_pytorch_equals_torch_batchnorm2d_buffers(momentum):
    torch.manual_seed(6)
    bn = nn.BatchNorm2d(3, momentum=momentum).double()
    batches = [torch.randn(4, 3, 5, 5, dtype=torch.float64) * 2 + 1 for _ in range(9)]
    for x in batches:
        bn(x)
    mean, var = running_statistics(batches, "pytorch", momentum=momentum)
    np.testing.assert_allclose(mean, bn.running_mean.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(var, bn.running_var.numpy(), rtol=0, atol=1e-12)


def test_running_statistics_keras_by_hand():
    # one channel, batches [0, 2] and [4, 4]: biased variances 1 and 0; momentum 0.5
    batches = [torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0], [4.0]])]
    mean, var = running_statistics(batches, "keras", momentum=0.5)
    # mean: 0.5*0 + 0.5*1 = 0.5, then 0.5*0.5 + 0.5*4 = 2.25
    # var:  0.5*1 + 0.5*1 = 1.0, then 0.5*1.0 + 0.5*0 = 0.5 (PyTorch would feed 2, then 0)
    np.testing.assert_allclose(mean, [2.25], atol=1e-15)
    np.testing.assert_allclose(var, [0.5], atol=1e-15)
    with pytest.raises(ValueError, match="convention"):
        running_statistics(batches, "tf")


def test_keras_convention_rule_equals_the_real_keras_batch_normalization():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras  # pinned in requirements.txt: a missing install fails, not skips
    assert keras.backend.backend() == "torch"
    layer = keras.layers.BatchNormalization(axis=1)
    assert layer.momentum == CONVENTIONS["keras"]["momentum"]
    assert layer.epsilon == CONVENTIONS["keras"]["eps"]
    generator = torch.Generator().manual_seed(7)
    # few values per channel (m = 4), so the biased and unbiased variances differ by 4/3
    batches = [torch.randn(2, 3, 2, 1, generator=generator) * 3 + 2 for _ in range(40)]
    for x in batches:
        layer(x, training=True)
    mean, var = running_statistics(batches, "keras")
    keras_mean = layer.moving_mean.value.detach().double().numpy()
    keras_var = layer.moving_variance.value.detach().double().numpy()
    np.testing.assert_allclose(keras_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras_var, var, rtol=1e-5, atol=1e-6)
    # and not PyTorch's rule: with unbiased variances fed in, the variance is off by far more
    _, pytorch_var = running_statistics(batches, "pytorch", momentum=0.01)
    assert np.abs(keras_var - pytorch_var).min() > 1e-2


@pytest.mark.parametrize("momentum", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("updates", [1, 2, 4])
def test_k_updates_of_the_same_batch_equal_one_update_in_torch(momentum, updates):
    """A forward repeated k times on one batch (checkpointing: k = 2) with the per-update
    momentum leaves torch's running statistics where one update of ``momentum`` leaves them."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64) * 3 + 2
    once = nn.BatchNorm2d(3, momentum=momentum).double().train()
    repeated = nn.BatchNorm2d(3, momentum=momentum_for_updates(momentum, updates)).double().train()
    once(x)
    for _ in range(updates):
        repeated(x)
    torch.testing.assert_close(repeated.running_mean, once.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(repeated.running_var, once.running_var, rtol=1e-12, atol=1e-12)


def test_momentum_for_updates_by_hand():
    assert momentum_for_updates(0.1, 1) == pytest.approx(0.1, rel=1e-15)
    assert momentum_for_updates(0.1, 2) == pytest.approx(1 - 0.9 ** 0.5, rel=1e-15)  # 0.05132...
    assert momentum_for_updates(0.19, 2) == pytest.approx(0.1, rel=1e-12)  # 0.81 = 0.9 ** 2
    assert momentum_for_updates(1.0, 3) == 1.0  # forget everything: each update does
    assert momentum_for_updates(0.0, 3) == 0.0
    assert momentum_for_updates(None, 4) is None


def test_momentum_for_updates_for_micro_batches_is_right_in_expectation():
    """k micro-batches with per-update momentum keep (1 - momentum) of the old value, as one
    update does; the rest is spread over the micro-batches (later ones weigh more)."""
    m, k = 0.1, 4
    per_update = momentum_for_updates(m, k)
    weights = [per_update * (1 - per_update) ** (k - 1 - i) for i in range(k)]
    assert (1 - per_update) ** k == pytest.approx(1 - m, rel=1e-12)
    assert sum(weights) == pytest.approx(m, rel=1e-12)
    assert weights[-1] > weights[0]


@pytest.mark.parametrize("momentum, updates", [(0.1, 0), (0.1, 1.5), (0.1, True), (1.5, 2), (-0.1, 2)])
def test_momentum_for_updates_rejects_bad_input(momentum, updates):
    with pytest.raises(ValueError):
        momentum_for_updates(momentum, updates)
