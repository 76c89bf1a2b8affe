"""Chapter 02's measurements against hand-computed cases and the algebra of BN."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bnlib.experiments import equations

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "02_equations.md"


def test_variance_gaps_find_the_biased_variance_in_training_and_the_unbiased_running_one():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(2, 3, 3, 3))   # m = 18 per channel
    gaps = equations.variance_gaps(x)
    assert gaps["biased"] < 1e-10 and gaps["running"] < 1e-10
    # The unbiased normalisation is smaller by sqrt(17/18): a gap of 2.8% of max|x_hat|.
    assert gaps["unbiased"] > 1e-3


def test_batch_shift_of_a_two_value_channel():
    values = np.array([0.0, 2.0]).reshape(2, 1, 1)
    # Alone (m = 1) the first value normalises to 0; with both it is (0 - 1) / sqrt(1 + eps).
    assert equations.batch_shift(values, 1) == pytest.approx(1 / np.sqrt(1 + 1e-5), rel=1e-12)
    assert equations.batch_shift(values, 2) == 0.0


def test_a_batch_of_one_outputs_beta_and_passes_no_gradient():
    rng = np.random.default_rng(1)
    got = equations.batch_of_one(rng.normal(size=(1, 4)), rng.uniform(0.5, 2, 4),
                                 rng.normal(size=4), rng.normal(size=(1, 4)))
    assert got["one_y_gap"] < 1e-12 and got["one_dx"] < 1e-12


def test_random_upstream_draws_dy_then_gamma_then_beta():
    up = equations.random_upstream((5, 3, 2, 2), seed=7)
    rng = np.random.default_rng(7)
    assert np.array_equal(up["dy"], rng.normal(size=(5, 3, 2, 2)))
    assert np.array_equal(up["gamma"], rng.uniform(0.5, 2.0, size=3))
    assert np.array_equal(up["beta"], rng.normal(size=3))
    assert np.array_equal(up["rng"].normal(size=2), rng.normal(size=2))


def test_findings_hold_every_number_the_chapter_glues_and_obey_the_algebra():
    torch.manual_seed(0)
    digits = torch.rand(128, 1, 32, 32)
    conv = torch.nn.Conv2d(1, 16, kernel_size=3, padding=1)
    f = equations.findings(digits, conv)
    glued = set(re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", CHAPTER.read_text()))
    assert glued <= set(f)
    assert f["effective_batch"] == 64 * 32 * 32 and f["n_crop"] == 4 * 3 * 8 * 8
    assert f["sum_dx"] < 1e-12            # the input gradient sums to zero per channel
    assert f["sum_dx_xhat_eps0"] < 1e-12  # ... and is orthogonal to x_hat when eps = 0
    assert f["sum_free"] > 1e-3           # a random gradient is neither
    assert f["gap_biased"] < 1e-10 < f["gap_unbiased"]
    assert f["one_y_gap"] < 1e-12 and f["identity_gap"] < 1e-10
    assert f["identity_gap_other"] > 1e-4  # another batch, other statistics: not restored
    assert f["fd_max"] < 1e-6 and f["torch_max"] < 1e-10


def test_identity_gaps_restore_one_batch_only():
    """Hand case: a second batch equal to the first plus 1 has the same variance and its mean
    moved by 1; BN in training mode removes the move, so gamma and beta set to the first
    batch's statistics return the first batch, 1 below the second."""
    rng = np.random.default_rng(0)
    batch = rng.normal(2.0, 3.0, size=(8, 3, 4, 4))
    same, other = equations.identity_gaps(batch, batch + 1.0)
    assert same < 1e-12
    assert other == pytest.approx(1.0, abs=1e-9)
