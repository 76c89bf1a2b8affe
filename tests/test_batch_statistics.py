"""bnlib.batch_statistics against direct computations and the sampling theory."""

import numpy as np
import pytest
import torch
from _nets import tiny_net
from torch import nn

from bnlib.batch_statistics import PatchMoments, batch_statistics_gap, bn_input_moments



@pytest.mark.parametrize("conv_kwargs", [
    {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "padding": (0, 1), "stride": 2},
    {"in_channels": 2, "out_channels": 3, "kernel_size": 2, "dilation": 2},
])
def test_patch_moments_give_the_exact_statistics_of_the_convolution_output(conv_kwargs):
    torch.manual_seed(2)
    conv = nn.Conv2d(**conv_kwargs).double()
    images = torch.rand(20, conv.in_channels, 9, 8, dtype=torch.float64)
    moments = PatchMoments(images, conv, chunk=7)
    mean, var = moments.output_statistics(conv)
    with torch.no_grad():
        out = conv(images)
    torch.testing.assert_close(mean, out.mean((0, 2, 3)), rtol=0, atol=1e-12)
    torch.testing.assert_close(var, out.var((0, 2, 3), unbiased=False), rtol=0, atol=1e-12)



@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_bn_input_moments_are_the_per_image_moments_of_each_bn_input(memory_format):
    # channels-last: the layout of a model trained by bnlib.training, reduced along another axis
    model = tiny_net().train().to(memory_format=memory_format)
    images = torch.rand(7, 1, 6, 6, dtype=torch.float64).contiguous(memory_format=memory_format)
    moments = bn_input_moments(model, images, batch_size=3)
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
    single, both = batch_statistics_gap(moments, [1, 2], draws=5)
    assert single == {"batch_size": 1, "mean_error": 1.0, "variance_ratio": 0.0, "log_variance_error": np.inf}
    assert both["mean_error"] == 0.0 and both["variance_ratio"] == 1.0 and both["log_variance_error"] == 0.0
    with pytest.raises(ValueError, match="batch size 3"):
        batch_statistics_gap(moments, [3])


def test_batch_statistics_gap_on_iid_values_follows_the_sampling_theory():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(20000, 1))  # one value per image, standard normal
    (row,) = batch_statistics_gap([(values, values**2)], [8], draws=4000, seed=1)
    # E|mean of 8| = sqrt(2 / pi) / sqrt(8); E[biased variance of 8] = 7/8
    assert row["mean_error"] == pytest.approx(np.sqrt(2 / np.pi / 8), rel=0.03)
    assert row["variance_ratio"] == pytest.approx(7 / 8, rel=0.03)
