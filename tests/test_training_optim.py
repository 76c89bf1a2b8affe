"""bnlib.training.optim: the engine's SGD equals torch.optim.SGD(foreach=True) bit for bit."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from bnlib.models import three_conv_net
from bnlib.training.optim import MultiTensorSGD


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 1e-3),
                                                    (0.9, 5e-4)])
def test_the_steps_equal_torchs_multi_tensor_sgd_bit_for_bit(momentum, weight_decay):
    torch.manual_seed(0)
    ours, theirs = three_conv_net(True), three_conv_net(True)
    theirs.load_state_dict(ours.state_dict())
    initial = [p.detach().clone() for p in ours.parameters()]
    theirs[0].bias.requires_grad_(False)  # a frozen parameter, skipped by both
    ours[0].bias.requires_grad_(False)
    mine = MultiTensorSGD(ours.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    reference = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=momentum,
                                weight_decay=weight_decay, foreach=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.rand(8, 1, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        for model, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    moved = [not torch.equal(a, b) for a, b in zip(ours.parameters(), initial)]
    assert moved[1] is False and sum(moved) == len(moved) - 1  # all but the frozen bias moved


def test_zero_grad_forgets_or_zeroes():
    layer = nn.Linear(3, 2)
    optimizer = MultiTensorSGD(layer.parameters(), lr=0.1)
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.zero_grad(set_to_none=False)
    assert torch.equal(layer.weight.grad, torch.zeros(2, 3))
    optimizer.zero_grad()
    assert layer.weight.grad is None
    optimizer.step()  # no gradients: nothing moves, nothing fails


def test_a_training_run_does_not_import_torchs_compiler():
    code = ("import sys; from bnlib.training import RunConfig, train; "
            "train(RunConfig(epochs=1, train_subset=64, test_subset=50), progress=False); "
            "print('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
