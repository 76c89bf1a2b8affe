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


def test_listed_joins_items_for_a_sentence():
    assert prose.listed(["a"]) == "a"
    assert prose.listed(("a", "b")) == "a and b"
    assert prose.listed(x for x in "abc") == "a, b and c"
    assert prose.listed([1, 2.5]) == "1 and 2.5"
    with pytest.raises(ValueError):
        prose.listed([])
