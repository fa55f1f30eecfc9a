"""Durations and percentages as people write them in experiment files, as numbers inside.

A duration is a string with units (``250us``, ``500ms``, ``30s``, ``2m``, ``1h30m``) or a
bare number of seconds; inside the toolkit it is a float of seconds. A percentage is
``0.1%`` or a bare fraction between 0 and 1; inside it is the fraction. The annotated
types ``Duration``, ``PositiveDuration`` and ``Percent`` plug these parsers into pydantic
models, print back in the same notation, and describe themselves in JSON Schema.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

from resilience.experiment._problems import ValueProblem, describe

UNITS: Final[dict[str, float]] = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
}
_ORDER: Final = {"h": 0, "m": 1, "s": 2, "ms": 3, "us": 4, "µs": 4}
# In a compound duration each part after the first stays below the next larger unit.
_BELOW: Final = {"m": 60.0, "s": 60.0, "ms": 1000.0, "us": 1000.0, "µs": 1000.0}
_LARGER: Final = {"m": "1h", "s": "1m", "ms": "1s", "us": "1ms", "µs": "1ms"}
# ASCII digits only: ``\d`` and ``float()`` also take Arabic-Indic, Devanagari, ... digits,
# which no Toxiproxy, Prometheus or colleague reading the file would read the same way.
_DIGITS = "[0-9]"
_NUMBER = rf"(?:{_DIGITS}+(?:\.{_DIGITS}*)?|\.{_DIGITS}+)"
_COMPONENT = re.compile(rf"({_NUMBER})(ms|us|µs|h|m|s)")
DURATION_PATTERN: Final = rf"^\s*(?:{_NUMBER}|(?:{_NUMBER}(?:ms|us|µs|h|m|s))+)\s*$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_EXPONENT = rf"(?:[eE][-+]?{_DIGITS}+)?"
BARE_NUMBER: Final = re.compile(rf"^\s*[-+]?{_NUMBER}{_EXPONENT}\s*$")
"""A plain decimal number in ASCII digits (sign and exponent allowed), blanks around it."""
PERCENT_PATTERN: Final = rf"^\s*{_NUMBER}{_EXPONENT}\s*%?\s*$"

MAX_DURATION: Final = 7 * 24 * 3600.0
"""No duration in an experiment may exceed 7 days (168h), the longest load allowed."""

DURATION_EXPECTED: Final = "a duration like 500ms, 30s or 2h (or a number of seconds)"
PERCENT_EXPECTED: Final = "a percentage like 0.1% or 5%, or a fraction between 0 and 1"
ASCII_DIGITS: Final = "digits 0-9"


def non_ascii_digit(text: str) -> str | None:
    """The first digit in ``text`` that is not one of 0-9 (Arabic-Indic, fullwidth, ...)."""
    return next((c for c in text if c.isdigit() and not c.isascii()), None)


def refuse_non_ascii_digits(text: str, expected: str, value: object) -> None:
    """Raise ``ValueProblem`` naming the odd digit when ``text`` holds one."""
    odd = non_ascii_digit(text)
    if odd is not None:
        raise ValueProblem(
            f"{expected}, written with {ASCII_DIGITS}",
            f"{describe(value)} (the digit {odd!r}, U+{ord(odd):04X}, is not 0-9)",
        )


def _finite(value: float, text: object) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueProblem(DURATION_EXPECTED, describe(text))
    if value > MAX_DURATION:
        raise ValueProblem(
            f"a duration of at most {format_duration(MAX_DURATION)} (7 days)", describe(text)
        )
    return value


def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``1h30m``, ``30`` or ``1.5``; negatives and junk are refused.

    A compound duration goes from the largest unit down, each unit once, and every part
    after the first stays below the next larger unit (``1m30s``, not ``1m70s`` or ``30s1m``);
    only its last part may have a fraction. Nothing above 7 days is accepted.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueProblem(DURATION_EXPECTED, describe(value))
    if isinstance(value, int | float):
        try:
            seconds = _finite(float(value), value)
        except OverflowError:
            raise ValueProblem(DURATION_EXPECTED, describe(value)) from None
        if seconds < 0:
            raise ValueProblem("a duration that is not negative", describe(value))
        return seconds
    refuse_non_ascii_digits(value, DURATION_EXPECTED, value)
    text = value.strip()
    if text.startswith("-") and _DURATION_RE.match(text[1:]):
        raise ValueProblem("a duration that is not negative", describe(value))
    if not _DURATION_RE.match(text):
        raise ValueProblem(DURATION_EXPECTED, describe(value))
    if BARE_NUMBER.match(text):
        return _finite(float(text), value)
    parts = [(float(number), number, unit) for number, unit in _COMPONENT.findall(text)]
    total = _finite(sum(amount * UNITS[unit] for amount, _, unit in parts), value)
    last = -1
    for index, (amount, number, unit) in enumerate(parts):
        rank = _ORDER[unit]
        if rank <= last:
            raise ValueProblem(
                "duration parts from the largest unit to the smallest, each once (1h30m)",
                describe(value),
            )
        last = rank
        if index > 0 and amount >= _BELOW[unit]:
            raise ValueProblem(
                "each part after the first below the next larger unit "
                f"({number}{unit} is {_LARGER[unit]} or more: write {format_duration(total)})",
                describe(value),
            )
        if index < len(parts) - 1 and not amount.is_integer():
            raise ValueProblem(
                "a fraction only in the last part of a compound duration "
                f"(write {format_duration(total)})",
                describe(value),
            )
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact notation: 90 → ``1m30s``, 0.25 → ``250ms``, 1e-5 → ``10us``."""
    if seconds == 0:
        return "0s"
    if float(seconds).is_integer():
        whole = int(seconds)
        hours, rest = divmod(whole, 3600)
        minutes, secs = divmod(rest, 60)
        parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
        parts.append(f"{secs}s" if secs else "")
        return "".join(parts)
    micros = round(seconds * 1e6)
    if micros > 0 and math.isclose(micros / 1e6, seconds, rel_tol=1e-12, abs_tol=0.0):
        if micros % 1000 == 0:
            return f"{micros // 1000}ms"
        return f"{micros}us"
    # Plain decimal seconds with the unit: exponent forms like 1e-07 would not read back,
    # and latency thresholds refuse a bare number.
    return (f"{seconds:.15f}".rstrip("0").rstrip(".") or "0") + "s"


def parse_percent(value: object) -> float:
    """A fraction from ``0.1%`` (→ 0.001) or a bare fraction ``0.25``; above 100 % is refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueProblem(PERCENT_EXPECTED, describe(value))
    if isinstance(value, str):
        refuse_non_ascii_digits(value, PERCENT_EXPECTED, value)
        text = value.strip()
        if text.endswith("%"):
            number = text[:-1].strip()
            if not BARE_NUMBER.match(number):
                raise ValueProblem(PERCENT_EXPECTED, describe(value))
            fraction = float(number) / 100.0
            if not 0.0 <= fraction <= 1.0:
                raise ValueProblem("a percentage between 0% and 100%", describe(value))
            return fraction
        if not BARE_NUMBER.match(text):
            raise ValueProblem(PERCENT_EXPECTED, describe(value))
        number_value = float(text)
    else:
        try:
            number_value = float(value)
        except OverflowError:
            raise ValueProblem(PERCENT_EXPECTED, describe(value)) from None
    if math.isnan(number_value) or not 0.0 <= number_value <= 1.0:
        raise ValueProblem(
            "a fraction between 0 and 1 (write 5% for five percent)", describe(value)
        )
    return number_value


def format_percent(fraction: float) -> str:
    """0.001 → ``0.1%``; exact enough to read back to the same float."""
    text = f"{fraction * 100:.10g}%"
    return text if parse_percent(text) == fraction else repr(float(fraction))


LATENCY_EXPECTED: Final = "a latency with a unit, like 500ms or 1s"


def parse_latency(value: object) -> float:
    """Seconds from a duration WITH a unit (``500ms``); a bare number is refused.

    ``p95: 500`` would otherwise read as 500 seconds when 500 ms was meant.
    """
    bare = isinstance(value, int | float) and not isinstance(value, bool)
    if bare or (isinstance(value, str) and BARE_NUMBER.match(value)):
        number = str(value).strip()
        raise ValueProblem(
            LATENCY_EXPECTED,
            f"{describe(value)}: write {number}ms for milliseconds or {number}s for seconds",
            message="a latency threshold needs a unit",
        )
    return parse_duration(value)


def duration_between(low: float, high: float, *, above: bool = False) -> AfterValidator:
    """A check that a parsed duration lies in [low, high] (above ``low`` if ``above``)."""

    def check(seconds: float) -> float:
        if (seconds <= low if above else seconds < low) or seconds > high:
            word = "above" if above else "from"
            raise ValueProblem(
                f"a duration {word} {format_duration(low)} to {format_duration(high)}",
                format_duration(seconds),
                message="duration out of range",
            )
        return seconds

    return AfterValidator(check)


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueProblem("a duration greater than zero", format_duration(seconds))
    return seconds


_DURATION_SCHEMA: Final = {
    "anyOf": [
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["500ms", "30s", "1h30m"]},
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
    ],
    "description": "A duration: a number with units (us, ms, s, m, h) or a number of seconds.",
}
_PERCENT_SCHEMA: Final = {
    "anyOf": [
        {"type": "string", "pattern": PERCENT_PATTERN, "examples": ["0.1%", "5%"]},
        {"type": "number", "minimum": 0, "maximum": 1},
    ],
    "description": "A percentage like 0.1%, or a fraction between 0 and 1.",
}

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(_DURATION_SCHEMA, mode="validation"),
]
"""Seconds; read from ``500ms``/``30s``/``2h`` or a bare number of seconds; not negative."""

PositiveDuration = Annotated[
    float,
    BeforeValidator(lambda v: _positive(parse_duration(v))),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(_DURATION_SCHEMA, mode="validation"),
]
"""A ``Duration`` that must be greater than zero."""

Latency = Annotated[
    float,
    BeforeValidator(parse_latency),
    duration_between(0.0, 3600.0, above=True),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "not": {"pattern": BARE_NUMBER.pattern},
            "examples": ["200ms", "500ms", "1s"],
            "description": "A latency with a unit (us, ms, s, m, h), above 0 and at most 1h.",
        },
        mode="validation",
    ),
]
"""Seconds, from a duration that carries its unit; above 0 and at most an hour."""

Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    PlainSerializer(format_percent, return_type=str, when_used="json"),
    WithJsonSchema(_PERCENT_SCHEMA, mode="validation"),
]
"""A fraction in [0, 1]; read from ``0.1%`` or a bare fraction."""
