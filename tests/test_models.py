"""bnlib.models against hand-written networks and hand-counted parameters."""

import pytest
import torch
from torch import nn

from bnlib import models


def article_net_by_hand(batch_norm: bool) -> nn.Sequential:
    """The article's network, typed out layer by layer."""
    norm = (lambda: [nn.BatchNorm2d(16)]) if batch_norm else (lambda: [])
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), *norm(), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), *norm(), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), *norm(), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4096, 10),
    )


# Hand count: conv 1->16: 16*1*3*3 + 16 = 160; conv 16->16: 16*16*3*3 + 16 = 2320 (twice);
# linear: 4096*10 + 10 = 40970; each BatchNorm2d(16): gamma and beta, 32.
HAND_COUNT = {False: 160 + 2 * 2320 + 40970, True: 160 + 2 * 2320 + 40970 + 3 * 32}


@pytest.mark.parametrize("batch_norm", [False, True])
def test_three_conv_net_matches_the_article(batch_norm):
    torch.manual_seed(0)
    net = models.three_conv_net(batch_norm)
    reference = article_net_by_hand(batch_norm)
    assert [type(m) for m in net] == [type(m) for m in reference]
    assert models.count_parameters(net) == HAND_COUNT[batch_norm]
    reference.load_state_dict(net.state_dict())  # same names and shapes
    x = torch.rand(5, 1, 32, 32)
    net.train(), reference.train()
    torch.testing.assert_close(net(x), reference(x), rtol=0, atol=0)
    assert net(x).shape == (5, 10)


def test_norm_keyword_and_last_conv_index():
    assert models.last_conv_index(models.three_conv_net(False)) == 4
    assert models.last_conv_index(models.three_conv_net(True)) == 6
    assert isinstance(models.three_conv_net(norm="batch")[1], nn.BatchNorm2d)
    group = models.three_conv_net(norm="group", groups=8)[1]
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 8
    assert models.count_parameters(models.three_conv_net(norm="group")) == HAND_COUNT[True]
    with pytest.raises(ValueError, match="divide"):
        models.three_conv_net(norm="group", groups=5)
    with pytest.raises(ValueError, match="unknown norm"):
        models.three_conv_net(norm="layer_of_salt")
    with pytest.raises(ValueError, match="disagree"):
        models.three_conv_net(True, norm="group")


def test_article_tracked_weights_are_in_the_last_conv():
    net = models.three_conv_net(True)
    for name, index in models.ARTICLE_TRACKED_WEIGHTS:
        assert name == "last_conv.weight"
        net[6].weight[index]  # filter 3, input channel 4 or 8, row 1, column 0: in range


@pytest.mark.parametrize("norm", [None, "batch"])
def test_sigmoid_mlp(norm):
    net = models.sigmoid_mlp(norm)
    # 1024*100+100, 2 x (100*100+100), 100*10+10; BatchNorm1d(100) adds 200 per hidden layer
    expected = 102500 + 2 * 10100 + 1010 + (600 if norm else 0)
    assert models.count_parameters(net) == expected
    kinds = [type(m) for m in net]
    assert kinds.count(nn.Sigmoid) == 3
    if norm:
        # normalisation between each Linear and its sigmoid
        for i, kind in enumerate(kinds):
            if kind is nn.Sigmoid:
                assert kinds[i - 1] is nn.BatchNorm1d and kinds[i - 2] is nn.Linear
    assert net(torch.rand(4, 1, 32, 32)).shape == (4, 10)


def test_registry():
    assert set(models.MODELS) >= {"three_conv_net", "sigmoid_mlp"}
    net = models.build_model("three_conv_net", batch_norm=True)
    assert models.count_parameters(net) == HAND_COUNT[True]
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model("resnet")


@pytest.mark.parametrize("norm", ["bnlib_batch", "noisy_batch"])
def test_norms_written_in_bnlib(norm):
    net = models.three_conv_net(norm=norm)
    assert net(torch.rand(4, 1, 32, 32)).shape == (4, 10)
    assert models.sigmoid_mlp(norm)(torch.rand(4, 1024)).shape == (4, 10)
