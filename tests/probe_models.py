"""Small models and a training loop shared by the probe tests (not a test module)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnlib.nn import NoisyBatchNorm


def buffers_of(model: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for b in model.buffers()]


def assert_same_tensors(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def small_bn_model() -> nn.Sequential:
    """Linear(4, 3) - BatchNorm1d(3) with set gamma, beta and running statistics - Sigmoid."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Sigmoid()).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        model[1].bias.copy_(torch.tensor([0.1, -0.3, 0.7]))
        model[1].running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        model[1].running_var.copy_(torch.tensor([4.0, 0.25, 1.5]))
    return model


def noisy_model() -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Linear(4, 6), NoisyBatchNorm(6), nn.Sigmoid(), nn.Linear(6, 5), NoisyBatchNorm(5),
        nn.Sigmoid(), nn.Linear(5, 3),
    )


def bn_mlp() -> nn.Sequential:
    torch.manual_seed(6)
    return nn.Sequential(
        nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 5), nn.BatchNorm1d(5),
        nn.Tanh(), nn.Linear(5, 3),
    ).double()


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
