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
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

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
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_COMPONENT = re.compile(rf"({_NUMBER})(ms|us|µs|h|m|s)")
DURATION_PATTERN: Final = rf"^\s*(?:{_NUMBER}|(?:{_NUMBER}(?:ms|us|µs|h|m|s))+)\s*$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_BARE_NUMBER = re.compile(rf"^\s*[-+]?{_NUMBER}(?:[eE][-+]?\d+)?\s*$")
_EXPONENT = r"(?:[eE][-+]?\d+)?"
PERCENT_PATTERN: Final = rf"^\s*{_NUMBER}{_EXPONENT}\s*%?\s*$"

DURATION_EXPECTED: Final = "a duration like 500ms, 30s or 2h (or a number of seconds)"
PERCENT_EXPECTED: Final = "a percentage like 0.1% or 5%, or a fraction between 0 and 1"


def _finite(value: float, text: Any) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueProblem(DURATION_EXPECTED, describe(text))
    return value


def parse_duration(value: Any) -> float:
    """Seconds from ``500ms``, ``1h30m``, ``30`` or ``1.5``; negatives and junk are refused."""
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
    text = value.strip()
    if text.startswith("-") and _DURATION_RE.match(text[1:]):
        raise ValueProblem("a duration that is not negative", describe(value))
    if not _DURATION_RE.match(text):
        raise ValueProblem(DURATION_EXPECTED, describe(value))
    if _BARE_NUMBER.match(text):
        return _finite(float(text), value)
    total = 0.0
    last = -1
    for number, unit in _COMPONENT.findall(text):
        rank = _ORDER[unit]
        if rank <= last:
            raise ValueProblem(
                "duration parts from the largest unit to the smallest, each once (1h30m)",
                describe(value),
            )
        last = rank
        total += float(number) * UNITS[unit]
    return _finite(total, value)


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
    # Plain decimal notation: exponent forms like 1e-07 would not read back as a duration.
    return f"{seconds:.15f}".rstrip("0").rstrip(".") or "0"


def parse_percent(value: Any) -> float:
    """A fraction from ``0.1%`` (→ 0.001) or a bare fraction ``0.25``; above 100 % is refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueProblem(PERCENT_EXPECTED, describe(value))
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            number = text[:-1].strip()
            if not _BARE_NUMBER.match(number):
                raise ValueProblem(PERCENT_EXPECTED, describe(value))
            fraction = float(number) / 100.0
            if not 0.0 <= fraction <= 1.0:
                raise ValueProblem("a percentage between 0% and 100%", describe(value))
            return fraction
        if not _BARE_NUMBER.match(text):
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


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueProblem("a duration greater than zero", format_duration(seconds))
    return seconds


_DURATION_SCHEMA: Final = {
    "anyOf": [
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["500ms", "30s", "1h30m"]},
        {"type": "number", "minimum": 0},
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

Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    PlainSerializer(format_percent, return_type=str, when_used="json"),
    WithJsonSchema(_PERCENT_SCHEMA, mode="validation"),
]
"""A fraction in [0, 1]; read from ``0.1%`` or a bare fraction."""
