"""bnlib.inference: folding batch norm exactly, recalibrating to statistics taken from the data."""

from __future__ import annotations

import copy

import pytest
import torch
from _nets import tiny_net
from torch import nn

import bnlib.nn as bnn
from bnlib.inference import (
    batch_norm_layers,
    fold_all,
    fold_batch_norm,
    freeze_batch_norm,
    is_batch_norm,
    predict_in_train_mode,
    recalibrate,
)
from bnlib.nn import FrozenBatchNorm2d


F64 = torch.float64


def _trained_like(bn: nn.Module, seed: int) -> nn.Module:
    """Non-trivial running statistics and affine parameters, as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c, generator=gen) * 2)
        bn.running_var.copy_(torch.rand(c, generator=gen) * 3 + 0.1)
        if bn.weight is not None:
            bn.weight.copy_(torch.randn(c, generator=gen))
            bn.bias.copy_(torch.randn(c, generator=gen))
    return bn


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


FOLD_CASES = [
    ("conv with bias", lambda: nn.Conv2d(3, 5, 3, padding=1, dtype=F64), nn.BatchNorm2d,
     (4, 3, 6, 6)),
    ("conv without bias", lambda: nn.Conv2d(3, 5, 3, bias=False, dtype=F64), nn.BatchNorm2d,
     (4, 3, 6, 6)),
    ("grouped strided conv", lambda: nn.Conv2d(4, 6, 3, stride=2, groups=2, dtype=F64),
     bnn.BatchNorm2d, (2, 4, 7, 7)),
    ("linear", lambda: nn.Linear(7, 4, dtype=F64), nn.BatchNorm1d, (6, 7)),
    ("linear without bias, bnlib bn", lambda: nn.Linear(7, 4, bias=False, dtype=F64),
     bnn.BatchNorm1d, (6, 7)),
    ("conv1d", lambda: nn.Conv1d(2, 3, 3, dtype=F64), nn.BatchNorm1d, (2, 2, 9)),
]


@pytest.mark.parametrize(
    "what,make_layer,bn_class,shape", FOLD_CASES, ids=[c[0] for c in FOLD_CASES]
)
def test_fold_equals_eval_mode_pair(what, make_layer, bn_class, shape):
    torch.manual_seed(0)
    layer = make_layer()
    bn = _trained_like(bn_class(layer.weight.shape[0], dtype=F64), seed=1)
    before = (_state(layer), _state(bn))
    folded = fold_batch_norm(layer, bn)
    x = torch.randn(shape, dtype=F64)
    expected = nn.Sequential(layer, bn).eval()(x)
    torch.testing.assert_close(folded(x), expected, rtol=1e-12, atol=1e-12)
    assert folded.bias is not None
    for original, saved in zip((layer, bn), before):  # originals untouched
        for k, v in original.state_dict().items():
            assert torch.equal(v, saved[k]), k
    assert layer.bias is None or folded.bias is not layer.bias


def test_fold_float32():
    torch.manual_seed(0)
    layer, bn = nn.Conv2d(3, 4, 3), _trained_like(nn.BatchNorm2d(4), seed=2)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fold_batch_norm(layer, bn)(x), nn.Sequential(layer, bn).eval()(x),
                               rtol=1e-5, atol=1e-5)


def test_fold_by_hand():
    # y = 2x + 1, then bn(mean 3, var 4, gamma 0.5, beta 1, eps 0):
    # 0.5 * (2x + 1 - 3) / 2 + 1 = 0.5x + 0.5
    layer = nn.Linear(1, 1, dtype=F64)
    bn = nn.BatchNorm1d(1, eps=0.0, dtype=F64)
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.bias.fill_(1.0)
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(4.0)
        bn.weight.fill_(0.5)
        bn.bias.fill_(1.0)
    folded = fold_batch_norm(layer, bn)
    assert folded.weight.item() == pytest.approx(0.5)
    assert folded.bias.item() == pytest.approx(0.5)


@pytest.mark.parametrize(
    "layer,bn,error,match",
    [
        (nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5), ValueError, "output channels"),
        (nn.ConvTranspose2d(3, 4, 3), nn.BatchNorm2d(4), TypeError, "only nn.Linear"),
        (nn.ReLU(), nn.BatchNorm2d(4), TypeError, "ReLU"),
        (nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), ValueError,
         "running statistics"),
        (nn.Conv2d(3, 4, 3), bnn.BatchNorm2d(4, track_running_stats=False), ValueError,
         "running statistics"),
        (nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), TypeError, "expected a batch norm layer"),
    ],
)
def test_fold_rejects(layer, bn, error, match):
    with pytest.raises(error, match=match):
        fold_batch_norm(layer, bn)


BN_PAIRS = [(nn.BatchNorm2d, nn.BatchNorm1d), (bnn.BatchNorm2d, bnn.BatchNorm1d)]


def _net(bn2d=nn.BatchNorm2d, bn1d=nn.BatchNorm1d):
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        bn2d(3),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(3, 4, 3), bn2d(4), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
        bn1d(5),
    ).double()


@pytest.mark.parametrize("bn2d,bn1d", BN_PAIRS)
def test_fold_all_equals_eval_model(bn2d, bn1d):
    torch.manual_seed(0)
    model = _net(bn2d, bn1d)
    for i, m in enumerate(model.modules()):
        if isinstance(m, (bn2d, bn1d)):
            _trained_like(m, seed=i)
    before = _state(model)
    folded = fold_all(model)
    x = torch.randn(3, 1, 6, 6, dtype=F64)
    torch.testing.assert_close(folded.eval()(x), model.eval()(x), rtol=1e-12, atol=1e-12)
    assert not any(isinstance(m, (bn2d, bn1d)) for m in folded.modules())
    assert sum(isinstance(m, nn.Identity) for m in folded.modules()) == 3
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_fold_all_keeps_batch_norm_without_running_stats():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2, track_running_stats=False))
    folded = fold_all(model)
    assert isinstance(folded[1], nn.BatchNorm1d)


# --- recalibration --------------------------------------------------------------------------------


def _data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    # uneven batch sizes, and an offset, so a wrong way of merging batches shows
    return [torch.randn(n, 1, 6, 6, generator=gen, dtype=F64) * 2 + 1 for n in (5, 8, 3)]


def _expected_stats(h):
    dims = (0, *range(2, h.dim()))
    flat = h.transpose(0, 1).reshape(h.shape[1], -1)
    return h.mean(dims), flat.var(dim=1, correction=1)


@pytest.mark.parametrize("bn2d,bn1d", BN_PAIRS)
def test_recalibrate_matches_statistics_of_the_data(bn2d, bn1d):
    torch.manual_seed(1)
    model = _net(bn2d, bn1d)
    batches = _data()
    counts = [int(m.num_batches_tracked) for m in batch_norms(model)]
    recalibrate(model, batches)

    # the definition, layer by layer on all the data at once, in eval mode with the already
    # recalibrated layers before
    x = torch.cat(batches)
    model.eval()
    with torch.no_grad():
        h1 = model[0](x)
        mean, var = _expected_stats(h1)
        torch.testing.assert_close(model[1].running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model[1].running_var, var, rtol=1e-12, atol=1e-12)
        h2 = model[3][0](model[2](model[1](h1)))
        mean, var = _expected_stats(h2)
        torch.testing.assert_close(model[3][1].running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model[3][1].running_var, var, rtol=1e-12, atol=1e-12)
        h3 = model[5](model[4](model[3][2](model[3][1](h2))))
        mean, var = _expected_stats(h3)
        torch.testing.assert_close(model[6].running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model[6].running_var, var, rtol=1e-12, atol=1e-12)
    assert counts == [int(m.num_batches_tracked) for m in batch_norms(model)]
    assert all(p.grad is None for p in model.parameters())


def test_recalibrate_accepts_pairs_and_generators_and_keeps_modes():
    torch.manual_seed(2)
    reference = _net()
    model = copy.deepcopy(reference)
    recalibrate(reference, _data())  # a list of tensors, model in train mode
    model.train()
    model[3].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    pairs = ((x, torch.zeros(len(x))) for x in _data())  # a one-shot generator of (inputs, targets)
    assert recalibrate(model, pairs) is model
    assert modes == [m.training for m in model.modules()]
    for a, b in zip(batch_stats(model), batch_stats(reference)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def batch_norms(model):
    return [m for m in model.modules() if is_batch_norm(m)]


def batch_stats(model):
    return [t for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for t in (m.running_mean, m.running_var)]


def test_recalibrate_rejects_empty_and_shared_layers():
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate(_net(), [])
    bn = nn.BatchNorm1d(3)
    shared = nn.Sequential(nn.Linear(3, 3), bn, nn.Linear(3, 3), bn)
    with pytest.raises(ValueError, match="more than once"):
        recalibrate(shared, [torch.randn(4, 3)])


# --- train mode at inference, and frozen batch norm




def test_predict_in_train_mode_batch_one_is_instance_norm_and_leaves_the_model_alone():
    torch.manual_seed(4)
    conv, bn = nn.Conv2d(1, 4, 3, padding=1).double(), nn.BatchNorm2d(4).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    model = nn.Sequential(conv, bn).eval()
    before = copy.deepcopy(model.state_dict())
    images = torch.rand(5, 1, 6, 6, dtype=torch.float64)
    logits, used = predict_in_train_mode(model, images, batch_size=1, order_seed=0)
    with torch.no_grad():  # one image in train mode: its own per-channel statistics over H, W
        reference = nn.functional.instance_norm(conv(images), weight=bn.weight, bias=bn.bias)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-10)
    assert not model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert used.training and int(used[1].num_batches_tracked) == 5
    assert not torch.equal(used[1].running_mean, bn.running_mean)


def test_predict_in_train_mode_whole_batch_equals_torch_train_mode_and_updates_stats_like_torch():
    model = tiny_net()
    images = torch.rand(12, 1, 6, 6, dtype=torch.float64)
    reference = copy.deepcopy(model).train()
    order = torch.randperm(12, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = torch.empty(12, 5, dtype=torch.float64)
        for part in order.split(4):
            expected[part] = reference(images[part])
    logits, used = predict_in_train_mode(model, images, batch_size=4, order_seed=9)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    for a, b in zip(used.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_freeze_batch_norm_survives_model_train_and_keeps_statistics():
    model = tiny_net()
    frozen = freeze_batch_norm(model).train()
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    torch.testing.assert_close(frozen(x), model.eval()(x), rtol=0, atol=1e-12)
    for name, value in frozen.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not batch_norm_layers(frozen) and batch_norm_layers(model)  # original untouched
    with pytest.raises(ValueError, match="track_running_stats"):
        FrozenBatchNorm2d.from_batch_norm(nn.BatchNorm2d(3, track_running_stats=False))
