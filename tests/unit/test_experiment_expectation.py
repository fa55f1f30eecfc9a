"""Expectations: the condition syntax of checks and guards."""

from __future__ import annotations

import math

import pytest

from resilience.experiment._problems import ValueProblem
from resilience.experiment.expectation import Expectation


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("< 10", 9.9, 10),
        ("<= 0.5", 0.5, 0.51),
        ("> 3", 3.1, 3),
        (">= 1", 1, 0.99),
        ("== 0", 0, 0.001),
        ("!= 0", 1, 0),
        ("between 1 and 5", 5, 5.01),
        ("between 1 and 5", 1, 0.99),
        ("<500ms", 0.499, 0.5),
        ("< 1%", 0.009, 0.01),
        ("between 100ms and 2s", 1.0, 2.5),
        ("> -3", -2, -3),
        ("< 1e3", 999, 1000),
    ],
)
def test_holds_follows_the_operator(text: str, inside: float, outside: float) -> None:
    """Each operator accepts values on its side of the bound and refuses the others."""
    expectation = Expectation.parse(text)
    assert expectation.holds(inside)
    assert not expectation.holds(outside)


def test_units_convert_to_base_units() -> None:
    """'< 500ms' compares seconds (0.5) and '< 1%' compares fractions (0.01)."""
    assert Expectation.parse("< 500ms").value == pytest.approx(0.5)
    assert Expectation.parse("< 1%").value == pytest.approx(0.01)


def test_nan_never_holds() -> None:
    """A missing measurement (NaN) satisfies no condition, not even '!='."""
    for text in ("< 1", "!= 0", "between 0 and 1"):
        assert not Expectation.parse(text).holds(math.nan)


@pytest.mark.parametrize(
    "text", ["< 500ms", "<= 1%", "== 0", "!= 0", "between 1 and 5", ">= 2h", "< 0.25"]
)
def test_str_reads_back_to_the_same_expectation(text: str) -> None:
    """str() prints the condition in its own units, and parsing it gives the same object."""
    expectation = Expectation.parse(text)
    assert Expectation.parse(str(expectation)) == expectation
    assert str(expectation) == text


def test_mapping_form_matches_string_form() -> None:
    """{op, value} and {op: between, values} mean the same as the string forms."""
    assert Expectation.parse({"op": "<", "value": "500ms"}) == Expectation.parse("< 500ms")
    assert Expectation.parse({"op": "between", "values": [1, 5]}) == Expectation.parse(
        "between 1 and 5"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "~ 5",
        "< ",
        "<",
        "less than 5",
        "< five",
        "between 5 and 1",
        "between 1s and 5%",
        "< nan",
        "< inf",
        5,
        None,
        True,
        [1],
        {"op": "<"},
        {"op": ["<"], "value": 1},
        {"op": "<", "value": True},
        {"op": "between", "values": [1]},
        {"op": "<", "value": 1, "extra": 2},
    ],
)
def test_bad_conditions_are_refused_with_expected_and_got(bad: object) -> None:
    """Malformed conditions raise ValueProblem naming what was expected and what came."""
    with pytest.raises(ValueProblem) as info:
        Expectation.parse(bad)
    assert info.value.expected
    assert info.value.got


def test_margin_ranks_closeness_to_failing() -> None:
    """margin is positive inside, negative outside, and lower for worse values."""
    expectation = Expectation.parse("< 10")
    assert expectation.margin(5) > expectation.margin(9) > 0 > expectation.margin(11)
    between = Expectation.parse("between 1 and 5")
    assert between.margin(3) == 2
    assert between.margin(6) < 0


def test_nan_never_holds_whatever_the_operator() -> None:
    """NaN (no data at an instant) holds for no operator, '!=' included."""
    for text in ("< 1", "<= 1", "> 1", ">= 1", "== 1", "!= 1", "between 0 and 2"):
        assert not Expectation.parse(text).holds(float("nan"))


def test_worst_index_is_the_value_furthest_into_failure() -> None:
    """worst_index picks the value deepest into failure, or the nearest to failing."""
    below = Expectation.parse("< 10")
    assert below.worst_index([1.0, 12.0, 30.0, 5.0]) == 2
    assert below.worst_index([1.0, 9.0, 5.0]) == 1
    assert below.worst_index([]) is None
