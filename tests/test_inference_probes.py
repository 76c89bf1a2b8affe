"""The probes of chapter 03: the final weights through the cache, and the first BN layer's
statistics against what the layer saw, computed directly."""

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.inference import batch_norm_layers
from bnlib.probes import FinalWeightsProbe, FirstLayerStatisticsProbe
from bnlib.training import History, RunConfig, model_from_history, train_model



def test_final_weights_probe_round_trips_a_state_dict_exactly():
    config = RunConfig(model_kwargs={"batch_norm": True})
    model = config.build_model()
    with torch.no_grad():
        for bn in batch_norm_layers(model):
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked += 7
    probe = FinalWeightsProbe()
    probe.start(model)
    history = History.from_dict(History(config=config, probes={probe.name: probe.result()}).to_dict())
    rebuilt = model_from_history(history)
    assert not rebuilt.training
    for (name, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_model_from_history_without_the_probe_says_what_to_do():
    with pytest.raises(ValueError, match="FinalWeightsProbe"):
        model_from_history(History(config=RunConfig()))


def test_train_model_gives_back_the_engine_s_network_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_CACHE_DIR", str(tmp_path))
    config = RunConfig(model_kwargs={"batch_norm": True}, epochs=0, seed=11)
    model, history = train_model(config, progress=False)
    torch.manual_seed(config.seed)  # the engine seeds, then builds: zero epochs leave those weights
    expected = config.build_model()
    again, cached = train_model(config, progress=False)
    assert cached.cached and not history.cached
    for name, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
        assert torch.equal(again.state_dict()[name], value), name


def test_first_layer_statistics_probe_records_what_batchnorm_saw():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).double()
    images = torch.rand(30, 1, 6, 6, dtype=torch.float64)
    probe = FirstLayerStatisticsProbe(max_steps=3, images=images)
    probe.start(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    expected = {"batch_mean": [], "batch_var": [], "population_mean": [], "population_var": []}
    for step in range(1, 5):
        batch = images[(step * 7) % 24 : (step * 7) % 24 + 6]
        with torch.no_grad():  # what the first BN layer is about to see, computed directly
            pre = model[0](batch)
            everything = model[0](images)
        if step <= 3:
            expected["batch_mean"].append(pre.mean((0, 2, 3)))
            expected["batch_var"].append(pre.var((0, 2, 3), unbiased=True))
            expected["population_mean"].append(everything.mean((0, 2, 3)))
            expected["population_var"].append(everything.var((0, 2, 3), unbiased=False))
        model.train()
        loss = model(batch).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        probe.after_step(step, model, batch, None)
        if step == 3:
            running = (model[1].running_mean.clone(), model[1].running_var.clone())
    result = probe.result()
    assert result["momentum"] == 0.2
    for name, rows in expected.items():
        np.testing.assert_allclose(result[name], torch.stack(rows).numpy(), rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(result["running_mean"][-1], running[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(result["running_var"][-1], running[1].numpy(), atol=1e-12)
    assert len(result["running_mean"]) == 3  # recording stops at max_steps


def test_first_layer_statistics_probe_rejects_a_model_without_conv_then_bn():
    with pytest.raises(ValueError, match="Conv2d then a BN"):
        FirstLayerStatisticsProbe(images=torch.rand(2, 1, 4, 4)).start(nn.Sequential(nn.Flatten()))
