"""Small networks shared by the tests of batch norm at inference time."""

import torch
from torch import nn

from bnlib.inference import batch_norm_layers


def tiny_net(seed: int = 0, in_channels: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 6 * 6, 5),
    ).double()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for bn in batch_norm_layers(net):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return net
