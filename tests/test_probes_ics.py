"""Santurkar et al.'s gradient ICS against a hand computation and an explicit
copy-and-update of the model."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from probe_models import bn_mlp, noisy_model
from torch import nn

from bnlib.probes import ics_measure


def test_ics_is_zero_without_an_update_of_the_earlier_layers():
    model = bn_mlp()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    m = ics_measure(model, 2, x, y, lr=0.0)
    assert m["diff_norm"] == 0.0 and m["relative"] == 0.0
    assert m["cosine"] == pytest.approx(1.0, abs=1e-12)
    first = ics_measure(model, 0, x, y, lr=1.0)  # nothing comes before the first layer
    assert first["diff_norm"] == 0.0


def test_ics_of_a_two_weight_linear_chain_matches_the_hand_computation():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)).double()
    w1, w2, x, y, lr = 0.7, -1.3, 2.0, 0.5, 0.1
    with torch.no_grad():
        model[0].weight.fill_(w1)
        model[1].weight.fill_(w2)
    # L = (w2 w1 x - y)^2
    g = 2 * (w2 * w1 * x - y) * w1 * x
    w1_new = w1 - lr * 2 * (w2 * w1 * x - y) * w2 * x
    g_new = 2 * (w2 * w1_new * x - y) * w1_new * x
    m = ics_measure(
        model, "1", torch.tensor([[x]], dtype=torch.float64),
        torch.tensor([[y]], dtype=torch.float64), lr, loss_fn=F.mse_loss,
    )
    assert m["grad_norm"] == pytest.approx(abs(g), rel=1e-12)
    assert m["diff_norm"] == pytest.approx(abs(g - g_new), rel=1e-12)
    assert m["cosine"] == pytest.approx(math.copysign(1.0, g * g_new), rel=1e-12)
    assert model[0].weight.item() == w1  # the model itself was not updated


def test_ics_matches_an_explicit_copy_with_a_manual_update():
    model = bn_mlp()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    lr = 0.3
    before_params = copy.deepcopy(model.state_dict())
    got = ics_measure(model, 2, x, y, lr)  # the third Linear, module "6"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before_params[k])
    assert model.training

    ref = copy.deepcopy(model)
    F.cross_entropy(ref(x), y).backward()
    g = ref[6].weight.grad.clone()
    with torch.no_grad():
        for layer in ref[:6]:
            for p in layer.parameters():
                p -= lr * p.grad
    ref.zero_grad()
    F.cross_entropy(ref(x), y).backward()
    g_new = ref[6].weight.grad
    assert got["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-10)
    assert got["diff_norm"] == pytest.approx(float((g - g_new).norm()), rel=1e-10)
    assert got["relative"] == pytest.approx(float((g - g_new).norm() / g.norm()), rel=1e-10)
    cosine = float((g * g_new).sum() / (g.norm() * g_new.norm()))
    assert got["cosine"] == pytest.approx(cosine, rel=1e-10)
    assert got["diff_norm"] > 0


def test_ics_is_zero_at_lr_zero_even_with_noise_after_bn():
    model = noisy_model()
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    assert ics_measure(model, 2, x, y, lr=0.0)["diff_norm"] == 0.0


def test_ics_rejects_a_layer_out_of_range():
    with pytest.raises(ValueError, match="3 Linear/Conv layers"):
        ics_measure(bn_mlp(), 5, torch.randn(4, 4), torch.zeros(4, dtype=torch.long), 0.1)
