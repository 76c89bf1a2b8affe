"""bnlib.plots.equations: the chapter-02 figures draw, label their axes and show the right numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bnlib.plots import equations  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def activations(n=12, c=3, hw=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(loc=np.arange(c)[None, :, None, None], scale=2.0, size=(n, c, hw, hw))


def test_normalised_axes_shades_one_channel():
    fig = equations.normalised_axes(n=3, c=4, hw=2, channel=1)
    assert isinstance(fig, Figure)
    ax_fc, ax_conv = fig.axes
    shaded_fc = [p for p in ax_fc.patches if p.get_facecolor() != (1, 1, 1, 1)]
    shaded_conv = [p for p in ax_conv.patches if p.get_facecolor() != (1, 1, 1, 1)]
    assert len(ax_fc.patches) == 3 * 4 and len(shaded_fc) == 3  # one column over N
    assert len(ax_conv.patches) == 3 * 4 * 2 * 2 and len(shaded_conv) == 3 * 2 * 2  # N x H x W
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert "3 x 2 x 2 = 12 values" in ax_conv.get_title()


def test_computational_graph_draws():
    fig = equations.computational_graph()
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {r"$\mu_B$", r"$\sigma_B^2$", r"$\hat x_i$", r"$\gamma$", r"$\beta$"} <= texts


def test_batch_size_frame_reports_the_largest_difference():
    acts = activations()
    fig = equations.batch_size_frame(acts, batch_size=2, channel=1, eps=1e-5)
    pool = acts[:, 1]
    batch = pool[:2]
    image = pool[0]
    with_batch = (image - batch.mean()) / np.sqrt(batch.var() + 1e-5)
    with_pool = (image - pool.mean()) / np.sqrt(pool.var() + 1e-5)
    expected = np.abs(with_batch - with_pool).max()
    assert f"largest difference {expected:.2f}" in fig.axes[1].get_title()
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    full = equations.batch_size_frame(acts, batch_size=12, channel=1)
    assert "largest difference 0.00" in full.axes[1].get_title()


@pytest.mark.parametrize("bad", [0, 13])
def test_batch_size_frame_rejects_impossible_batches(bad):
    with pytest.raises(ValueError, match="batch_size must be in 1..12"):
        equations.batch_size_frame(activations(), batch_size=bad)


def test_affine_frame_reports_mean_beta_and_shrunk_std():
    values = activations()[:, 2]
    gamma, beta, eps = 2.0, -1.0, 3.0
    fig = equations.affine_frame(values, gamma, beta, eps)
    std = gamma * np.sqrt(values.var() / (values.var() + eps))
    title = fig.axes[1].get_title()
    assert f"mean {beta:.2f}" in title and f"std {std:.2f}" in title
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)


def test_affine_preset_frame_is_affine_frame_with_a_pair():
    values = activations()[:, 1]
    pair = equations.affine_preset_frame(values, (2.0, -1.0), eps=1e-2)
    single = equations.affine_frame(values, 2.0, -1.0, eps=1e-2)
    assert pair.axes[1].get_title() == single.axes[1].get_title()
