"""The wording helpers, branch by branch."""

import pytest

from bnlib import prose


def test_comparison_picks_the_word_that_makes_the_sentence_true():
    assert prose.comparison(1.0, 2.0) == "smaller"
    assert prose.comparison(2.0, 1.0) == "larger"
    assert prose.comparison(1.0, 1.0) == "equal"
    assert prose.comparison(1, 2, less="fell", more="rose", same="held") == "fell"


@pytest.mark.parametrize("count,total,words", [
    (4, 5, "in 4 of 5 seeds"),
    (5, 5, "in all 5 seeds"),
    (0, 5, "in none of the 5 seeds"),
    (1, 1, "in the one seed"),
    (0, 1, "in no seed"),
])
def test_count_of(count, total, words):
    assert prose.count_of(count, total) == words


def test_count_of_rejects_a_count_outside_the_total():
    with pytest.raises(ValueError, match="between 0 and total"):
        prose.count_of(6, 5)


# --------------------------------------------------------------- Hindi digits (chapter 05)


@pytest.mark.parametrize("count,total,words", [
    (5, 5, "holds in all 5 seeds"),
    (3, 5, "holds in 3 of 5 seeds"),
    (0, 5, "does not hold in any of the 5 seeds"),
    (1, 1, "holds in the one seed"),
    (0, 1, "does not hold in the one seed"),
])
def test_holds(count, total, words):
    assert prose.holds(count, total) == words


def test_holds_rejects_a_count_outside_the_total():
    with pytest.raises(ValueError):
        prose.holds(3, 2)


@pytest.mark.parametrize("value,words", [
    (0.5, "below"), (1.0, "within"), (1.5, "within"), (2.0, "within"), (2.5, "above"),
    (float("nan"), "not comparable with"),
])
def test_position_against_a_range_edges_included(value, words):
    assert prose.position(value, 1.0, 2.0) == words


def test_position_rejects_an_upside_down_range():
    with pytest.raises(ValueError):
        prose.position(1.0, 2.0, 1.0)


@pytest.mark.parametrize("value,spec,text", [
    (-0.04, "+.1f", "0.0"),        # a negative difference that rounds to zero: no sign
    (-0.0004, "+.1%", "0.0%"),
    (-1e-9, ".2f", "0.00"),        # also without the "+" option
    (0.0, "+.1f", "0.0"),          # an exact zero: no "+" either
    (-0.0, ".1e", "0.0e+00"),
    (0, "+d", "0"),
    (1.25, "+.1f", "+1.2"),        # positive: the sign the spec asks for
    (0.06, "+.1f", "+0.1"),
    (-0.06, "+.1f", "-0.1"),       # negative, not rounding to zero: keeps its sign
    (-0.3, ".0%", "-30%"),
    (-1e-300, "", "-1e-300"),      # tiny but printed in full: not a zero
    (float("nan"), "+.1f", "nan"),  # NaN: never signed
    (float("-inf"), "+.1f", "-inf"),
    (float("inf"), "+.1f", "+inf"),
])
def test_number_prints_a_rounded_zero_without_a_sign(value, spec, text):
    assert prose.number(value, spec) == text


def test_number_takes_numpy_and_torch_scalars():
    import numpy as np
    import torch

    assert prose.number(np.float32(-0.01), "+.1f") == "0.0"
    assert prose.number(np.float64(float("nan")), "+.1f") == "nan"
    assert prose.number(torch.tensor(-0.01).item(), ".1f") == "0.0"


def test_listed_joins_items_for_a_sentence():
    assert prose.listed(["a"]) == "a"
    assert prose.listed(("a", "b")) == "a and b"
    assert prose.listed(x for x in "abc") == "a, b and c"
    assert prose.listed([1, 2.5]) == "1 and 2.5"
    with pytest.raises(ValueError):
        prose.listed([])


@pytest.mark.parametrize("text,unsigned", [
    ("-0.000", "0.000"), ("+0.0%", "0.0%"), ("-0", "0"), ("-0.0e+00", "0.0e+00"),
    ("-0,000", "0,000"),
    ("-0.001", "-0.001"), ("+1.5", "+1.5"), ("-1e-05", "-1e-05"),  # not zeros
    ("-", "-"), ("-0.0 points", "-0.0 points"), ("BN", "BN"), ("", ""),  # not numbers
])
def test_unsigned_zero_strips_the_sign_of_a_formatted_zero_only(text, unsigned):
    assert prose.unsigned_zero(text) == unsigned
