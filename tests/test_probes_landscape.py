"""The loss along the gradient against the closed forms of a quadratic loss."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from probe_models import bn_mlp
from torch import nn

from bnlib.probes import LandscapeProbe, gradient_landscape


def test_landscape_of_a_quadratic_loss_matches_the_closed_form():
    torch.manual_seed(8)
    n, d = 30, 4
    X = torch.randn(n, d, dtype=torch.float64)
    y = torch.randn(n, 1, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    w = model.weight.detach().numpy().reshape(d).copy()
    etas = [0.0, 0.05, 0.2, 0.4]
    got = gradient_landscape(model, X, y, etas, loss_fn=F.mse_loss)

    Xn, yn = X.numpy(), y.numpy().reshape(n)
    H = 2 * Xn.T @ Xn / n  # L(w) = mean((Xw - y)^2) = quadratic with Hessian H
    g = 2 * Xn.T @ (Xn @ w - yn) / n
    loss = np.mean((Xn @ w - yn) ** 2)
    losses = [loss - e * g @ g + 0.5 * e**2 * g @ H @ g for e in etas]
    changes = [e * np.linalg.norm(H @ g) for e in etas]
    assert got["loss"] == pytest.approx(loss, rel=1e-12)
    assert got["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert np.allclose(got["losses"], losses, rtol=1e-10)
    assert np.allclose(got["grad_changes"], changes, rtol=1e-10, atol=1e-14)
    assert got["loss_range"] == pytest.approx(max(losses) - min(losses), rel=1e-10)
    beta = np.linalg.norm(H @ g) / np.linalg.norm(g)
    assert got["beta_smoothness"] == pytest.approx(beta, rel=1e-10)
    assert np.array_equal(model.weight.detach().numpy().reshape(d), w)  # not moved


def test_landscape_leaves_a_bn_model_as_it_was():
    model = bn_mlp()
    before = copy.deepcopy(model.state_dict())
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    rng_state = torch.random.get_rng_state()
    gradient_landscape(model, x, y, [0.1, 1.0])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(rng_state, torch.random.get_rng_state())


def test_landscape_probe_summarises_the_quadratic_by_its_closed_form():
    torch.manual_seed(9)
    X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    probe = LandscapeProbe(X, y, step_sizes=(0.1, 0.3), every=1, loss="mse_loss")
    probe.start(model)
    direct = gradient_landscape(model, X, y, (0.1, 0.3), loss_fn=F.mse_loss)
    row = {k: v[0] for k, v in probe.result().items()}
    assert row["loss_min"] == min(direct["losses"])
    assert row["grad_change_max"] == max(direct["grad_changes"])
    assert row["beta_smoothness"] == direct["beta_smoothness"]


def test_landscape_needs_step_sizes_and_a_known_loss():
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    with pytest.raises(ValueError, match="step_sizes is empty"):
        LandscapeProbe(x, y, step_sizes=())
    with pytest.raises(ValueError, match="no loss 'nope'"):
        LandscapeProbe(x, y, step_sizes=(0.1,), loss="nope")
