"""bnlib.shift against independent references: torch's own BN, hand-computed gradients,
numpy's percentiles and the closed forms of a quadratic loss."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlib import shift
from bnlib.shift import NoisyBatchNorm


def buffers_of(model: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for b in model.buffers()]


def assert_same_tensors(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


# ---------------------------------------------------------------------------- NoisyBatchNorm


@pytest.mark.parametrize("shape", [(8, 5), (4, 5, 3, 3)])
def test_noisy_bn_keeps_shape_in_both_modes(shape):
    layer = NoisyBatchNorm(5)
    x = torch.randn(shape)
    assert layer(x).shape == shape
    layer.eval()
    assert layer(x).shape == shape


def test_noisy_bn_rejects_other_ranks():
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\)"):
        NoisyBatchNorm(5)(torch.randn(4, 5, 6))


def test_noisy_bn_rejects_bad_bounds():
    with pytest.raises(ValueError, match="var_bound"):
        NoisyBatchNorm(3, var_bound=0.5)
    with pytest.raises(ValueError, match="mean_bound"):
        NoisyBatchNorm(3, mean_bound=-1.0)


@pytest.mark.parametrize(
    "shape, reference",
    [((20_000, 3), nn.BatchNorm1d), ((500, 3, 8, 5), nn.BatchNorm2d)],
)
def test_noisy_bn_is_torch_bn_plus_noise_of_the_drawn_mean_and_variance(shape, reference):
    torch.manual_seed(0)
    noisy = NoisyBatchNorm(3, mean_bound=2.0, var_bound=3.0)
    bn = reference(3)
    with torch.no_grad():
        for layer in (noisy, bn):
            layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            layer.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    x = torch.randn(shape) * 3.0 + 2.0
    noise = noisy(x) - bn(x)
    # The running statistics are BN's own.
    assert torch.allclose(noisy.running_mean, bn.running_mean)
    assert torch.allclose(noisy.running_var, bn.running_var)
    # The drawn parameters lie in their ranges.
    assert noisy.noise_mean.abs().max() <= 2.0
    assert noisy.noise_var.min() >= 1.0 and noisy.noise_var.max() <= 3.0
    # Per channel, the noise has the drawn mean and variance (within sampling error).
    per_channel = noise.transpose(0, 1).reshape(3, -1)
    count = per_channel.shape[1]
    mean_tolerance = 5 * torch.sqrt(noisy.noise_var / count)
    assert torch.all((per_channel.mean(dim=1) - noisy.noise_mean).abs() < mean_tolerance)
    var_tolerance = 5 * math.sqrt(2 / count) * noisy.noise_var
    assert torch.all((per_channel.var(dim=1) - noisy.noise_var).abs() < var_tolerance)


def test_noisy_bn_redraws_its_noise_distribution_at_every_step():
    torch.manual_seed(1)
    layer = NoisyBatchNorm(4)
    x = torch.randn(16, 4)
    layer(x)
    first = (layer.noise_mean.clone(), layer.noise_var.clone())
    layer(x)
    assert not torch.equal(first[0], layer.noise_mean)
    assert not torch.equal(first[1], layer.noise_var)


def test_noisy_bn_is_seeded_by_the_global_generator():
    x = torch.randn(16, 4)
    layer = NoisyBatchNorm(4)
    torch.manual_seed(7)
    a = layer(x)
    torch.manual_seed(7)
    b = layer(x)
    assert torch.equal(a, b)


def test_noisy_bn_in_eval_mode_is_deterministic_torch_bn():
    torch.manual_seed(2)
    noisy, bn = NoisyBatchNorm(3), nn.BatchNorm2d(3)
    x = torch.randn(10, 3, 4, 4) * 2 + 1
    noisy(x)
    bn(x)
    noisy.eval()
    bn.eval()
    y = torch.randn(6, 3, 4, 4)
    assert torch.allclose(noisy(y), bn(y), atol=1e-6)
    assert torch.equal(noisy(y), noisy(y))


def test_noisy_mlp_of_the_models_module_runs():
    models = pytest.importorskip("bnlib.models")
    model = models.sigmoid_mlp(norm="noisy_batch", hidden=(6, 5), in_features=4, classes=3)
    assert sum(isinstance(m, NoisyBatchNorm) for m in model.modules()) == 2
    assert model(torch.randn(7, 4)).shape == (7, 3)


# ---------------------------------------------------------------------------- percentiles


def test_percentiles_of_a_known_sigmoid_input_match_numpy():
    model = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(1.0)
    x = torch.arange(101, dtype=torch.float32).unsqueeze(1)
    got = shift.activation_percentiles(model, "1", x, unit=0)
    expected = np.percentile(2 * np.arange(101) + 1, [15, 50, 85])
    assert np.allclose(got, expected)
    assert shift.last_module_name(model) == "1"


def small_bn_model() -> nn.Sequential:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Sigmoid()).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        model[1].bias.copy_(torch.tensor([0.1, -0.3, 0.7]))
        model[1].running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        model[1].running_var.copy_(torch.tensor([4.0, 0.25, 1.5]))
    return model


def test_percentiles_in_train_mode_use_the_batch_statistics_and_leave_bn_untouched():
    model = small_bn_model()
    x = torch.randn(50, 4, dtype=torch.float64)
    before = buffers_of(model)
    got = shift.activation_percentiles(model, "2", x, unit=1, percentiles=(10, 50, 90))
    assert_same_tensors(before, buffers_of(model))
    assert model.training
    z = (x @ model[0].weight.T + model[0].bias).detach().numpy()[:, 1]
    bn = model[1]
    zhat = (z - z.mean()) / np.sqrt(z.var() + bn.eps)  # biased variance, as BN in training
    expected = np.percentile(zhat * 2.0 - 0.3, [10, 50, 90])
    assert np.allclose(got, expected)


def test_percentiles_in_eval_mode_use_the_running_statistics_and_restore_train_mode():
    model = small_bn_model()
    x = torch.randn(50, 4, dtype=torch.float64)
    got = shift.activation_percentiles(model, "2", x, unit=2, train=False)
    assert model.training
    z = (x @ model[0].weight.T + model[0].bias).detach().numpy()[:, 2]
    bn = model[1]
    zhat = (z - 0.5) / np.sqrt(1.5 + bn.eps)
    expected = np.percentile(zhat * -1.0 + 0.7, [15, 50, 85])
    assert np.allclose(got, expected)


def test_percentiles_reject_a_bad_module_or_unit():
    model = small_bn_model()
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        with pytest.raises(ValueError, match="no submodule 'nope'"):
            shift.activation_percentiles(model, "nope", x)
        with pytest.raises(ValueError, match="unit=3"):
            shift.activation_percentiles(model, "2", x, unit=3)


def sgd_steps(model, probes, steps=6, seed=0):
    """A few plain SGD steps on random data, calling probes as bnlib.training does."""
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for probe in probes:
        probe.start(model)
    for step in range(1, steps + 1):
        x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        for probe in probes:
            probe.after_step(step, model, x, y)
    return model


def noisy_model() -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Linear(4, 6), NoisyBatchNorm(6), nn.Sigmoid(), nn.Linear(6, 5), NoisyBatchNorm(5),
        nn.Sigmoid(), nn.Linear(5, 3),
    )


def all_probes():
    torch.manual_seed(5)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    return [
        shift.ActivationPercentileProbe(x, every=2),
        shift.AccuracyProbe(x, y, every=3),
        shift.ICSProbe(x, y, layer=1, lr=0.5, every=2),
        shift.LandscapeProbe(x, y, step_sizes=(0.1, 0.5), every=3),
    ]


def test_probes_do_not_change_the_training_they_watch():
    plain = sgd_steps(noisy_model(), [])
    watched = sgd_steps(noisy_model(), all_probes())
    for a, b in zip(plain.state_dict().values(), watched.state_dict().values()):
        assert torch.equal(a, b)


def test_probes_follow_the_protocol_pickle_and_record_every_k_steps():
    probes = all_probes()
    for probe in probes:
        assert isinstance(probe, shift.StepProbe)
        pickle.loads(pickle.dumps(probe))
    sgd_steps(noisy_model(), probes)
    for probe in probes:
        pickle.loads(pickle.dumps(probe))
        result = probe.result()
        assert probe.key()["every"] in (2, 3)
        every = probe.key()["every"]
        assert result["step"] == [float(s) for s in range(0, 7, every)]
        assert all(len(v) == len(result["step"]) for v in result.values())
        assert all(isinstance(v, float) for values in result.values() for v in values)
    assert set(probes[0].result()) == {"step", "p15", "p50", "p85"}


def test_percentile_probe_records_what_the_function_measures_at_that_step():
    model = noisy_model()
    x = torch.randn(10, 4)
    probe = shift.ActivationPercentileProbe(x, unit=2, every=3, seed=11)
    sgd_steps(model, [probe])
    expected = shift.activation_percentiles(model, "5", x, unit=2, seed=11 + 6)
    assert [probe.result()[k][-1] for k in ("p15", "p50", "p85")] == expected


def test_accuracy_counts_argmax_hits():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 0, 0, 1])
    assert shift.accuracy(model, x, y, batch_size=3) == 0.75


# ---------------------------------------------------------------------------- ICS


def bn_mlp() -> nn.Sequential:
    torch.manual_seed(6)
    return nn.Sequential(
        nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 5), nn.BatchNorm1d(5),
        nn.Tanh(), nn.Linear(5, 3),
    ).double()


def test_ics_is_zero_without_an_update_of_the_earlier_layers():
    model = bn_mlp()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    m = shift.ics_measure(model, 2, x, y, lr=0.0)
    assert m["diff_norm"] == 0.0 and m["relative"] == 0.0
    assert m["cosine"] == pytest.approx(1.0, abs=1e-12)
    first = shift.ics_measure(model, 0, x, y, lr=1.0)  # nothing comes before the first layer
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
    m = shift.ics_measure(
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
    got = shift.ics_measure(model, 2, x, y, lr)  # the third Linear, module "6"
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
    assert shift.ics_measure(model, 2, x, y, lr=0.0)["diff_norm"] == 0.0


def test_ics_rejects_a_layer_out_of_range():
    with pytest.raises(ValueError, match="3 Linear/Conv layers"):
        shift.ics_measure(bn_mlp(), 5, torch.randn(4, 4), torch.zeros(4, dtype=torch.long), 0.1)


# ---------------------------------------------------------------------------- landscape


def test_landscape_of_a_quadratic_loss_matches_the_closed_form():
    torch.manual_seed(8)
    n, d = 30, 4
    X = torch.randn(n, d, dtype=torch.float64)
    y = torch.randn(n, 1, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    w = model.weight.detach().numpy().reshape(d).copy()
    etas = [0.0, 0.05, 0.2, 0.4]
    got = shift.gradient_landscape(model, X, y, etas, loss_fn=F.mse_loss)

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
    shift.gradient_landscape(model, x, y, [0.1, 1.0])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(rng_state, torch.random.get_rng_state())


# ---------------------------------------------------------------------------- summaries


def test_band_summary_on_a_hand_made_band():
    band = {"p15": [0.0, 1.0, -1.0], "p50": [1.0, 3.0, 2.0], "p85": [2.0, 4.0, 3.0]}
    got = shift.band_summary(band)
    assert got == {"median_width": 3.0, "middle_range": 2.0, "middle_jitter": 1.5}


def test_comparison_words():
    assert shift.comparison(1.0, 2.0, "narrower", "wider") == "narrower"
    assert shift.comparison(3.0, 2.0, "narrower", "wider") == "wider"
    assert shift.comparison(2.0, 2.0) == "equal"


# ---------------------------------------------------------------------------- figures


class FakeHistory:
    """Just what the figures read from a bnlib.training.History."""

    def __init__(self, band):
        self.initial = {"test_accuracy": 0.1}
        self.step_evals = [{"step": 5, "test_accuracy": 0.5}, {"step": 10, "test_accuracy": 0.8}]
        self.probes = {"percentiles": band}


def test_figures_have_labelled_axes():
    import matplotlib.pyplot as plt

    from bnlib.plots import shift as plots

    band = {"step": [0.0, 5.0, 10.0], "p15": [-1.0, -2.0, -1.5], "p50": [0.0, 0.1, 0.2],
            "p85": [1.0, 2.0, 1.5]}
    ics = {"step": [0.0, 5.0], "relative": [0.1, 0.2], "cosine": [0.9, 0.8]}
    land = {"step": [0.0, 5.0], "loss_min": [1.0, 0.5], "loss_max": [2.0, 1.0],
            "grad_change_min": [0.1, 0.2], "grad_change_max": [0.3, 0.4],
            "beta_smoothness": [2.0, 3.0]}
    histories = {"standard": FakeHistory(band), "BN": FakeHistory(band)}
    figures = [
        plots.figure1(histories, "percentiles", "input to sigmoid"),
        plots.percentile_bands({"noisy BN": band}, "input to sigmoid"),
        plots.ics_over_steps({"standard": ics, "BN": ics}, "layer 2"),
        plots.landscape_over_steps({"standard": land}),
        plots.accuracy_over_steps(histories),
    ]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_xlabel() == "training step"
        assert fig.axes[0].get_ylabel()
        plt.close(fig)
