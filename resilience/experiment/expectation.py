"""What a check or guard expects of a number, written the way people write conditions.

``< 10``, ``<= 0.5``, ``> 3``, ``>= 1``, ``== 0``, ``!= 0`` and ``between 1 and 5``, where a
value may carry units: ``< 500ms`` is 0.5 (seconds), ``< 1%`` is 0.01. The same can be given
as a mapping (``{op: "<", value: 500ms}``, ``{op: between, values: [1, 5]}``). This is the one
expectation type: checks, guards and SLO-like conditions all judge with ``holds(x)`` (NaN never
holds, whatever the operator), rank values with ``margin(x)`` and print with ``str()``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from resilience.experiment._problems import ValueProblem, describe
from resilience.experiment.units import (
    BARE_NUMBER,
    DURATION_PATTERN,
    format_duration,
    format_percent,
    parse_duration,
    parse_percent,
    refuse_non_ascii_digits,
)

Op = Literal["<", "<=", ">", ">=", "==", "!=", "between"]
Unit = Literal["", "duration", "percent"]
_OPS: Final[tuple[Op, ...]] = ("<", "<=", ">", ">=", "==", "!=", "between")

_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_COMPARISON = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(\S.*?)\s*$")
_BETWEEN = re.compile(r"^\s*between\s+(\S.*?)\s+and\s+(\S.*?)\s*$", re.IGNORECASE)
_DURATION_ONLY = re.compile(DURATION_PATTERN)

EXPECTED: Final = (
    "a condition like '< 500ms', '<= 1%', '== 0' or 'between 1 and 5' (operators < <= > >= == !=)"
)
PATTERN: Final = r"^\s*((<=|>=|==|!=|<|>)\s*\S.*|between\s+\S.*\s+and\s+\S.*)$"


def _quantity(text: str, whole: object) -> tuple[float, Unit]:
    """A number from ``500ms``, ``1%``, ``-3`` or ``2.5e3``, with the kind of unit it had."""
    refuse_non_ascii_digits(text, EXPECTED, whole)
    token = text.strip()
    if token.endswith("%"):
        try:
            return parse_percent(token), "percent"
        except ValueProblem:
            raise ValueProblem(EXPECTED, describe(whole)) from None
    if BARE_NUMBER.match(token):
        value = float(token)
        if math.isnan(value) or math.isinf(value):
            raise ValueProblem("a finite number in the condition", describe(whole))
        return value, ""
    if _DURATION_ONLY.match(token):
        try:
            return parse_duration(token), "duration"
        except ValueProblem:
            raise ValueProblem(EXPECTED, describe(whole)) from None
    raise ValueProblem(EXPECTED, describe(whole))


def _format(value: float, unit: Unit) -> str:
    if unit == "duration" and value >= 0:
        return format_duration(value)
    if unit == "percent" and 0 <= value <= 1:
        return format_percent(value)
    return f"{value:g}" if float(value) == float(f"{value:g}") else repr(value)


def _as_op(text: str) -> Op:
    for op in _OPS:
        if op == text:
            return op
    raise ValueProblem("one of < <= > >= == != between", describe(text))


@dataclass(frozen=True)
class Expectation:
    """``x OP value`` or ``value <= x <= upper`` (between, inclusive), numbers in base units."""

    op: Op
    value: float
    upper: float | None = None
    # How it was written (for printing back); '< 500ms' equals '< 0.5'.
    unit: Unit = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.op not in (*_COMPARE, "between"):
            raise ValueProblem("one of < <= > >= == != between", describe(self.op))
        if (self.op == "between") != (self.upper is not None):
            raise ValueProblem(
                "two values for 'between' and one for other operators", describe(self.upper)
            )
        if self.upper is not None and self.upper < self.value:
            raise ValueProblem(
                "'between A and B' with A not above B", f"{self.value:g} and {self.upper:g}"
            )

    @classmethod
    def parse(cls, source: object) -> Expectation:
        """From ``"< 500ms"``, ``"between 1 and 5"`` or ``{op, value | values}``."""
        if isinstance(source, Expectation):
            return source
        if isinstance(source, dict):
            return cls._from_mapping(source)
        if not isinstance(source, str):
            raise ValueProblem(EXPECTED, describe(source))
        between = _BETWEEN.match(source)
        if between:
            low, low_unit = _quantity(between.group(1), source)
            high, high_unit = _quantity(between.group(2), source)
            if low_unit != high_unit:
                raise ValueProblem("both ends of 'between' in the same unit", describe(source))
            return cls("between", low, high, low_unit)
        comparison = _COMPARISON.match(source)
        if comparison is None:
            raise ValueProblem(EXPECTED, describe(source))
        value, unit = _quantity(comparison.group(2), source)
        return cls(_as_op(comparison.group(1)), value, None, unit)

    @classmethod
    def _from_mapping(cls, source: Mapping[object, object]) -> Expectation:
        keys = set(source)
        op = source.get("op")
        if op == "between":
            if keys != {"op", "values"}:
                raise ValueProblem("keys op and values for 'between'", describe(source))
            values = source["values"]
            if not isinstance(values, list) or len(values) != 2:
                raise ValueProblem("values: a list of two numbers", describe(values))
            low, low_unit = cls._mapping_value(values[0])
            high, high_unit = cls._mapping_value(values[1])
            if low_unit != high_unit:
                raise ValueProblem("both ends of 'between' in the same unit", describe(values))
            return cls("between", low, high, low_unit)
        if not isinstance(op, str) or op not in _COMPARE:
            raise ValueProblem("op: one of < <= > >= == != between", describe(op))
        if keys != {"op", "value"}:
            raise ValueProblem("exactly the keys op and value", describe(source))
        value, unit = cls._mapping_value(source["value"])
        return cls(_as_op(op), value, None, unit)

    @staticmethod
    def _mapping_value(raw: object) -> tuple[float, Unit]:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueProblem("a number, a duration or a percentage", describe(raw))
        if isinstance(raw, str):
            return _quantity(raw, raw)
        try:
            value = float(raw)
        except OverflowError:
            raise ValueProblem("a finite number", describe(raw)) from None
        if math.isnan(value) or math.isinf(value):
            raise ValueProblem("a finite number", describe(raw))
        return value, ""

    def holds(self, x: float) -> bool:
        """Whether ``x`` satisfies the condition; NaN never does."""
        if math.isnan(x):
            return False
        if self.op == "between":
            assert self.upper is not None
            return self.value <= x <= self.upper
        return _COMPARE[self.op](x, self.value)

    def margin(self, x: float) -> float:
        """How far ``x`` is from failing: positive inside, negative outside, lower is worse."""
        if math.isnan(x):
            return -math.inf
        if self.op in ("<", "<="):
            return self.value - x
        if self.op in (">", ">="):
            return x - self.value
        if self.op == "between":
            assert self.upper is not None
            return min(x - self.value, self.upper - x)
        if self.op == "==":
            return -abs(x - self.value)
        return abs(x - self.value) if x != self.value else -1.0

    def worst_index(self, values: Sequence[float]) -> int | None:
        """Index of the value furthest into failure, or nearest to failing when all hold
        (``None`` for no values)."""
        if not values:
            return None
        return min(range(len(values)), key=lambda i: self.margin(values[i]))

    def __str__(self) -> str:
        if self.op == "between":
            assert self.upper is not None
            return f"between {_format(self.value, self.unit)} and {_format(self.upper, self.unit)}"
        return f"{self.op} {_format(self.value, self.unit)}"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: object, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(
                str, return_schema=core_schema.str_schema()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        number = {"anyOf": [{"type": "number"}, {"type": "string"}]}
        return {
            "description": "A condition on a number: '< 500ms', '>= 1', 'between 1 and 5'.",
            "anyOf": [
                {"type": "string", "pattern": PATTERN},
                {
                    "type": "object",
                    "properties": {
                        "op": {"enum": list(_COMPARE)},
                        "value": number,
                    },
                    "required": ["op", "value"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {
                        "op": {"const": "between"},
                        "values": {"type": "array", "items": number, "minItems": 2, "maxItems": 2},
                    },
                    "required": ["op", "values"],
                    "additionalProperties": False,
                },
            ],
        }
