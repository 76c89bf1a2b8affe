"""bnlib.experiments.variant_identities (and the ghost-batch layer) against independent references: torch's own layers, direct formulas written out
here, hand-computed cases, and the published invariance tables. (bnlib.nn's BatchRenorm2d and
RMSNorm are tested in test_nn.py.)"""

from __future__ import annotations


import pytest
import torch
from torch import nn

from bnlib import models
from bnlib.experiments import variant_identities as variants
from bnlib import nn as bnlib_nn
from bnlib.nn import GhostBatchNorm2d
from bnlib.seeds import summarize


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _batches(steps: int, n: int = 8, c: int = 3, hw: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, hw, hw, generator=g) * 2 + 1 for _ in range(steps)]


def _affine(layer: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) + 0.5)
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))


def _forward_backward(layer: nn.Module, x: torch.Tensor, dy: torch.Tensor):
    x = x.clone().requires_grad_()
    y = layer(x)
    (y * dy).sum().backward()
    return y.detach(), x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()


def _assert_same_running_stats(a: nn.Module, b: nn.Module) -> None:
    torch.testing.assert_close(a.running_mean, b.running_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.running_var, b.running_var, rtol=0, atol=1e-12)
    assert int(a.num_batches_tracked) == int(b.num_batches_tracked)


# --------------------------------------------------------------------------- equal to torch BN


@pytest.mark.parametrize(
    "make", [lambda: GhostBatchNorm2d(3, ghost_batch_size=8, momentum=0.3),
             lambda: GhostBatchNorm2d(3, ghost_batch_size=100, momentum=0.3),
             lambda: GhostBatchNorm2d(3, 8, momentum=0.3, rmax=1.0, dmax=0.0, warmup_steps=5)],
    ids=["ghost=N", "ghost>N", "renorm r=1 d=0"],
)
def test_special_cases_equal_torch_batch_norm(make):
    ours, theirs = make(), nn.BatchNorm2d(3, momentum=0.3)
    _affine(ours)
    theirs.load_state_dict(ours.state_dict())
    dys = _batches(3, seed=7)
    for x, dy in zip(_batches(3), dys):
        for layer in (ours, theirs):
            layer.zero_grad()
        for got, want in zip(_forward_backward(ours, x, dy), _forward_backward(theirs, x, dy)):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        _assert_same_running_stats(ours, theirs)
    ours.eval(), theirs.eval()
    x = _batches(1, seed=3)[0]
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, k", [(8, 2), (8, 4), (10, 4), (5, 1)])
def test_ghost_batches_are_normalised_separately(n, k):
    """Each group of k images equals torch's BN applied to that group alone; gradients flow only
    within a group; the running statistics move towards the groups' average."""
    x = _batches(1, n=n)[0]
    dy = _batches(1, n=n, seed=5)[0]
    ghost = GhostBatchNorm2d(3, ghost_batch_size=k, momentum=0.2)
    _affine(ghost)
    y, dx, dw, db = _forward_backward(ghost, x, dy)

    want_dw, want_db, means, variances = 0, 0, [], []
    for start in range(0, n, k):
        alone = nn.BatchNorm2d(3, momentum=1.0)  # momentum 1: running = this group's statistics
        _affine(alone)
        y_g, dx_g, dw_g, db_g = _forward_backward(alone, x[start:start + k], dy[start:start + k])
        torch.testing.assert_close(y[start:start + k], y_g, rtol=0, atol=1e-12)
        torch.testing.assert_close(dx[start:start + k], dx_g, rtol=0, atol=1e-12)
        want_dw, want_db = want_dw + dw_g, want_db + db_g
        means.append(alone.running_mean)
        variances.append(alone.running_var)
    torch.testing.assert_close(dw, want_dw, rtol=0, atol=1e-12)
    torch.testing.assert_close(db, want_db, rtol=0, atol=1e-12)
    average_mean = sum(means) / len(means)
    average_var = sum(variances) / len(variances)
    torch.testing.assert_close(ghost.running_mean, 0.2 * average_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(ghost.running_var, 0.8 + 0.2 * average_var, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- batch renorm


def _renorm_reference(x, weight, bias, running_mean, running_var, eps, rmax, dmax):
    """Ioffe 2017, Algorithm 1, written out: statistics per channel over N, H, W."""
    mu = x.mean(dim=(0, 2, 3))
    sigma_b = torch.sqrt(((x - mu.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3)) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = torch.clamp(sigma_b.detach() / sigma, 1 / rmax, rmax)
    d = torch.clamp((mu.detach() - running_mean) / sigma, -dmax, dmax)
    def c(t):  # (C,) -> (1, C, 1, 1)
        return t.view(1, -1, 1, 1)

    x_hat = (x - c(mu)) / c(sigma_b) * c(r) + c(d)
    return c(weight) * x_hat + c(bias), r, d


def test_batch_renorm_matches_the_paper_formula_with_clipping():
    x = _batches(1, n=6, c=4)[0]
    dy = _batches(1, n=6, c=4, seed=9)[0]
    layer = GhostBatchNorm2d(4, 6, rmax=2.0, dmax=0.5, momentum=0.1)
    _affine(layer)
    # running statistics chosen so that r and d are clipped in some channels and not in others
    layer.running_mean.copy_(torch.tensor([1.0, 0.0, 5.0, -3.0]))
    layer.running_var.copy_(torch.tensor([4.0, 100.0, 0.5, 1.0]))
    ref_in = x.clone().requires_grad_()
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    y_ref, r, d = _renorm_reference(ref_in, w, b, layer.running_mean.clone(),
                                    layer.running_var.clone(),
                                    layer.eps, 2.0, 0.5)
    (y_ref * dy).sum().backward()
    assert (r == 2.0).any() or (r == 0.5).any(), "the case must exercise r's clipping"
    assert (r.abs() < 2.0).any() and (d.abs() == 0.5).any() and (d.abs() < 0.5).any()

    y, dx, dw, db = _forward_backward(layer, x, dy)
    torch.testing.assert_close(y, y_ref.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(dx, ref_in.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(dw, w.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(db, b.grad, rtol=0, atol=1e-12)


def test_batch_renorm_hand_computed_channel():
    """One channel, values 0 and 2 (mean 1, biased variance 1), running mean 0 and variance 4,
    eps ~ 0: sigma_B = 1, sigma = 2, r = 1/2, d = 1/2, so x_hat = (x - 1) * 1/2 + 1/2 = x / 2."""
    layer = GhostBatchNorm2d(1, 2, eps=1e-14, rmax=3.0, dmax=5.0)
    layer.running_var.fill_(4.0)
    x = torch.tensor([0.0, 2.0]).view(2, 1, 1, 1)
    y = layer(x).detach().flatten()
    torch.testing.assert_close(y, torch.tensor([0.0, 1.0]), rtol=0, atol=1e-13)


def test_batch_renorm_first_warmup_step_is_batch_norm():
    ours, theirs = GhostBatchNorm2d(3, 8, rmax=3.0, dmax=5.0, warmup_steps=100), nn.BatchNorm2d(3)
    x = _batches(1)[0]
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)
    _assert_same_running_stats(ours, theirs)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)


def test_ghost_renorm_groups_equal_whole_batch_renorm_on_each_group():
    """With rmax/dmax, each ghost batch is renormalised against the same running statistics,
    as bnlib.nn.BatchRenorm2d (tested against the paper in test_nn.py) would do it alone."""
    x, dy = _batches(1, n=8)[0], _batches(1, n=8, seed=4)[0]
    ghost = GhostBatchNorm2d(3, 4, rmax=1.5, dmax=0.2)
    ghost.running_mean.copy_(torch.tensor([0.5, 2.0, -1.0]))
    ghost.running_var.copy_(torch.tensor([1.0, 9.0, 0.3]))
    _affine(ghost)
    y, dx, _, _ = _forward_backward(ghost, x, dy)
    for start in (0, 4):
        alone = bnlib_nn.BatchRenorm2d(3, rmax=1.5, dmax=0.2)
        alone.load_state_dict({**ghost.state_dict(), "running_mean": torch.tensor([0.5, 2.0, -1.0]),
                               "running_var": torch.tensor([1.0, 9.0, 0.3]),
                               "num_batches_tracked": torch.tensor(0)})
        y_g, dx_g, _, _ = _forward_backward(alone, x[start:start + 4], dy[start:start + 4])
        torch.testing.assert_close(y[start:start + 4], y_g, rtol=0, atol=1e-12)
        torch.testing.assert_close(dx[start:start + 4], dx_g, rtol=0, atol=1e-12)


def test_warmup_relaxes_limits_linearly():
    layer = GhostBatchNorm2d(2, 4, rmax=3.0, dmax=5.0, warmup_steps=100)
    assert layer.current_limits() == (1.0, 0.0)
    layer.num_batches_tracked.fill_(50)
    assert layer.current_limits() == (2.0, 2.5)
    layer.num_batches_tracked.fill_(1000)
    assert layer.current_limits() == (3.0, 5.0)
    layer.rmax = 1.5  # a schedule of one's own may set the limits
    assert layer.current_limits() == (1.5, 5.0)


def test_bad_arguments_are_rejected_clearly():
    with pytest.raises(ValueError, match="rmax must be at least 1"):
        GhostBatchNorm2d(2, 4, rmax=0.5)
    with pytest.raises(ValueError, match="dmax must be at least 0"):
        GhostBatchNorm2d(2, 4, dmax=-1)
    with pytest.raises(ValueError, match="ghost_batch_size"):
        GhostBatchNorm2d(2, ghost_batch_size=0)
    with pytest.raises(ValueError, match="one value per channel"):
        GhostBatchNorm2d(2, ghost_batch_size=1)(torch.randn(4, 2, 1, 1))
    with pytest.raises(ValueError, match="4D input"):
        GhostBatchNorm2d(2, ghost_batch_size=2)(torch.randn(4, 2))
    with pytest.raises(ValueError, match="num_features=3"):
        GhostBatchNorm2d(2, ghost_batch_size=2)(torch.randn(4, 3, 2, 2))


# --------------------------------------------------------------------------- invariances


def test_measured_invariances_agree_with_the_published_tables():
    differences = variants.invariance_differences()
    assert variants.invariance_table(differences) == variants.BA_2016_TABLE
    small = [v for v in differences.values() if v < 1e-8]
    large = [v for v in differences.values() if v >= 1e-8]
    assert max(small) < 1e-11 and min(large) > 1e-2  # no borderline cell


def test_normalised_linear_equals_torch_functions():
    g = torch.Generator().manual_seed(2)
    w, x = torch.randn(5, 3, generator=g), torch.randn(9, 3, generator=g)
    a = x @ w.T
    eps = 1e-12
    F = nn.functional
    torch.testing.assert_close(variants.normalised_linear("batch norm", w, x),
                               F.batch_norm(a, None, None, training=True, eps=eps))
    torch.testing.assert_close(variants.normalised_linear("layer norm", w, x),
                               F.layer_norm(a, (5,), eps=eps))
    torch.testing.assert_close(variants.normalised_linear("RMSNorm", w, x),
                               F.rms_norm(a, (5,), eps=eps))
    wn = nn.utils.parametrizations.weight_norm(nn.Linear(3, 5, bias=False))
    with torch.no_grad():
        wn.parametrizations.weight.original0.fill_(1.0)  # g = 1
        wn.parametrizations.weight.original1.copy_(w)  # v = W
    torch.testing.assert_close(variants.normalised_linear("weight norm", w, x), wn(x).detach())
    with pytest.raises(ValueError, match="unknown method"):
        variants.normalised_linear("batch", w, x)


def test_invariance_markdown_has_one_row_per_method():
    differences = {("a", "s"): 1e-15, ("a", "t"): 0.5, ("b", "s"): 0.2, ("b", "t"): 0.0}
    text = variants.invariance_markdown(differences)
    lines = text.splitlines()
    assert lines[0] == "| method | s | t |" and len(lines) == 4  # every column has a header
    assert lines[2].startswith("| a | **invariant**") and "no (5e-01)" in lines[2]


# --------------------------------------------------------------------------- the models registry


def test_models_registry_passes_norm_options():
    net = models.three_conv_net(norm="ghost_batch", norm_options={"ghost_batch_size": 4})
    assert [m.ghost_batch_size for m in net if isinstance(m, GhostBatchNorm2d)] == [4, 4, 4]
    assert net(torch.randn(8, 1, 32, 32)).shape == (8, 10)
    net = models.three_conv_net(norm="batch_renorm", norm_options=(("rmax", 2.0),))
    assert isinstance(net[1], bnlib_nn.BatchRenorm2d) and net[1].rmax == 2.0


# --------------------------------------------------------------------------- measurements and words


def test_identities_and_namesakes_are_round_off_and_a_real_difference_shows():
    assert max(variants.axes_identities().values()) < 1e-12
    assert max(variants.namesake_differences().values()) < 1e-12
    x = _batches(1)[0]
    ours, theirs = nn.BatchNorm2d(3, eps=1e-5), nn.BatchNorm2d(3, eps=0.1)
    assert variants.module_differences(ours, theirs, x) > 1e-3


def test_figures_have_labelled_axes():
    import matplotlib.pyplot as plt

    from bnlib import plots

    fig = plots.normalisation_blocks()
    assert [ax.get_zlabel() for ax in fig.axes] == ["N"] * 4
    summary = {("batch norm", 32): summarize([0.02, 0.04]), ("batch norm", 2): summarize([0.05, 0.05]),
               ("group norm", 0): summarize([0.05, 0.07])}
    fig2 = plots.batch_size_curve(summary)
    ax = fig2.axes[0]
    assert "test error" in ax.get_ylabel() and "images k" in ax.get_xlabel()
    assert ax.get_xlim()[0] > ax.get_xlim()[1]  # large k on the left, as in Wu & He
    with pytest.raises(ValueError, match="no 'batch norm' rows"):
        plots.batch_size_curve({("group norm", 0): summary[("group norm", 0)]})
    plt.close("all")
