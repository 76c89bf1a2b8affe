"""Chapter 08's experiment: the mode truth table, the fixes (checkpointing, mixed precision,
averaged weights) against hand computations, and every branch of the verdicts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.checkpoint import checkpoint

from bnlib.experiments import bugs
from bnlib.experiments import bugs_verdicts as verdicts
from bnlib.inference import recalibrate
from bnlib.running import momentum_for_updates
from bnlib.updates import (checkpoint_without_updates, no_updates, restore_statistics,
                           scale_momentum, snapshot_statistics, step_unless_skipped)

# --------------------------------------------------------------------------- the truth table


def test_truth_table_is_the_same_in_torch_and_bnlib():
    rows = bugs.mode_truth_table()
    assert len(rows) == 16
    assert verdicts.agreement(rows) == "agree in every row"
    table = {(r["implementation"], r["mode"], r["track_running_stats"], r["buffers"]):
             (r["normalises"], r["updates"]) for r in rows}
    for impl in ("torch", "bnlib"):
        assert table[(impl, "train", True, True)] == ("batch", True)
        assert table[(impl, "train", False, True)] == ("batch", False)  # no update
        assert table[(impl, "eval", False, True)] == ("running", False)  # the stored ones
        assert table[(impl, "eval", True, False)] == ("batch", False)  # no buffers: batch
        assert table[(impl, "train", True, False)] == ("batch", False)


def test_agreement_counts_differing_rows_and_rejects_different_settings():
    rows = bugs.mode_truth_table()
    changed = [dict(r) for r in rows]
    changed[-1]["updates"] = not changed[-1]["updates"]
    assert verdicts.agreement(changed) == "disagree in 1 of 8 rows"
    with pytest.raises(ValueError):
        verdicts.agreement(rows[:-1])


# --------------------------------------------------------------------------- checkpointing


def _net(momentum=0.1):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, momentum=momentum), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 36, 2))


def _fit(net, forward, steps=4):
    torch.manual_seed(1)
    data = torch.randn(steps, 8, 1, 8, 8) * 2 + 0.5
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    for x in data:
        optimizer.zero_grad()
        forward(x).sum().backward()
        optimizer.step()
    return net


def _checkpointed(net):
    return lambda x: net[2:](checkpoint(net[:2], x, use_reentrant=False))


def test_checkpointing_updates_twice_per_step_as_momentum_one_minus_its_square():
    plain, ckpt = _net(), _net()
    _fit(plain, plain)
    _fit(ckpt, _checkpointed(ckpt))
    assert int(ckpt[1].num_batches_tracked) == 2 * int(plain[1].num_batches_tracked) == 8
    for a, b in zip(plain.parameters(), ckpt.parameters()):
        assert torch.equal(a, b)  # the same gradients
    doubled = _net(momentum=1 - 0.9 ** 2)  # one update of momentum 0.19 per step
    _fit(doubled, doubled)
    assert torch.allclose(ckpt[1].running_var, doubled[1].running_var, rtol=1e-5)
    assert (ckpt[1].running_var - plain[1].running_var).abs().max() > 1e-2


def test_checkpointing_fixes_restore_the_unchecked_statistics():
    plain, scaled, quiet = _net(), _net(), _net()
    _fit(plain, plain)
    scale_momentum(scaled[:2], 2)
    assert scaled[1].momentum == pytest.approx(1 - 0.9 ** 0.5, abs=1e-15)
    assert scaled[1].momentum == momentum_for_updates(0.1, 2)
    _fit(scaled, _checkpointed(scaled))
    _fit(quiet, lambda x: quiet[2:](checkpoint_without_updates(quiet[:2], x)))
    for name in ("running_mean", "running_var"):
        assert torch.allclose(getattr(scaled[1], name), getattr(plain[1], name), atol=1e-6)
        assert torch.equal(getattr(quiet[1], name), getattr(plain[1], name))
    assert int(quiet[1].num_batches_tracked) == 4 and int(scaled[1].num_batches_tracked) == 8
    assert quiet[1].momentum == 0.1  # put back after the recomputation


def test_checkpointing_with_cumulative_momentum_only_doubles_the_count():
    plain, ckpt = _net(momentum=None), _net(momentum=None)
    _fit(plain, plain)
    _fit(ckpt, _checkpointed(ckpt))
    assert torch.allclose(ckpt[1].running_var, plain[1].running_var, rtol=1e-5)
    assert torch.allclose(ckpt[1].running_mean, plain[1].running_mean, atol=1e-6)
    assert int(ckpt[1].num_batches_tracked) == 8


def test_no_updates_normalises_with_batch_statistics_and_updates_nothing():
    bn = nn.BatchNorm2d(3).train()
    x = torch.randn(6, 3, 4, 4) * 3 + 2
    before = snapshot_statistics(bn)
    with no_updates(bn):
        out = bn(x)
    assert torch.allclose(out, nn.functional.batch_norm(x, None, None, training=True),
                          atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before[0], snapshot_statistics(bn)[0]))
    assert bn.track_running_stats is True


# --------------------------------------------------------------------------- mixed precision


def test_a_float16_forward_overflow_stores_nan_although_the_scaler_skips():
    net = _net()
    weights = copy.deepcopy(net.state_dict())
    scaler = torch.amp.GradScaler("cpu")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = net(torch.rand(8, 1, 8, 8) * 1e5).float().sum()  # above float16's 65,504
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() < 2.0 ** 16  # the step was skipped
    assert torch.equal(net[0].weight, weights["0.weight"])
    assert torch.isnan(net[1].running_var).any()


def test_step_unless_skipped_restores_the_statistics_of_a_skipped_step():
    net = _net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    for scale, expected in ((1e5, False), (1.0, True)):
        scaler = torch.amp.GradScaler("cpu", init_scale=1.0)  # no backward overflow
        snapshot = snapshot_statistics(net)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = net(torch.rand(8, 1, 8, 8) * scale).float().sum()
        scaler.scale(loss).backward()
        assert step_unless_skipped(scaler, optimizer, net, snapshot) is expected
        restored = torch.equal(net[1].running_var, snapshot[0][1])
        assert restored is not expected
    assert torch.isfinite(net[1].running_var).all()
    with pytest.raises(ValueError):
        restore_statistics(nn.Sequential(), snapshot)


def test_bfloat16_does_not_overflow_but_stores_the_outlier():
    net = _net().train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.rand(8, 1, 8, 8) * 1e5)
    assert torch.isfinite(net[1].running_var).all() and net[1].running_var.max() > 1e6


# --------------------------------------------------------------------------- averaged weights


def _bn_model():
    return nn.Sequential(nn.BatchNorm1d(2))


def test_averaged_model_copies_or_averages_the_buffers():
    model = _bn_model()
    swa = AveragedModel(model)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    model.train()
    history = []
    for shift in (1.0, 5.0):
        with torch.no_grad():
            model(torch.randn(16, 2) + shift)
        history.append(model[0].running_mean.clone())
        swa.update_parameters(model)
        ema.update_parameters(model)
    assert torch.equal(swa.module[0].running_mean, history[-1])  # the latest model's
    # EMA with decay 0.5: the first update copies, the second averages half and half
    assert torch.allclose(ema.module[0].running_mean, 0.5 * history[0] + 0.5 * history[1])


def test_update_bn_and_recalibrate_against_hand_computations():
    torch.manual_seed(0)
    batches = [torch.randn(4, 2) + 3.0, torch.randn(12, 2) - 1.0]
    model = _bn_model()
    update_bn(batches, model)
    means = torch.stack([b.mean(0) for b in batches])
    variances = torch.stack([b.var(0, unbiased=True) for b in batches])
    assert torch.allclose(model[0].running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(model[0].running_var, variances.mean(0), atol=1e-5)
    assert int(model[0].num_batches_tracked) == 2
    pooled = recalibrate(_bn_model(), batches)
    values = torch.cat(batches)
    assert torch.allclose(pooled[0].running_mean, values.mean(0), atol=1e-6)
    assert torch.allclose(pooled[0].running_var, values.var(0, unbiased=True), atol=1e-5)
    # they differ: equal weight per batch against per sample, and the spread between batches
    assert (pooled[0].running_var - model[0].running_var).abs().min() > 1.0


# --------------------------------------------------------------------------- the loop's helpers


def test_batch_order_shuffles_or_sorts_and_drops_the_last_batch():
    labels = torch.tensor([3, 1, 2, 1, 0, 2, 3])
    order = bugs.batch_order(labels, 3, torch.Generator().manual_seed(0), "sorted")
    assert [labels[i].tolist() for i in order] == [[0, 1, 1], [2, 2, 3]]
    shuffled = bugs.batch_order(labels, 3, torch.Generator().manual_seed(0))
    assert len(shuffled) == 2 and len(set(torch.cat(shuffled).tolist())) == 6
    with pytest.raises(ValueError):
        bugs.batch_order(labels, 3, torch.Generator(), "random")


def test_statistics_distance_and_rows():
    a, b = _net(), _net()
    b[1].running_var[1] += 0.25
    assert bugs.statistics_distance(a, b) == pytest.approx(0.25)
    part = {"plain": [{"eval": 0.5, "codes": []}, {"eval": 0.7, "codes": ["x"]}]}
    assert bugs.rows(part, ["plain"], ["eval"]) == [
        {"run": "no checkpointing", "eval": pytest.approx(0.6), "codes": "x"}]
    single = {"guarded": {"largest": float("inf"), "codes": []}}
    assert bugs.rows(single, ["guarded"], ["largest"])[0]["largest"] == float("inf")


# --------------------------------------------------------------------------- verdicts


def test_small_verdicts_branch_by_branch():
    outcomes = [{"codes": ["a"]}, {"codes": []}, {"codes": ["a", "b"]}]
    assert verdicts.found_in(outcomes, "a") == "in 2 of 3 seeds"
    assert verdicts.found_in(outcomes, "c") == "in none of the 3 seeds"
    assert verdicts.moves(0.0) == "stayed exactly where they were"
    assert verdicts.moves(1e-9) == "moved"
    assert verdicts.ordinal(0) == "first" and verdicts.ordinal(6) == "7th"
    assert verdicts.strongest_layer([[1.0, 3.0, 2.0], [1.0, 2.0, 4.0]]) == "third"
    assert verdicts.strongest_layer([[1.0, 3.0, 2.0], [1.0, 2.0, 2.5]]) == "second"
    assert verdicts.blame(3.0, 0.5, 0.9) == "the running statistics are to blame"
    assert verdicts.blame(1.1, 0.1, 0.12) == "the weights are to blame"
    neither = "neither the statistics nor the weights are clearly to blame"
    assert verdicts.blame(3.0, 0.5, 0.52) == neither
    assert verdicts.blame(1.1, 0.5, 0.9) == neither
    assert verdicts.freezing_verdict(0.2, 0.8, 0.9) == "the statistics it kept"
    assert verdicts.freezing_verdict(0.2, 0.2, 0.9) == "the freezing itself"
    assert verdicts.freezing_verdict(0.2, 0.22, 0.24) == "neither clearly"
    assert verdicts.codes_text([]) == "nothing"
    assert verdicts.codes_text(["a"]) == "`a`"
    assert verdicts.codes_text(["a", "b", "c"]) == "`a`, `b` and `c`"


def _outcome(eval_, train, shift, codes=()):
    return {"eval": eval_, "train_mode": train, "shift": shift, "recalibrated": train,
            "codes": list(codes)}


def synthetic_results(frozen_new=0.2):
    seeds = (0, 1)
    worse = {"steps": 100,
             "reference": [_outcome(0.95, 0.94, [1.0, 1.1, 1.2])] * 2,
             "sorted": [_outcome(0.1, 0.1, [1.0, 1.1, 1.3])] * 2,
             "low_momentum": [_outcome(0.4, 0.9, [20.0, 3.0, 2.0], ["statistics-shift"])] * 2,
             "sanity": [_outcome(0.6, 0.94, [3.0, 1.9, 1.2], ["statistics-shift"]),
                        _outcome(0.8, 0.94, [3.0, 1.9, 1.2])],
             "averaged": [{name: {"stored": 0.5, "update_bn": 0.9, "recalibrated": 0.91,
                                  "codes": ["statistics-shift"]} for name in ("swa", "ema")}] * 2}
    tune = {how: [{"moved": 0.0 if how.endswith("freeze") or how in (
        "track_flag", "freeze_batch_norm") else 1.5, "new": frozen_new if "freeze" in how
        else 0.8, "old": 0.1, "codes": [], "watched": []}] * 2 for how in bugs.FREEZINGS}
    tune |= {"pretrained_old": 0.9, "pretrained_new": 0.0}
    ckpt = {way: [{"weights": 0.0, "stats": 0.3 if way == "checkpoint" else 0.0,
                   "tracked": 30 if way in ("checkpoint", "momentum") else 15,
                   "eval": 0.8, "watched": []}] * 2
            for way in ("plain", "checkpoint", "momentum", "no_update")}
    amp = {"before": 0.95, "float16_max": 65504.0}
    amp |= {way: {"skipped": 1, "finite": way != "forward_overflow", "largest": 10.0,
                  "eval": 0.9, "recalibrated": 0.95, "codes": []}
            for way in ("forward_overflow", "guarded", "backward_overflow", "bfloat16")}
    warm = {"watched": ["updates-before-first-step"], "shift_after_warmup": 900.0,
            "stats": 0.01, "eval": 0.9, "reference_eval": 0.91, "survives": 1e-5, "steps": 100}
    layout = {"channels_first": [{"accuracy": 0.93, "codes": []}] * 2,
              "as_produced": [{"accuracy": 0.9, "codes": ["bn1d-normalises-length"]}] * 2}
    return {"setting": {**bugs.SETTINGS["short"], "seeds": seeds}, "truth": bugs.mode_truth_table(),
            "worse": worse, "finetune": tune, "checkpoint": ckpt, "amp": amp, "warmup": warm,
            "layout": layout}


def test_findings_of_synthetic_outcomes():
    f = verdicts.findings(synthetic_results())
    assert f["truth_agree"] == "agree in every row" and f["truth_rows"] == 8
    assert f["low_momentum_eval_word"] == "below" and f["low_momentum_strongest"] == "first"
    assert f["low_survives"] == pytest.approx(0.999 ** 100)
    assert f["sanity_found"] == "in 1 of 2 seeds" and f["sanity_eval"] == pytest.approx(0.7)
    assert f["reference_eval_word"] == "above" and f["reference_clean"] == "in all 2 seeds"
    assert f["sorted_eval_word"] == "equal to" and f["sorted_codes"] == "nothing"
    assert f["sorted_blame"] == "the weights are to blame" and f["sorted_shift_max"] == pytest.approx(1.3)
    assert f["old_max"] == pytest.approx(0.1)
    assert f["requires_grad_moves"] == "moved"
    assert f["freeze_batch_norm_moves"] == "stayed exactly where they were"
    assert f["frozen_new_word"] == "below" and f["freezing_verdict"] == "the freezing itself"
    assert f["ckpt_eval_word"] == "the same as" and f["checkpoint_tracked"] == 30
    assert f["ckpt_fixed_momentum"] == pytest.approx(1 - 0.9 ** 0.5)
    assert f["forward_overflow_finite"] == "not finite" and f["guarded_finite"] == "finite"
    assert f["layout_word"] == "below" and f["layout_found"] == "in all 2 seeds"
    assert f["swa_update_word"] == "below" and f["warmup_watched"] == "`updates-before-first-step`"
    assert verdicts.findings(synthetic_results(frozen_new=0.9))["frozen_new_word"] == "above"
