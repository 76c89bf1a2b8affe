"""bnlib.population against torch's own BN layers, direct computations and hand-worked cases."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlib import population as P
from bnlib.training import History, RunConfig, evaluate


def tiny_net(seed: int = 0, in_channels: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 6 * 6, 5),
    ).double()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for bn in P.batch_norm_layers(net):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return net


# --------------------------------------------------------------------------- running averages


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
    np.testing.assert_allclose(P.running_average(means, momentum, 0.0), torch_means, rtol=0, atol=1e-12)
    np.testing.assert_allclose(P.running_average(unbiased, momentum, 1.0), torch_vars, rtol=0, atol=1e-12)


def test_keras_convention_by_hand_and_equal_to_pytorch_with_complementary_momentum():
    # Keras, momentum 0.9, from 0: 0.9*0 + 0.1*1 = 0.1, then 0.9*0.1 + 0.1*2 = 0.29
    np.testing.assert_allclose(P.running_average([1.0, 2.0], 0.9, 0.0, "keras"), [0.1, 0.29], atol=1e-15)
    # PyTorch, momentum 0.9: 0.1*0 + 0.9*1 = 0.9, then 0.1*0.9 + 0.9*2 = 1.89
    np.testing.assert_allclose(P.running_average([1.0, 2.0], 0.9, 0.0), [0.9, 1.89], atol=1e-15)
    values = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_allclose(P.running_average(values, 0.99, 1.0, "keras"),
                               P.running_average(values, 0.01, 1.0, "pytorch"), atol=1e-14)


def test_cumulative_average_is_the_plain_mean_so_far():
    values = np.array([3.0, 5.0, 10.0])
    np.testing.assert_allclose(P.running_average(values, None, initial=100.0), [3.0, 4.0, 6.0])


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_values": []}, "non-empty"),
    ({"batch_values": [1.0], "convention": "tf"}, "convention"),
    ({"batch_values": [1.0], "momentum": None, "convention": "keras"}, "Keras"),
    ({"batch_values": [1.0], "momentum": 1.5}, r"\[0, 1\]"),
])
def test_running_average_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        P.running_average(**kwargs)


# --------------------------------------------------------------------------- patch moments


@pytest.mark.parametrize("conv_kwargs", [
    {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "padding": (0, 1), "stride": 2},
    {"in_channels": 2, "out_channels": 3, "kernel_size": 2, "dilation": 2},
])
def test_patch_moments_give_the_exact_statistics_of_the_convolution_output(conv_kwargs):
    torch.manual_seed(2)
    conv = nn.Conv2d(**conv_kwargs).double()
    images = torch.rand(20, conv.in_channels, 9, 8, dtype=torch.float64)
    moments = P.PatchMoments(images, conv, chunk=7)
    mean, var = moments.output_statistics(conv)
    with torch.no_grad():
        out = conv(images)
    torch.testing.assert_close(mean, out.mean((0, 2, 3)), rtol=0, atol=1e-12)
    torch.testing.assert_close(var, out.var((0, 2, 3), unbiased=False), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- probes


def test_final_weights_probe_round_trips_a_state_dict_exactly():
    config = RunConfig(model_kwargs={"batch_norm": True})
    model = config.build_model()
    with torch.no_grad():
        for bn in P.batch_norm_layers(model):
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked += 7
    probe = P.FinalWeightsProbe()
    probe.start(model)
    history = History.from_dict(History(config=config, probes={probe.name: probe.result()}).to_dict())
    rebuilt = P.model_from_history(history)
    assert not rebuilt.training
    for (name, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_model_from_history_without_the_probe_says_what_to_do():
    with pytest.raises(ValueError, match="FinalWeightsProbe"):
        P.model_from_history(History(config=RunConfig()))


def test_train_model_gives_back_the_engine_s_network_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_CACHE_DIR", str(tmp_path))
    config = RunConfig(model_kwargs={"batch_norm": True}, epochs=0, seed=11)
    model, history = P.train_model(config, progress=False)
    torch.manual_seed(config.seed)  # the engine seeds, then builds: zero epochs leave those weights
    expected = config.build_model()
    again, cached = P.train_model(config, progress=False)
    assert cached.cached and not history.cached
    for name, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
        assert torch.equal(again.state_dict()[name], value), name


def test_first_layer_statistics_probe_records_what_batchnorm_saw():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).double()
    images = torch.rand(30, 1, 6, 6, dtype=torch.float64)
    probe = P.FirstLayerStatisticsProbe(max_steps=3, images=images)
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
        P.FirstLayerStatisticsProbe(images=torch.rand(2, 1, 4, 4)).start(nn.Sequential(nn.Flatten()))


# --------------------------------------------------------------------------- train vs eval mode


def test_predict_in_train_mode_batch_one_is_instance_norm_and_leaves_the_model_alone():
    torch.manual_seed(4)
    conv, bn = nn.Conv2d(1, 4, 3, padding=1).double(), nn.BatchNorm2d(4).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    model = nn.Sequential(conv, bn).eval()
    before = copy.deepcopy(model.state_dict())
    images = torch.rand(5, 1, 6, 6, dtype=torch.float64)
    logits, used = P.predict_in_train_mode(model, images, batch_size=1, order_seed=0)
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
    logits, used = P.predict_in_train_mode(model, images, batch_size=4, order_seed=9)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    for a, b in zip(used.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_accuracy():
    logits = torch.tensor([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert P.accuracy(logits, torch.tensor([1, 0, 0, 0])) == 0.75


# --------------------------------------------------------------------------- batch vs population


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_bn_input_moments_are_the_per_image_moments_of_each_bn_input(memory_format):
    # channels-last: the layout of a model trained by bnlib.training, reduced along another axis
    model = tiny_net().train().to(memory_format=memory_format)
    images = torch.rand(7, 1, 6, 6, dtype=torch.float64).contiguous(memory_format=memory_format)
    moments = P.bn_input_moments(model, images, batch_size=3)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        first = model[0](images)
        second = model[3](model[2](model[1](first)))
    for (means, squares), x in zip(moments, (first, second)):
        np.testing.assert_allclose(means, x.mean((2, 3)).numpy(), atol=1e-12)
        np.testing.assert_allclose(squares, (x * x).mean((2, 3)).numpy(), atol=1e-12)


def test_batch_statistics_gap_by_hand():
    # two images, one channel, each image constant: 0 and 2. Population: mean 1, variance 1.
    moments = [(np.array([[0.0], [2.0]]), np.array([[0.0], [4.0]]))]
    single, both = P.batch_statistics_gap(moments, [1, 2], draws=5)
    assert single == {"batch_size": 1, "mean_error": 1.0, "variance_ratio": 0.0, "log_variance_error": np.inf}
    assert both["mean_error"] == 0.0 and both["variance_ratio"] == 1.0 and both["log_variance_error"] == 0.0
    with pytest.raises(ValueError, match="batch size 3"):
        P.batch_statistics_gap(moments, [3])


def test_batch_statistics_gap_on_iid_values_follows_the_sampling_theory():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(20000, 1))  # one value per image, standard normal
    (row,) = P.batch_statistics_gap([(values, values**2)], [8], draws=4000, seed=1)
    # E|mean of 8| = sqrt(2 / pi) / sqrt(8); E[biased variance of 8] = 7/8
    assert row["mean_error"] == pytest.approx(np.sqrt(2 / np.pi / 8), rel=0.03)
    assert row["variance_ratio"] == pytest.approx(7 / 8, rel=0.03)


# --------------------------------------------------------------------------- precise BN


def test_recalibration_curve_with_the_whole_set_gives_the_exact_population_statistics():
    model = tiny_net().float()
    train_images = torch.rand(40, 1, 6, 6)
    test_images, test_labels = torch.rand(10, 1, 6, 6), torch.randint(0, 5, (10,))
    rows = P.recalibration_curve(model, train_images, test_images, test_labels, sizes=[40, 5], draws=2,
                                 batch_size=16)
    assert [(r["samples"], r["draw"]) for r in rows] == [(40, 0), (40, 1), (5, 0), (5, 1)]
    # reference: BN layers set by hand to the eval-mode statistics of their inputs, layer by layer
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        x = train_images
        for layer in reference:
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.copy_(x.double().mean((0, 2, 3)))
                layer.running_var.copy_(x.double().var((0, 2, 3), unbiased=True))
            x = layer(x)
    loss, acc = evaluate(reference, test_images, test_labels)
    for row in rows[:2]:  # every draw of all 40 images holds the same images
        assert row["test_accuracy"] == acc
        assert row["test_loss"] == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ValueError, match="sample size 41"):
        P.recalibration_curve(model, train_images, test_images, test_labels, sizes=[41])


# --------------------------------------------------------------------------- frozen BN


@pytest.mark.parametrize("shape, bn_class", [((6, 4), nn.BatchNorm1d), ((6, 4, 3, 3), nn.BatchNorm2d)])
def test_frozen_batch_norm_is_eval_mode_bn_in_both_modes(shape, bn_class):
    torch.manual_seed(5)
    bn = bn_class(4).double()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(*shape, dtype=torch.float64)
    frozen = P.FrozenBatchNorm2d.from_batch_norm(bn).double().train()
    torch.testing.assert_close(frozen(x), bn.eval()(x), rtol=0, atol=1e-12)
    assert list(frozen.parameters()) == []


def test_freeze_batch_norm_survives_model_train_and_keeps_statistics():
    model = tiny_net()
    frozen = P.freeze_batch_norm(model).train()
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    torch.testing.assert_close(frozen(x), model.eval()(x), rtol=0, atol=1e-12)
    for name, value in frozen.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not P.batch_norm_layers(frozen) and P.batch_norm_layers(model)  # original untouched
    with pytest.raises(ValueError, match="track_running_stats"):
        P.FrozenBatchNorm2d.from_batch_norm(nn.BatchNorm2d(3, track_running_stats=False))


# --------------------------------------------------------------------------- figures


def test_chapter_figures_draw_with_labelled_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bnlib.plots import inference as plots

    rng = np.random.default_rng(0)
    trace = {key: rng.normal(size=(20, 3)).tolist() for key in
             ("batch_mean", "batch_var", "population_mean", "population_var")}
    figures = [
        plots.running_average_frame(trace, channel=1, momentum=None),
        plots.running_average_frame(trace, channel=1, momentum=0.1),
        plots.train_mode_accuracy_figure(
            [{"order": "shuffled", "batch_size": b, "accuracy": 0.9} for b in (1, 8)], 0.95),
        plots.batch_gap_figure([{"batch_size": b, "mean_error": 1 / b, "variance_ratio": 0.9} for b in (1, 4)]),
        plots.mode_gap_figure([{"batch_size": 4, "train_mode_accuracy": 0.8, "eval_mode_accuracy": 0.9}]),
        plots.recalibration_figure([{"samples": 10, "draw": 0, "test_accuracy": 0.9}], 0.95, 0.96, 100),
    ]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel()
        plt.close(fig)
