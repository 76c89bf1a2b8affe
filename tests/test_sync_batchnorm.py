"""bnlib.nn.SyncBatchNorm against batch norm on the concatenated batch (bnlib's and torch's),
in groups of 2, 3 and 4 gloo processes; convert and revert; the single-process path."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import _distributed_workers as workers
from bnlib import nn as bnlib_nn
from bnlib.distributed import launch
from bnlib.nn.sync_batchnorm import merge_moments

FLOAT64 = {"dtype": "float64", "steps": 2}
#: Cases per group size: shard sizes (0: an empty shard) and layer options.
CASES = {
    2: [dict(FLOAT64, shards=[5, 3]),
        dict(FLOAT64, shards=[4, 4], options={"momentum": None}, steps=3),
        # float32, a channel of mean 1e3 and unit variance (momentum 1: the running variance is
        # the batch's unbiased variance)
        {"dtype": "float32", "shards": [64, 64], "mean": 1000.0, "channels": 2, "side": 8,
         "steps": 1, "options": {"momentum": 1.0}}],
    3: [dict(FLOAT64, shards=[5, 3, 0]),
        dict(FLOAT64, shards=[5, 3, 0], options={"momentum": None}),
        dict(FLOAT64, shards=[2, 5, 1], options={"affine": False}),
        dict(FLOAT64, shards=[0, 5, 3], options={"track_running_stats": False})],
    4: [dict(FLOAT64, shards=[5, 3, 0, 4]),
        dict(FLOAT64, shards=[1, 1, 1, 1], options={"momentum": 0.3})],
}
TOLERANCE = {"float64": 1e-10}


@pytest.fixture(scope="module")
def group_results():
    """Each case's per-rank results, one launch per group size."""
    return {size: launch(workers.sync_bn_cases, size, (cases,), timeout=60)
            for size, cases in CASES.items()}


def reference(case: dict, cls) -> dict:
    """``case`` run through one layer of ``cls`` on the concatenated batch."""
    dtype = getattr(torch, case["dtype"])
    layer = cls(case.get("channels", 3), **case.get("options", {})).to(dtype)
    workers.set_affine(layer, case)
    steps = []
    for step in range(case.get("steps", 2)):
        x, grad = workers.case_batches(case, step)
        x.requires_grad_(True)
        if layer.weight is not None:
            layer.weight.grad = layer.bias.grad = None
        y = layer(x)
        (y * grad).sum().backward()
        steps.append({"y": y.detach(), "dx": x.grad,
                      "dweight": None if layer.weight is None else layer.weight.grad.clone(),
                      "dbias": None if layer.bias is None else layer.bias.grad.clone()})
    return {"steps": steps, "buffers": dict(layer.named_buffers())}


def assert_matches(ranks: list[dict], expected: dict, tolerance: float) -> None:
    """Outputs and input gradients concatenated, weight and bias gradients summed, buffers on
    every rank: equal to the reference's."""
    for step, want in enumerate(expected["steps"]):
        got = [r["steps"][step] for r in ranks]
        torch.testing.assert_close(torch.cat([g["y"] for g in got]), want["y"],
                                   atol=tolerance, rtol=0)
        torch.testing.assert_close(torch.cat([g["dx"] for g in got]), want["dx"],
                                   atol=tolerance, rtol=0)
        for name in ("dweight", "dbias"):
            if want[name] is None:
                assert all(g[name] is None for g in got)
            else:
                total = torch.stack([g[name] for g in got]).sum(0)
                torch.testing.assert_close(total, want[name], atol=tolerance, rtol=0)
    for r in ranks:
        assert set(r["buffers"]) == set(expected["buffers"])
        for name, value in expected["buffers"].items():
            torch.testing.assert_close(r["buffers"][name], value, atol=tolerance, rtol=0)


@pytest.mark.parametrize("size", sorted(CASES))
@pytest.mark.parametrize("cls", [bnlib_nn.BatchNorm2d, nn.BatchNorm2d],
                         ids=["bnlib", "torch"])
def test_equals_batch_norm_on_the_concatenated_batch_float64(group_results, size, cls):
    for case, ranks in zip(CASES[size], zip(*group_results[size])):
        if case["dtype"] == "float64":
            assert_matches(list(ranks), reference(case, cls), TOLERANCE["float64"])


def test_float32_large_mean_variance_matches_float64(group_results):
    case = CASES[2][2]
    ranks = [r[2] for r in group_results[2]]
    x, _ = workers.case_batches(case, 0)
    want = x.double().var((0, 2, 3), unbiased=True)
    for r in ranks:
        got = r["buffers"]["running_var"].double()
        assert (got - want).abs().max() < 1e-3, (got, want)
    # the same shards merged by sums and sums of squares lose the variance to cancellation
    shards = torch.split(x, case["shards"])
    sums = torch.stack([s.sum((0, 2, 3)) for s in shards]).sum(0)
    squares = torch.stack([(s * s).sum((0, 2, 3)) for s in shards]).sum(0)
    n = x.numel() // x.shape[1]
    naive = (squares / n - (sums / n) ** 2) * n / (n - 1)
    assert (naive.double() - want).abs().max() > 1e-2


def test_merge_moments_equals_the_concatenated_moments():
    generator = torch.Generator().manual_seed(3)
    parts = [torch.randn(n, 4, generator=generator, dtype=torch.float64) * 2 + 5
             for n in (7, 1, 0, 12)]
    counts = torch.tensor([len(p) for p in parts], dtype=torch.float64)
    means = torch.stack([p.mean(0) if len(p) else torch.zeros(4, dtype=torch.float64)
                         for p in parts])
    m2s = torch.stack([((p - p.mean(0)) ** 2).sum(0) if len(p) else torch.zeros(4, dtype=torch.float64)
                       for p in parts])
    count, mean, m2 = merge_moments(counts, means, m2s)
    whole = torch.cat(parts)
    assert int(count) == len(whole)
    torch.testing.assert_close(mean, whole.mean(0), atol=1e-12, rtol=0)
    torch.testing.assert_close(m2, ((whole - whole.mean(0)) ** 2).sum(0), atol=1e-10, rtol=0)


@pytest.fixture(scope="module")
def subgroup_results():
    case = dict(FLOAT64, shards=[3, 2, 4, 3])
    return case, launch(workers.subgroup_case, 4, (case, 2), timeout=60)


def test_subgroups_of_two_equal_ghost_batches_of_their_shards(subgroup_results):
    case, ranks = subgroup_results
    shards = case["shards"]
    for first in (0, 2):  # subgroups {0, 1} and {2, 3}
        start = sum(shards[:first])
        # the reference sees only this subgroup's slice of the whole batch
        expected = _reference_on_slice(case, start, sum(shards[first : first + 2]))
        assert_matches(ranks[first : first + 2], expected, TOLERANCE["float64"])


def _reference_on_slice(case, start, count):
    """torch's BatchNorm2d on samples ``start:start+count`` of each step's whole batch."""
    layer = nn.BatchNorm2d(case.get("channels", 3)).double()
    workers.set_affine(layer, case)
    steps = []
    for step in range(case["steps"]):
        x, grad = workers.case_batches(case, step)
        x = x[start : start + count].clone().requires_grad_(True)
        layer.weight.grad = layer.bias.grad = None
        y = layer(x)
        (y * grad[start : start + count]).sum().backward()
        steps.append({"y": y.detach(), "dx": x.grad, "dweight": layer.weight.grad.clone(),
                      "dbias": layer.bias.grad.clone()})
    return {"steps": steps, "buffers": dict(layer.named_buffers())}


# --------------------------------------------------------------------------- one process


def _mixed_model() -> nn.Module:
    """torch's and bnlib's BatchNorm1d/2d/3d with various options, nested, plus other layers;
    each layer has seen a training batch of its own."""
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), bnlib_nn.BatchNorm2d(3),
        nn.Sequential(nn.BatchNorm1d(3), bnlib_nn.BatchNorm1d(3, affine=False)),
        nn.Sequential(nn.BatchNorm3d(3, momentum=None),
                      bnlib_nn.BatchNorm3d(3, track_running_stats=False)),
    )
    shapes = {1: (4, 3), 2: (4, 3, 5), 3: (4, 3, 2, 2), 4: (4, 3, 2, 2, 2)}
    for layer in model.modules():
        if hasattr(layer, "num_features"):
            dims = 1 if isinstance(layer, nn.BatchNorm1d | bnlib_nn.BatchNorm1d) else (
                3 if isinstance(layer, nn.BatchNorm3d | bnlib_nn.BatchNorm3d) else 2)
            layer(torch.randn(*shapes[dims + 1]) * 2 + 1)
    return model


def test_convert_and_revert_restore_classes_and_keep_the_state_dict():
    torch.manual_seed(0)
    model = _mixed_model()
    ghost = bnlib_nn.GhostBatchNorm2d(3, 2)
    model.append(ghost)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(m) for m in model.modules()]
    converted = bnlib_nn.SyncBatchNorm.convert_sync_batchnorm(model)
    kinds = [type(m) for m in converted.modules()]
    assert kinds.count(bnlib_nn.SyncBatchNorm) == 6
    assert any(m is ghost for m in converted.modules())  # not a BatchNorm1d/2d/3d: left alone
    assert not any(m.training for m in converted.modules())
    state = converted.state_dict()
    assert list(state) == list(before)
    for key, value in before.items():
        torch.testing.assert_close(state[key], value, atol=0, rtol=0)
    reverted = bnlib_nn.revert_sync_batchnorm(converted)
    assert [type(m) for m in reverted.modules()] == classes
    for key, value in before.items():
        torch.testing.assert_close(reverted.state_dict()[key], value, atol=0, rtol=0)


def test_convert_shares_the_parameters_and_a_lone_layer_is_returned_converted():
    bn = nn.BatchNorm2d(4)
    sync = bnlib_nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    assert isinstance(sync, bnlib_nn.SyncBatchNorm)
    assert sync.weight is bn.weight and sync.running_mean is bn.running_mean
    back = bnlib_nn.revert_sync_batchnorm(sync)
    assert type(back) is nn.BatchNorm2d and back.weight is bn.weight


def test_not_a_subclass_of_torchs_and_the_same_interface():
    assert not issubclass(bnlib_nn.SyncBatchNorm, nn.SyncBatchNorm)
    ours = inspect.signature(bnlib_nn.SyncBatchNorm.__init__).parameters
    theirs = inspect.signature(nn.SyncBatchNorm.__init__).parameters
    assert list(ours) == list(theirs)
    assert all(ours[name].default == theirs[name].default for name in theirs)
    assert list(bnlib_nn.SyncBatchNorm(5).state_dict()) == list(nn.SyncBatchNorm(5).state_dict())


@pytest.mark.parametrize("training", [True, False])
def test_without_a_group_it_is_plain_batch_norm(training):
    torch.manual_seed(1)
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64) * 3 + 2
    ours = bnlib_nn.SyncBatchNorm(3).double().train(training)
    theirs = nn.BatchNorm2d(3).double().train(training)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    with pytest.raises(ValueError):
        ours(torch.randn(3))
