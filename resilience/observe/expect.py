"""What a check or guard expects of a number: the small interface observers evaluate against.

The experiment model (``resilience/experiment/``) owns the user-facing expectation syntax
(units, percentages); observers only need ``holds(x)`` and a readable ``str``. ``Threshold``
is a minimal concrete expectation (``< 500``, ``== 0``) used by the built-in shop checks and
the tests; any object with the same two methods fits, and one that also offers
``margin(x)`` lets results name the worst point precisely.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from resilience.errors import ExperimentError


@runtime_checkable
class Expectation(Protocol):
    """A condition on one number: ``holds(x)`` says whether ``x`` is acceptable."""

    def holds(self, x: float) -> bool: ...

    def __str__(self) -> str: ...


@runtime_checkable
class GradedExpectation(Expectation, Protocol):
    """An expectation that can also say how far a value is from failing.

    ``margin(x)`` ranks values: the lower, the closer to failing or the deeper into it
    (around zero at the boundary). Used only to pick the worst point of a series.
    """

    def margin(self, x: float) -> float: ...


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

_PATTERN = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Threshold:
    """``value OP threshold``, e.g. ``Threshold("<", 0.5)``; ``str`` gives ``"< 0.5"``."""

    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ExperimentError(
                "unknown comparison in expectation",
                expected=" ".join(_OPS),
                got=repr(self.op),
            )

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Parse ``"OP NUMBER"`` (no units: the experiment loader converts those)."""
        match = _PATTERN.match(text)
        if match is None:
            raise ExperimentError(
                "cannot read expectation",
                expected="an operator and a number, e.g. '< 500' or '== 0'",
                got=repr(text),
            )
        return cls(match.group(1), float(match.group(2)))

    def holds(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)

    def margin(self, x: float) -> float:
        if math.isnan(x):
            return -math.inf
        if self.op in ("<", "<="):
            return self.value - x
        if self.op in (">", ">="):
            return x - self.value
        if self.op == "==":
            return -abs(x - self.value)
        return abs(x - self.value) if x != self.value else -1.0

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


def worst_index(values: Sequence[float], expect: Expectation) -> int | None:
    """Index of the value furthest into failure (``None`` if empty or nothing can be said).

    With ``margin`` the expectation ranks values itself (so a passing series also has a
    worst value: the nearest to failing). Without it only failing values can be ranked:
    the maximum if it fails, else the minimum if it fails, else the first failing value.
    """
    if not values:
        return None
    indices = range(len(values))
    if isinstance(expect, GradedExpectation):
        return min(indices, key=lambda i: expect.margin(values[i]))
    highest = max(indices, key=values.__getitem__)
    if not expect.holds(values[highest]):
        return highest
    lowest = min(indices, key=values.__getitem__)
    if not expect.holds(values[lowest]):
        return lowest
    return next((i for i in indices if not expect.holds(values[i])), None)
