"""bnlib.seeds against hand-computed cases and NumPy's own sample standard deviation."""

import math

import numpy as np
import pytest

from bnlib.seeds import CONVENTION, SeedSummary, describe, summarize, tolerance


def test_summary_by_hand():
    s = summarize([1.0, 2.0, 4.0])
    # mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9; over n - 1 = 2: 7/3
    assert s.mean == pytest.approx(7 / 3, rel=1e-15)
    assert s.sd == pytest.approx(math.sqrt(7 / 3), rel=1e-15)
    assert (s.low, s.high, s.n) == (1.0, 4.0, 3)


def test_sd_is_numpys_sample_standard_deviation():
    values = np.random.default_rng(0).normal(0.9, 0.01, size=7)
    assert summarize(values).sd == pytest.approx(float(values.std(ddof=1)), rel=1e-12)
    assert "sample standard deviation" in CONVENTION


def test_one_seed_has_no_spread_but_a_zero_tolerance():
    s = summarize([0.987])
    assert math.isnan(s.sd) and s.n == 1
    assert s.tolerance == 0.0
    assert describe(s) == "98.7% (one seed)"


def test_tolerance_is_the_largest_spread():
    a, b, one = summarize([1.0, 3.0]), summarize([1.0, 1.5]), summarize([5.0])
    assert tolerance(a, b) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert tolerance(b, one) == pytest.approx(math.sqrt(0.125), rel=1e-15)
    assert tolerance(one) == 0.0
    with pytest.raises(ValueError):
        tolerance()


def test_describe_several_seeds():
    assert describe(summarize([0.97, 0.99]), ".2f") == "0.98 ± 0.01 (2 seeds)"  # sd 0.014


@pytest.mark.parametrize("values", [[], [1.0, math.nan], [math.inf]])
def test_summarize_refuses_no_or_non_finite_values(values):
    with pytest.raises(ValueError):
        summarize(values)


def test_as_dict_is_plain_numbers():
    d = summarize([1, 2]).as_dict()
    assert d == {"mean": 1.5, "sd": pytest.approx(math.sqrt(0.5)), "low": 1.0, "high": 2.0, "n": 2}
    assert isinstance(SeedSummary(**d), SeedSummary)


def test_describe_prints_a_mean_that_rounds_to_zero_without_a_sign():
    # a difference over seeds whose mean is -0.0002: "0.0%", never "-0.0%"
    assert describe(summarize([-0.0004, 0.0])) == "0.0% ± 0.0% (2 seeds)"
    assert describe(summarize([-0.0003])) == "0.0% (one seed)"
