"""The frozen batch norm layer against torch's BN layers in eval mode."""

import pytest
import torch
from torch import nn

from bnlib.nn import FrozenBatchNorm2d


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
    frozen = FrozenBatchNorm2d.from_batch_norm(bn).double().train()
    torch.testing.assert_close(frozen(x), bn.eval()(x), rtol=0, atol=1e-12)
    assert list(frozen.parameters()) == []
