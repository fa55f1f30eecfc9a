"""The fault types an experiment file may name, and the attributes each accepts.

This is the loader's table for checking attribute NAMES and value TYPES at the door and
converting friendly values to the units Toxiproxy wants (``latency: 200ms`` → 200, in
milliseconds). What a type *does* (which toxic, how a flap toggles, how a ramp steps) is
the fault timeline's business (``resilience/faults/``); this table only fixes the vocabulary.

    type        Toxiproxy action                       attributes (unit)
    latency     latency toxic                          latency* (ms), jitter (ms)
    bandwidth   bandwidth toxic                        rate* (KB/s)
    slow_close  slow_close toxic                       delay* (ms)
    timeout     timeout toxic                          timeout (ms; 0 = hang forever)
    reset_peer  reset_peer toxic                       timeout (ms)
    slicer      slicer toxic                           average_size* (bytes), size_variation
                                                       (bytes), delay (us)
    limit_data  limit_data toxic                       bytes*
    outage      proxy disabled                         -
    hang        timeout toxic with timeout 0           -
    flaky       reset_peer toxic on a share of         timeout (ms), reroll (seconds
                connections (toxicity)                 between re-draws of the share)
    flap        outage switched on and off             period (seconds), duty (fraction down)
    ramp        latency rising in steps                from (ms), to* (ms), steps, jitter (ms)

    * required. The fault timeline's own table (``resilience.faults.catalogue``) adds
    defaults and behaviour; a unit test keeps the two tables' names in step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from resilience.experiment._problems import Problem, ValueProblem, describe
from resilience.experiment.units import (
    BARE_NUMBER,
    parse_duration,
    parse_percent,
    refuse_non_ascii_digits,
)

FaultType = Literal[
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "outage",
    "hang",
    "flaky",
    "flap",
    "ramp",
]
AttributeKind = Literal["ms", "us", "seconds", "count", "fraction"]
MAX_BY_KIND: Final[dict[str, float]] = {"ms": 3_600_000, "us": 3_600_000_000, "seconds": 3600}
"""No latency, delay, timeout or period of a fault beyond an hour."""
_TIME_KINDS: Final = frozenset(MAX_BY_KIND)


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute: its name, its unit kind, whether the type needs it, its lower bound."""

    name: str
    kind: AttributeKind
    required: bool = False
    minimum: float = 0.0
    exclusive_minimum: bool = False
    maximum: float | None = None
    """Upper bound in the attribute's unit; times default to an hour (``MAX_BY_KIND``)."""

    @property
    def upper(self) -> float | None:
        return self.maximum if self.maximum is not None else MAX_BY_KIND.get(self.kind)

    @property
    def expected(self) -> str:
        text = {
            "ms": "whole milliseconds: a number (ms) or a duration like 200ms or 1s",
            "us": "whole microseconds: a number (us) or a duration like 500us or 2ms",
            "seconds": "a duration like 5s (or a number of seconds)",
            "count": "a whole number",
            "fraction": "a fraction between 0 and 1, or a percentage like 50%",
        }[self.kind]
        if self.minimum or self.exclusive_minimum:
            word = "above" if self.exclusive_minimum else "at least"
            text += f", {word} {self.minimum:g}"
        if self.upper is not None:
            text += f", at most {self.upper:g}" + (" (1h)" if self.kind in _TIME_KINDS else "")
        return text


@dataclass(frozen=True)
class FaultTypeSpec:
    """A fault type: the Toxiproxy toxic it uses (None for proxy-level faults), attributes."""

    name: FaultType
    toxic: str | None
    attributes: tuple[AttributeSpec, ...]
    summary: str

    def attribute(self, name: str) -> AttributeSpec | None:
        return next((a for a in self.attributes if a.name == name), None)


def _spec(
    name: FaultType, toxic: str | None, summary: str, *attributes: AttributeSpec
) -> FaultTypeSpec:
    return FaultTypeSpec(name=name, toxic=toxic, attributes=attributes, summary=summary)


FAULT_TYPES: Final[dict[str, FaultTypeSpec]] = {
    s.name: s
    for s in (
        _spec(
            "latency",
            "latency",
            "adds latency (± jitter) to data",
            AttributeSpec("latency", "ms", required=True),
            AttributeSpec("jitter", "ms"),
        ),
        _spec(
            "bandwidth",
            "bandwidth",
            "limits throughput",
            AttributeSpec("rate", "count", required=True),
        ),
        _spec(
            "slow_close",
            "slow_close",
            "delays closing connections",
            AttributeSpec("delay", "ms", required=True),
        ),
        _spec(
            "timeout",
            "timeout",
            "stops data, closes after timeout ms (0: never)",
            AttributeSpec("timeout", "ms"),
        ),
        _spec(
            "reset_peer",
            "reset_peer",
            "resets connections (TCP RST) after timeout ms",
            AttributeSpec("timeout", "ms"),
        ),
        _spec(
            "slicer",
            "slicer",
            "slices data into small delayed bits",
            AttributeSpec("average_size", "count", required=True, minimum=1),
            AttributeSpec("size_variation", "count"),
            AttributeSpec("delay", "us"),
        ),
        _spec(
            "limit_data",
            "limit_data",
            "closes connections after some bytes",
            AttributeSpec("bytes", "count", required=True),
        ),
        _spec("outage", None, "proxy disabled: connections refused"),
        _spec("hang", "timeout", "connections hang (timeout 0)"),
        _spec(
            "flaky",
            "reset_peer",
            "a share (toxicity) of connections reset",
            AttributeSpec("timeout", "ms"),
            AttributeSpec("reroll", "seconds"),
        ),
        _spec(
            "flap",
            None,
            "outage switched on and off every period",
            AttributeSpec("period", "seconds", minimum=0.1),
            AttributeSpec("duty", "fraction", exclusive_minimum=True),
        ),
        _spec(
            "ramp",
            "latency",
            "latency rising from 'from' to 'to' in steps",
            AttributeSpec("from", "ms"),
            AttributeSpec("to", "ms", required=True),
            AttributeSpec("steps", "count", minimum=1, maximum=10_000),
            AttributeSpec("jitter", "ms"),
        ),
    )
}


def _scaled(raw: object, scale: float, spec: AttributeSpec) -> int:
    """Whole units of ``scale`` seconds from a number (already in units) or a duration."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueProblem(spec.expected, describe(raw))
    if isinstance(raw, str):
        refuse_non_ascii_digits(raw, spec.expected, raw)
    if isinstance(raw, str) and not BARE_NUMBER.match(raw):
        value = parse_duration(raw) / scale
        value = round(value, 6)
    else:
        try:
            value = float(raw)
        except (OverflowError, ValueError):
            raise ValueProblem(spec.expected, describe(raw)) from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueProblem(spec.expected, describe(raw))
    if not value.is_integer():
        raise ValueProblem(spec.expected, describe(raw))
    if value > 2**31 - 1:
        raise ValueProblem(f"{spec.expected}, below 2^31", describe(raw))
    return int(value)


def _count(raw: object, spec: AttributeSpec) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueProblem(spec.expected, describe(raw))
    whole = isinstance(raw, int) or (math.isfinite(raw) and raw.is_integer())
    if not whole or not -(2**31) <= raw <= 2**31 - 1:
        raise ValueProblem(spec.expected, describe(raw))
    return int(raw)


def convert_attribute(spec: AttributeSpec, raw: object) -> int | float:
    """A value in the attribute's Toxiproxy unit; raises ``ValueProblem`` when it cannot."""
    value: int | float
    if spec.kind == "ms":
        value = _scaled(raw, 1e-3, spec)
    elif spec.kind == "us":
        value = _scaled(raw, 1e-6, spec)
    elif spec.kind == "seconds":
        value = parse_duration(raw)
    elif spec.kind == "fraction":
        value = parse_percent(raw)
    else:
        value = _count(raw, spec)
    too_small = value <= spec.minimum if spec.exclusive_minimum else value < spec.minimum
    upper = spec.upper
    if too_small or (upper is not None and value > upper):
        raise ValueProblem(spec.expected, describe(raw))
    return value


def normalize_attributes(
    fault_type: str, attributes: Mapping[str, object]
) -> tuple[dict[str, int | float | str], list[Problem]]:
    """Attributes converted to Toxiproxy units, and the problems (paths under 'attributes')."""
    spec = FAULT_TYPES[fault_type]
    out: dict[str, int | float | str] = {}
    problems: list[Problem] = []
    allowed = [a.name for a in spec.attributes]
    for name, raw in attributes.items():
        attribute = spec.attribute(name)
        if attribute is None:
            hint = f"one of {', '.join(allowed)}" if allowed else "no attributes"
            problems.append(
                Problem(
                    f"unknown attribute {name!r} for fault type {fault_type!r}",
                    expected=hint,
                    got=repr(name),
                    path=("attributes", name),
                )
            )
            continue
        try:
            out[name] = convert_attribute(attribute, raw)
        except ValueProblem as problem:
            problems.append(
                Problem(
                    f"bad value for {fault_type} attribute {name!r}",
                    expected=problem.expected,
                    got=problem.got,
                    path=("attributes", name),
                )
            )
    average, variation = out.get("average_size"), out.get("size_variation", 0)
    if (
        fault_type == "slicer"
        and isinstance(average, int)
        and isinstance(variation, int)
        and variation >= average
    ):
        problems.append(
            Problem(
                "slicer's size_variation must be smaller than its average_size",
                expected=f"size_variation below {average}",
                got=str(variation),
                path=("attributes", "size_variation"),
            )
        )
    for attribute in spec.attributes:
        if attribute.required and attribute.name not in attributes:
            problems.append(
                Problem(
                    f"fault type {fault_type!r} needs attribute {attribute.name!r}",
                    expected=f"attributes.{attribute.name}: {attribute.expected}",
                    got="no such attribute",
                    path=("attributes",),
                )
            )
    return out, problems
