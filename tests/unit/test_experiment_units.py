"""Durations and percentages: parsing, refusing, printing back."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.experiment._problems import ValueProblem
from resilience.experiment.units import (
    MAX_DURATION,
    format_duration,
    format_percent,
    parse_duration,
    parse_latency,
    parse_percent,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250us", 250e-6),
        ("250µs", 250e-6),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("2h", 7200.0),
        ("1m30s", 90.0),
        ("1s500ms", 1.5),
        ("1.5s", 1.5),
        (" 30s ", 30.0),
        ("0", 0.0),
        ("45", 45.0),
        ("2.5", 2.5),
        (30, 30.0),
        (0.25, 0.25),
    ],
)
def test_duration_accepts_units_and_bare_seconds(text: str | float, seconds: float) -> None:
    """Durations with units, compound durations and bare numbers all read as seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    ["30 sec", "30S", "ten", "", "1e3s", "30s1m", "1h1h", "ms", "1.2.3s", "-", "inf", "nan"],
)
def test_duration_rejects_junk_with_a_clear_message(bad: str) -> None:
    """Anything not a duration is refused, and the message shows an example and the input."""
    with pytest.raises(ValueProblem) as info:
        parse_duration(bad)
    message = str(info.value)
    assert "expected" in message
    assert "got" in message
    assert repr(bad) in message or "empty" in message


def test_duration_message_matches_the_documented_shape() -> None:
    """'30 sec' gets: expected a duration like 500ms, 30s or 2h, got '30 sec'."""
    with pytest.raises(ValueProblem) as info:
        parse_duration("30 sec")
    assert "expected a duration like 500ms, 30s or 2h" in str(info.value)
    assert str(info.value).endswith("got '30 sec'")


@pytest.mark.parametrize("bad", ["-5s", "-1", -1, -0.5, "-1h30m"])
def test_duration_rejects_negative_values(bad: str | float) -> None:
    """Negative durations are refused with 'not negative' in the message."""
    with pytest.raises(ValueProblem, match="not negative"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [True, None, [1], {"s": 1}, float("nan"), float("inf"), 10**400])
def test_duration_rejects_non_numbers(bad: object) -> None:
    """Booleans, nulls, containers, NaN, infinity and overflowing ints are not durations."""
    with pytest.raises(ValueProblem):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (90, "1m30s"), (5400, "1h30m"), (0.25, "250ms"), (1e-5, "10us"), (7200, "2h")],
)
def test_format_duration_is_short_and_exact(seconds: float, text: str) -> None:
    """Durations print in the shortest exact notation."""
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=MAX_DURATION, allow_nan=False, allow_infinity=False))
def test_format_duration_reads_back(seconds: float) -> None:
    """Whatever format_duration prints, parse_duration reads back to (almost) the same value."""
    assert math.isclose(parse_duration(format_duration(seconds)), seconds, abs_tol=1e-9)


@pytest.mark.parametrize(
    ("value", "fraction"),
    [
        ("0.1%", 0.001),
        ("5%", 0.05),
        ("100%", 1.0),
        ("0%", 0.0),
        (0.25, 0.25),
        (1, 1.0),
        ("0.5", 0.5),
    ],
)
def test_percent_reads_percentages_and_fractions(value: str | float, fraction: float) -> None:
    """'0.1%' is 0.001 and a bare number between 0 and 1 is a fraction."""
    assert parse_percent(value) == pytest.approx(fraction)


@pytest.mark.parametrize("bad", ["150%", "-1%", 1.5, 5, "abc", "%", True, None, "1e400%"])
def test_percent_rejects_out_of_range_and_junk(bad: object) -> None:
    """Above 100 %, negative, a bare number above 1, or junk: refused with expected/got."""
    with pytest.raises(ValueProblem) as info:
        parse_percent(bad)
    assert "expected" in str(info.value)
    assert "got" in str(info.value)


def test_percent_bare_number_above_one_hints_at_the_percent_sign() -> None:
    """A bare 5 suggests writing 5% instead."""
    with pytest.raises(ValueProblem, match="write 5%"):
        parse_percent(5)


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_format_percent_reads_back(fraction: float) -> None:
    """format_percent prints something parse_percent reads back to the same fraction."""
    assert parse_percent(format_percent(fraction)) == pytest.approx(fraction, abs=1e-12)


@pytest.mark.parametrize(
    ("bad", "digit"),
    [("\u06f5s", "\u06f5"), ("1\u0665s", "\u0665"), ("\uff15ms", "\uff15"), ("\u0968m", "\u0968")],
)
def test_duration_refuses_non_ascii_digits(bad: str, digit: str) -> None:
    """Arabic-Indic, fullwidth or Devanagari digits are refused, naming the odd digit."""
    with pytest.raises(ValueProblem) as info:
        parse_duration(bad)
    assert "digits 0-9" in info.value.expected
    assert repr(digit) in info.value.got


@pytest.mark.parametrize("bad", ["\u0665%", "0.\u0665", "\uff11"])
def test_percent_refuses_non_ascii_digits(bad: str) -> None:
    """Percentages take the digits 0-9 only."""
    with pytest.raises(ValueProblem, match="digits 0-9"):
        parse_percent(bad)


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [
        ("1m70s", "write 2m10s"),
        ("1h60m", "write 2h"),
        ("1s1500ms", "write 2500ms"),
        ("2m60s", "write 3m"),
        ("1ms1000us", "write 2ms"),
        ("1.5h30m", "write 2h"),
    ],
)
def test_compound_parts_stay_below_the_next_unit(bad: str, suggestion: str) -> None:
    """In a compound, 70s (or 1500ms, or a fraction before the last part) is refused with
    the duration written properly."""
    with pytest.raises(ValueProblem) as info:
        parse_duration(bad)
    assert suggestion in info.value.expected
    assert info.value.got == repr(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m30s", 5430.0), ("1h59m59s999ms", 7199.999), ("1h30s", 3630.0), ("1m1.5s", 61.5)],
)
def test_compound_leading_part_may_be_large(text: str, seconds: float) -> None:
    """Only the parts after the first are bounded; units may be skipped; the last may be a
    fraction."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["169h", "168h1s", 604801, "10081m"])
def test_duration_is_at_most_seven_days(bad: str | int) -> None:
    """Nothing above 168h is a duration in an experiment."""
    with pytest.raises(ValueProblem, match="at most 168h"):
        parse_duration(bad)
    assert parse_duration("168h") == MAX_DURATION


@pytest.mark.parametrize(("bare", "number"), [(500, "500"), (0.5, "0.5"), ("500", "500")])
def test_latency_needs_a_unit(bare: str | float, number: str) -> None:
    """A bare number is not a latency; the message suggests NNNms and NNNs."""
    with pytest.raises(ValueProblem) as info:
        parse_latency(bare)
    assert info.value.message == "a latency threshold needs a unit"
    assert f"write {number}ms for milliseconds or {number}s for seconds" in info.value.got
    assert parse_latency("500ms") == pytest.approx(0.5)


def test_format_duration_always_carries_a_unit() -> None:
    """Durations that are not whole microseconds print as decimal seconds with 's'."""
    text = format_duration(1.5e-6)
    assert text.endswith("s")
    assert parse_latency(text) == pytest.approx(1.5e-6)
