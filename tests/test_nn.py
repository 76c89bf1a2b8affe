"""bnlib.nn against its torch.nn namesakes: outputs, gradients, running statistics, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

import bnlib.nn as bn


F64 = torch.float64
OUT_TOL = {"rtol": 1e-7, "atol": 1e-10}  # outputs, float64
GRAD_TOL = {"rtol": 1e-6, "atol": 1e-9}  # gradients, float64


def _randomize(layer: torch.nn.Module, seed: int) -> None:
    """Non-trivial parameters and running statistics, so a swapped or ignored one shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in itertools.chain(layer.named_parameters(), layer.named_buffers()):
            if t is None or not t.is_floating_point():
                continue
            values = torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5
            t.copy_(values if name != "bias" and name != "running_mean" else values - 1.0)


def _pair(name: str, *args, seed: int = 0, **kwargs):
    """The torch layer and ours, float64, with the same (random) state loaded into ours."""
    theirs = getattr(torch.nn, name)(*args, dtype=F64, **kwargs)
    _randomize(theirs, seed)
    ours = getattr(bn, name)(*args, dtype=F64, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _step(layer, x, dy):
    """Output and gradients (input, then each parameter) of one forward/backward."""
    x = x.clone().requires_grad_()
    y = layer(x)
    params = [p for p in (layer.weight, getattr(layer, "bias", None)) if p is not None]
    grads = torch.autograd.grad(y, [x, *params], dy)
    return y.detach(), grads


def _assert_same_steps(theirs, ours, shape, steps=3, seed=0, offset=1.5, scale=2.0):
    """Run both layers on the same batches; compare outputs, gradients and every buffer."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(shape, generator=gen, dtype=F64) * scale + offset
        dy = torch.randn(shape, generator=gen, dtype=F64)
        y_t, g_t = _step(theirs, x, dy)
        y_o, g_o = _step(ours, x, dy)
        torch.testing.assert_close(y_o, y_t, **OUT_TOL)
        assert len(g_o) == len(g_t)
        for a, b in zip(g_o, g_t):
            torch.testing.assert_close(a, b, **GRAD_TOL)
        _assert_same_buffers(theirs, ours)


def _assert_same_buffers(theirs, ours):
    t_buf, o_buf = dict(theirs.named_buffers()), dict(ours.named_buffers())
    assert t_buf.keys() == o_buf.keys()
    for key in t_buf:
        torch.testing.assert_close(o_buf[key], t_buf[key], rtol=1e-12, atol=1e-14)


# --- batch norm: the grid -------------------------------------------------------------------------

BN_CASES = [("BatchNorm1d", (8, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (4, 3, 5, 6)),
            ("BatchNorm2d", (2, 3, 1, 2))]


@pytest.mark.parametrize("name,shape", BN_CASES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_matches_torch_in_train_and_eval(name, shape, affine, track, momentum):
    theirs, ours = _pair(name, shape[1], affine=affine, track_running_stats=track,
                         momentum=momentum)
    _assert_same_steps(theirs, ours, shape, steps=3)
    theirs.eval()
    ours.eval()
    _assert_same_steps(theirs, ours, shape, steps=1, seed=1)


def test_batch_norm_without_bias_and_extra_kwargs():
    theirs, ours = _pair("BatchNorm2d", 3, eps=1e-3, momentum=0.3, bias=False)
    assert ours.bias is None and ours.weight is not None
    _assert_same_steps(theirs, ours, (4, 3, 2, 3))


def test_batch_norm_float32_spot_check():
    theirs, ours = torch.nn.BatchNorm2d(4), bn.BatchNorm2d(4)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(8, 4, 6, 6, generator=gen) * 3 + 5
    dy = torch.randn(8, 4, 6, 6, generator=gen)
    (y_t, g_t), (y_o, g_o) = _step(theirs, x, dy), _step(ours, x, dy)
    torch.testing.assert_close(y_o, y_t, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_o, g_t):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-6, atol=1e-6)


def test_running_stats_from_the_data():
    """Running statistics against formulas applied directly to the batches (not to torch)."""
    gen = torch.Generator().manual_seed(4)
    batches = [torch.randn(5, 2, 3, 3, generator=gen, dtype=F64) * (i + 1) + i for i in range(4)]
    means = [b.mean((0, 2, 3)) for b in batches]
    unbiased = [b.transpose(0, 1).reshape(2, -1).var(dim=1, correction=1) for b in batches]

    ema = bn.BatchNorm2d(2, dtype=F64)
    cumulative = bn.BatchNorm2d(2, momentum=None, dtype=F64)
    for b in batches:
        ema(b)
        cumulative(b)
    expected_mean, expected_var = torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)
    for m, v in zip(means, unbiased):
        expected_mean = 0.9 * expected_mean + 0.1 * m
        expected_var = 0.9 * expected_var + 0.1 * v
    torch.testing.assert_close(ema.running_mean, expected_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ema.running_var, expected_var, rtol=1e-12, atol=1e-14)
    # momentum=None: the plain average of the batch statistics (the initial 0 / 1 are forgotten)
    tight = {"rtol": 1e-12, "atol": 1e-14}
    torch.testing.assert_close(cumulative.running_mean, torch.stack(means).mean(0), **tight)
    torch.testing.assert_close(cumulative.running_var, torch.stack(unbiased).mean(0), **tight)
    assert int(cumulative.num_batches_tracked) == 4


def test_two_sample_batch_norm_by_hand():
    layer = bn.BatchNorm1d(1, eps=0.0 + 1e-12, dtype=F64)
    y = layer(torch.tensor([[1.0], [3.0]], dtype=F64))
    torch.testing.assert_close(y, torch.tensor([[-1.0], [1.0]], dtype=F64), rtol=1e-9, atol=1e-9)
    # running: mean 0.9*0 + 0.1*2, unbiased variance of (1, 3) is 2: 0.9*1 + 0.1*2
    torch.testing.assert_close(layer.running_mean, torch.tensor([0.2], dtype=F64))
    torch.testing.assert_close(layer.running_var, torch.tensor([1.1], dtype=F64))


def test_eval_mode_uses_running_stats_by_hand():
    layer = bn.BatchNorm1d(2, dtype=F64).eval()
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([1.0, -2.0]))
        layer.running_var.copy_(torch.tensor([4.0, 0.25]))
        layer.weight.copy_(torch.tensor([2.0, 1.0]))
        layer.bias.copy_(torch.tensor([0.5, 0.0]))
    layer.eps = 0.0
    y = layer(torch.tensor([[3.0, -1.0]], dtype=F64))  # a batch of one is fine in eval mode
    expected = torch.tensor([[2.0 * (3 - 1) / 2 + 0.5, (-1 + 2) / 0.5]], dtype=F64)
    torch.testing.assert_close(y, expected)


# --- gradcheck (autograd's own finite differences) ------------------------------------------------


def _gradcheck(layer, shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=F64, generator=gen).requires_grad_()
    params = tuple(p for p in (layer.weight, layer.bias) if p is not None)

    def f(x, *ps):  # the layer with its parameters replaced by the ones gradcheck perturbs
        return torch.func.functional_call(layer, dict(zip(["weight", "bias"], ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *(p.detach().clone().requires_grad_() for p in params)))


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: bn.BatchNorm1d(3, dtype=F64), (5, 3)),
        (lambda: bn.BatchNorm2d(2, dtype=F64), (3, 2, 2, 2)),
        (lambda: bn.BatchNorm2d(2, dtype=F64).eval(), (3, 2, 2, 2)),
        (lambda: bn.LayerNorm((2, 3), dtype=F64), (3, 2, 3)),
        (lambda: bn.GroupNorm(2, 4, dtype=F64), (2, 4, 3)),
        (lambda: bn.InstanceNorm2d(2, affine=True, dtype=F64), (2, 2, 2, 3)),
    ],
)
def test_gradcheck(make, shape):
    layer = make()
    _randomize(layer, 5)
    _gradcheck(layer, shape)


def test_second_derivative_through_batch_statistics_matches_torch():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 2, 3, dtype=F64, generator=gen)
    grads = []
    for layer in (bn.BatchNorm1d(2, dtype=F64), torch.nn.BatchNorm1d(2, dtype=F64)):
        xi = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(layer(xi).pow(3).sum(), xi, create_graph=True)
        grads.append(torch.autograd.grad(g.pow(2).sum(), (xi, layer.weight)))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs)


def test_fast_first_derivative_equals_the_double_backward_capable_one():
    """The closed-form backward (no graph asked for) and the differentiable one (create_graph)
    are one formula: equal up to float64 rounding, also for a channel mean far from 0."""
    gen = torch.Generator().manual_seed(5)
    means = torch.tensor([0.0, 1e3, -5.0], dtype=F64).view(1, 3, 1, 1)
    x = torch.randn(6, 3, 4, 4, dtype=F64, generator=gen) + means
    dy = torch.randn(x.shape, dtype=F64, generator=gen)
    layer = bn.BatchNorm2d(3, dtype=F64)
    _randomize(layer, 6)
    grads = []
    for create_graph in (False, True):
        xi = x.clone().requires_grad_()
        grads.append(torch.autograd.grad(layer(xi), (xi, layer.weight, layer.bias), dy,
                                         create_graph=create_graph))
    for fast, graph in zip(*grads):
        torch.testing.assert_close(fast, graph.detach(), rtol=1e-10, atol=1e-12)


# --- the other layers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "normalized_shape,shape", [(6, (4, 6)), ((3, 4), (2, 5, 3, 4)), ([2, 2, 3], (3, 2, 2, 3))]
)
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, True)])
def test_layer_norm_matches_torch(normalized_shape, shape, affine, bias):
    theirs, ours = _pair("LayerNorm", normalized_shape, elementwise_affine=affine, bias=bias)
    _assert_same_steps(theirs, ours, shape, steps=1)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("groups,channels,shape", [(1, 4, (3, 4, 5)), (2, 4, (2, 4, 3, 3)),
                                                   (4, 4, (2, 4, 2, 3)), (3, 6, (5, 6))])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, True)])
def test_group_norm_matches_torch(groups, channels, shape, affine, bias):
    theirs, ours = _pair("GroupNorm", groups, channels, affine=affine, bias=bias)
    _assert_same_steps(theirs, ours, shape, steps=1)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (2, 3, 3)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track,momentum", [(False, 0.1), (True, 0.1), (True, None)])
def test_instance_norm_matches_torch(shape, affine, track, momentum):
    channels = shape[0] if len(shape) == 3 else shape[1]
    theirs, ours = _pair("InstanceNorm2d", channels, affine=affine, track_running_stats=track,
                         momentum=momentum)
    _assert_same_steps(theirs, ours, shape, steps=3)
    theirs.eval()
    ours.eval()
    _assert_same_steps(theirs, ours, shape, steps=1, seed=1)
    assert repr(ours) == repr(theirs)


def test_instance_norm_defaults_match_torch():
    ours, theirs = bn.InstanceNorm2d(3), torch.nn.InstanceNorm2d(3)
    assert (ours.affine, ours.track_running_stats) == (False, False)
    assert repr(ours) == repr(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()


# --- construction, state dicts, repr --------------------------------------------------------------

CONSTRUCTORS = [
    ("BatchNorm1d", (5,), {}),
    ("BatchNorm2d", (3,), {"momentum": None, "eps": 1e-3}),
    ("BatchNorm2d", (3,), {"affine": False, "track_running_stats": False}),
    ("LayerNorm", ((2, 3),), {}),
    ("LayerNorm", (4,), {"elementwise_affine": False}),
    ("GroupNorm", (2, 6), {"bias": False}),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}),
]


@pytest.mark.parametrize("name,args,kwargs", CONSTRUCTORS)
def test_state_dict_moves_both_ways(name, args, kwargs):
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    ours = getattr(bn, name)(*args, **kwargs)
    assert list(ours.state_dict().keys()) == list(theirs.state_dict().keys())
    assert repr(ours) == repr(theirs)
    _randomize(theirs, 7)
    ours.load_state_dict(theirs.state_dict())  # torch -> bnlib, strict
    _assert_same_buffers(theirs, ours)
    fresh = getattr(torch.nn, name)(*args, **kwargs)
    _randomize(ours, 8)
    fresh.load_state_dict(ours.state_dict())  # bnlib -> torch, strict
    for (k, a), (_, b) in zip(fresh.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), k


def test_device_and_dtype_kwargs():
    layer = bn.BatchNorm2d(3, device="cpu", dtype=F64)
    assert layer.weight.dtype == F64 and layer.running_var.dtype == F64
    assert layer.num_batches_tracked.dtype == torch.long
    assert bn.LayerNorm(3, dtype=F64).weight.dtype == F64
    assert bn.GroupNorm(1, 3, dtype=F64).bias.dtype == F64


# --- rejected inputs: same error type as torch, and a message saying what was wrong ---------------

REJECTED = [
    ("wrong channels", lambda m: m.BatchNorm2d(3), (2, 4, 3, 3), "channels"),
    ("wrong channels eval", lambda m: m.BatchNorm2d(3).eval(), (2, 4, 3, 3), "channels"),
    ("wrong channels 1d", lambda m: m.BatchNorm1d(3), (4, 2), "channels"),
    ("3D into BatchNorm2d", lambda m: m.BatchNorm2d(3), (2, 3, 3), "expected 4D input"),
    ("4D into BatchNorm1d", lambda m: m.BatchNorm1d(3), (2, 3, 3, 3), "expected 2D or 3D"),
    ("one value per channel", lambda m: m.BatchNorm2d(3), (1, 3, 1, 1), "more than 1 value"),
    ("one value per channel 1d", lambda m: m.BatchNorm1d(3), (1, 3), "more than 1 value"),
    ("one value, eval, no stats", lambda m: m.BatchNorm1d(3, track_running_stats=False).eval(),
     (1, 3), "more than 1 value"),
    ("layer norm shape", lambda m: m.LayerNorm((3, 4)), (2, 3, 5), "normalized_shape"),
    ("group norm channels", lambda m: m.GroupNorm(2, 4), (2, 6, 3), "channels"),
    ("group norm divisibility", lambda m: m.GroupNorm(2, 4, affine=False), (2, 5, 3), "divisible"),
    ("group norm 1D", lambda m: m.GroupNorm(2, 4), (4,), "at least 2 dimensions"),
    ("group norm single value", lambda m: m.GroupNorm(2, 2), (1, 2), "more than 1 value"),
    ("instance norm 5D", lambda m: m.InstanceNorm2d(3), (2, 3, 2, 2, 2), "3D or 4D"),
    ("instance norm one pixel", lambda m: m.InstanceNorm2d(3), (2, 3, 1, 1), "spatial element"),
    ("instance norm channels", lambda m: m.InstanceNorm2d(3, affine=True), (2, 4, 2, 2),
     "num_features"),
]


@pytest.mark.parametrize("what,make,shape,match", REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_like_torch(what, make, shape, match):
    x = torch.randn(shape)
    with pytest.raises(Exception) as torch_error:
        make(torch.nn)(x)
    with pytest.raises(torch_error.type, match=match):
        make(bn)(x)


def test_rejected_constructor_and_eps():
    with pytest.raises(ValueError, match="divisible"):
        bn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="eps must be positive"):
        bn.BatchNorm2d(2, eps=0.0)(torch.randn(2, 2, 2, 2))


def test_accepted_like_torch():
    """What torch accepts, bnlib accepts: no channel check when nothing is per channel, and a
    single sample is fine in eval mode with running statistics."""
    x = torch.randn(4, 2)
    bn.BatchNorm1d(3, affine=False, track_running_stats=False)(x)
    bn.BatchNorm2d(3).eval()(torch.randn(1, 3, 1, 1))
    with pytest.warns(UserWarning, match="does not match num_features"):
        bn.InstanceNorm2d(3)(torch.randn(2, 4, 3, 3))


# --- batch renormalisation and RMSNorm ------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_renorm_with_rmax_1_dmax_0_is_batch_norm(momentum, affine):
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum, affine=affine, dtype=F64)
    _randomize(theirs, 9)
    ours = bn.BatchRenorm2d(3, momentum=momentum, affine=affine, dtype=F64, rmax=1.0, dmax=0.0)
    ours.load_state_dict(theirs.state_dict())
    _assert_same_steps(theirs, ours, (4, 3, 3, 2), steps=3)
    theirs.eval()
    ours.eval()
    _assert_same_steps(theirs, ours, (4, 3, 3, 2), steps=1, seed=1)


def _renorm_by_the_paper(x, running_mean, running_var, gamma, beta, rmax, dmax, eps):
    """Ioffe 2017, Algorithm 1, in plain tensor operations (r and d detached)."""
    mu_b = x.mean((0, 2, 3), keepdim=True)
    sigma_b = torch.sqrt(((x - mu_b) ** 2).mean((0, 2, 3), keepdim=True) + eps)
    sigma = torch.sqrt(running_var + eps).view(1, -1, 1, 1)
    r = (sigma_b / sigma).detach().clamp(1 / rmax, rmax)
    d = ((mu_b - running_mean.view(1, -1, 1, 1)) / sigma).detach().clamp(-dmax, dmax)
    return gamma.view(1, -1, 1, 1) * ((x - mu_b) / sigma_b * r + d) + beta.view(1, -1, 1, 1)


def test_batch_renorm_against_the_paper_formula():
    layer = bn.BatchRenorm2d(4, dtype=F64, rmax=2.0, dmax=0.5)
    _randomize(layer, 10)
    with torch.no_grad():  # channels 0 and 1 far from the batch, so r and d hit their clips
        layer.running_var[0] = 0.01
        layer.running_mean[1] = 30.0
    running_mean, running_var = layer.running_mean.clone(), layer.running_var.clone()
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(5, 4, 3, 3, generator=gen, dtype=F64) * 2 + 1
    dy = torch.randn(5, 4, 3, 3, generator=gen, dtype=F64)
    y, grads = _step(layer, x, dy)

    xr = x.clone().requires_grad_()
    gamma = layer.weight.detach().clone().requires_grad_()
    beta = layer.bias.detach().clone().requires_grad_()
    y_ref = _renorm_by_the_paper(xr, running_mean, running_var, gamma, beta, 2.0, 0.5, layer.eps)
    grads_ref = torch.autograd.grad(y_ref, (xr, gamma, beta), dy)
    torch.testing.assert_close(y, y_ref.detach(), **OUT_TOL)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, **GRAD_TOL)
    # the clips were reached, so this differs from batch norm
    assert not torch.allclose(y, torch.nn.functional.batch_norm(
        x, None, None, layer.weight.detach(), layer.bias.detach(), training=True), atol=1e-3)
    m = 5 * 3 * 3
    torch.testing.assert_close(layer.running_mean, 0.9 * running_mean + 0.1 * x.mean((0, 2, 3)))
    torch.testing.assert_close(
        layer.running_var, 0.9 * running_var + 0.1 * x.var((0, 2, 3), correction=0) * m / (m - 1))


def test_batch_renorm_needs_running_stats_and_valid_limits():
    with pytest.raises(ValueError, match="track_running_stats=True"):
        bn.BatchRenorm2d(3, track_running_stats=False)
    layer = bn.BatchRenorm2d(3)
    layer.rmax = 0.5
    with pytest.raises(ValueError, match="rmax >= 1"):
        layer(torch.randn(2, 3, 2, 2))


def test_rms_norm_by_hand():
    y = bn.RMSNorm(2, eps=0.0)(torch.tensor([[3.0, 4.0]], dtype=F64))
    torch.testing.assert_close(y, torch.tensor([[3.0, 4.0]], dtype=F64) / (12.5**0.5))


@pytest.mark.parametrize("normalized_shape,shape", [(6, (4, 6)), ((3, 4), (2, 5, 3, 4))])
@pytest.mark.parametrize("eps", [None, 1e-3])
@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_matches_torch(normalized_shape, shape, eps, affine):
    theirs, ours = _pair("RMSNorm", normalized_shape, eps=eps, elementwise_affine=affine)
    _assert_same_steps(theirs, ours, shape, steps=1)
    assert repr(ours) == repr(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def test_rms_norm_rejects_wrong_shape_like_torch():
    x = torch.randn(2, 5)
    with pytest.raises(Exception) as torch_error:
        torch.nn.RMSNorm(4)(x)
    with pytest.raises(torch_error.type, match="normalized_shape"):
        bn.RMSNorm(4)(x)


# --- from scratch, and float32 --------------------------------------------------------------------

ALL_LAYERS = [
    ("BatchNorm1d", lambda m: m.BatchNorm1d(3), (6, 3)),
    ("BatchNorm2d", lambda m: m.BatchNorm2d(3), (4, 3, 5, 5)),
    ("LayerNorm", lambda m: m.LayerNorm((3, 5)), (4, 3, 5)),
    ("GroupNorm", lambda m: m.GroupNorm(3, 6), (4, 6, 4, 4)),
    ("InstanceNorm2d", lambda m: m.InstanceNorm2d(3, affine=True), (4, 3, 5, 5)),
    ("RMSNorm", lambda m: m.RMSNorm(5), (4, 3, 5)),
]


@pytest.mark.parametrize("name,make,shape", ALL_LAYERS, ids=[c[0] for c in ALL_LAYERS])
def test_float32_spot_check(name, make, shape):
    theirs, ours = make(torch.nn), make(bn)
    _randomize(theirs, 12)
    ours.load_state_dict(theirs.state_dict())
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(shape, generator=gen) * 2 + 3
    dy = torch.randn(shape, generator=gen)
    (y_t, g_t), (y_o, g_o) = _step(theirs, x, dy), _step(ours, x, dy)
    torch.testing.assert_close(y_o, y_t, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_o, g_t):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


NATIVE_NORMS = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm",
                "native_batch_norm", "native_layer_norm", "native_group_norm"]


FROM_SCRATCH = ALL_LAYERS + [("BatchRenorm2d", lambda m: m.BatchRenorm2d(3), (4, 3, 5, 5))]


@pytest.mark.parametrize("name,make,shape", FROM_SCRATCH, ids=[c[0] for c in FROM_SCRATCH])
def test_no_call_to_torch_normalisation(monkeypatch, name, make, shape):
    """Every torch normalisation entry point raises; bnlib's layers still run, train and eval."""

    def refuse(*args, **kwargs):
        raise AssertionError("bnlib.nn called a torch normalisation function")

    for module in (torch, torch.nn.functional):
        for fn in NATIVE_NORMS:
            if hasattr(module, fn):
                monkeypatch.setattr(module, fn, refuse)
    layer = make(bn)
    x = torch.randn(shape, requires_grad=True)
    layer(x).sum().backward()
    layer.eval()
    layer(x).sum().backward()
    with pytest.raises(AssertionError, match="torch normalisation"):  # the patch is in force
        torch.nn.functional.layer_norm(x, shape[-1:])


def test_float32_accuracy_with_a_large_mean():
    """A channel mean far above its spread (300 vs 0.5): float32 results stay within 1e-4 of the
    float64 ones (a sum-of-squares variance, E[x^2] - mean^2, would be off by percents here)."""
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(16, 4, 8, 8, generator=gen) * 0.5 + 300
    dy = torch.randn(16, 4, 8, 8, generator=gen)
    exact_y, exact_grads = _step(torch.nn.BatchNorm2d(4, dtype=F64), x.double(), dy.double())
    layer = bn.BatchNorm2d(4)
    y, grads = _step(layer, x, dy)
    for approx, exact in zip((y, *grads), (exact_y, *exact_grads)):
        assert ((approx.double() - exact).abs().max() / exact.abs().max()).item() < 1e-4
    unbiased = x.double().transpose(0, 1).reshape(4, -1).var(dim=1)
    torch.testing.assert_close(layer.running_var.double(), 0.9 + 0.1 * unbiased, rtol=1e-6, atol=0)


def test_batch_norm_with_channels_last_input_and_broadcast_gradient():
    """Memory layouts the closed-form backward must not trip on: a channels_last input, and the
    stride-0 gradient that ``y.sum().backward()`` sends."""
    theirs, ours = _pair("BatchNorm2d", 3)
    x = torch.randn(4, 3, 5, 5, dtype=F64).contiguous(memory_format=torch.channels_last)
    results = []
    for layer in (theirs, ours):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (y * torch.arange(3, dtype=F64).view(1, 3, 1, 1)).sum().backward()
        results.append((y.detach(), xi.grad, layer.weight.grad, layer.bias.grad))
        layer.zero_grad()
        xi2 = x.clone().requires_grad_()
        layer(xi2).sum().backward()  # dy is a broadcast of ones
        results[-1] += (xi2.grad,)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **GRAD_TOL)
