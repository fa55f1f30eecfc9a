"""The fault catalogue: every fault type, its attributes, and how it is applied and healed.

Pure data and pure functions, no I/O, so the experiment loader can import it to validate
files: ``FAULT_TYPES`` describes each type and its attributes (name, unit, default, range)
and ``validate_attributes`` checks and normalises a fault's attributes (durations such as
``"200ms"`` become the attribute's unit, defaults are filled in). ``plan_fault`` turns a
``FaultSpec`` into a ``FaultPlan``: the toxic to add (or the proxy to disable) when the
fault starts, and for time-driven faults (flap, ramp, flaky) the changes to make on the
clock until it ends. ``resilience.faults.timeline`` executes plans against Toxiproxy.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

from resilience.errors import ErrorLocation, ExperimentError
from resilience.faults.toxiproxy import STREAMS, Stream, Toxic

TOXIC_PREFIX = "resilience-"
"""Every toxic the toolkit creates starts with this; the sweeper removes any it finds."""

Unit = Literal["ms", "us", "s", "KB/s", "bytes", "count", "fraction"]
AttributeValue = int | float

_UNIT_WORDS: Mapping[str, str] = {
    "ms": "milliseconds",
    "us": "microseconds",
    "s": "seconds",
    "KB/s": "kilobytes per second",
    "bytes": "bytes",
    "count": "a count",
    "fraction": "a fraction between 0 and 1",
}
_TIME_UNITS: Mapping[str, float] = {"ms": 1e-3, "us": 1e-6, "s": 1.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)")
_DURATION_SCALE: Mapping[str, float] = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute of a fault type: its unit, whether it is required, its default, its range."""

    name: str
    unit: Unit
    description: str
    default: AttributeValue | None = None
    minimum: float = 0.0
    maximum: float | None = None
    exclusive_minimum: bool = False

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def integer(self) -> bool:
        return self.unit not in ("s", "fraction")


@dataclass(frozen=True)
class FaultType:
    """A fault type: a Toxiproxy toxic, or a named fault built from toxics and proxy disables."""

    name: str
    description: str
    attributes: tuple[AttributeSpec, ...] = ()
    toxic_type: str | None = None
    """The Toxiproxy toxic this fault adds (None: it only disables the proxy)."""
    disables_proxy: bool = False
    time_driven: bool = False
    """Needs the timeline's tick to change it while active (flap, ramp, flaky's re-draws)."""
    uses_toxicity: bool = True
    uses_stream: bool = True

    def attribute(self, name: str) -> AttributeSpec | None:
        return next((a for a in self.attributes if a.name == name), None)


def _ms(name: str, description: str, default: int | None = None) -> AttributeSpec:
    return AttributeSpec(name, "ms", description, default)


FAULT_TYPES: Mapping[str, FaultType] = {
    t.name: t
    for t in (
        FaultType(
            "latency",
            "Delay all data on the stream by latency ± jitter.",
            (_ms("latency", "added delay"), _ms("jitter", "random ± variation", 0)),
            toxic_type="latency",
        ),
        FaultType(
            "bandwidth",
            "Limit the stream to rate KB/s.",
            (AttributeSpec("rate", "KB/s", "maximum rate"),),
            toxic_type="bandwidth",
        ),
        FaultType(
            "slow_close",
            "Delay the socket's close by delay.",
            (_ms("delay", "delay before the close"),),
            toxic_type="slow_close",
        ),
        FaultType(
            "timeout",
            "Stop all data; close the connection after timeout (0: never, data dropped).",
            (_ms("timeout", "time before the connection is closed; 0 holds it forever", 0),),
            toxic_type="timeout",
        ),
        FaultType(
            "reset_peer",
            "Reset connections (TCP RST) when data arrives, after timeout.",
            (_ms("timeout", "time before the reset", 0),),
            toxic_type="reset_peer",
        ),
        FaultType(
            "slicer",
            "Slice data into small packets, with a delay between them.",
            (
                AttributeSpec(
                    "average_size", "bytes", "average packet size", minimum=1, maximum=None
                ),
                AttributeSpec("size_variation", "bytes", "± variation of the size", 0),
                AttributeSpec("delay", "us", "delay between packets", 0),
            ),
            toxic_type="slicer",
        ),
        FaultType(
            "limit_data",
            "Close the connection after bytes have gone through.",
            (AttributeSpec("bytes", "bytes", "bytes allowed before the close"),),
            toxic_type="limit_data",
        ),
        FaultType(
            "outage",
            "Disable the proxy: new connections are refused, open ones closed.",
            disables_proxy=True,
            uses_toxicity=False,
            uses_stream=False,
        ),
        FaultType(
            "hang",
            "Stop all data and hold connections open (a timeout toxic with timeout 0).",
            toxic_type="timeout",
        ),
        FaultType(
            "flaky",
            "Reset a share (toxicity) of connections; the share is re-drawn every reroll "
            "so long-lived pooled connections keep being hit.",
            (
                _ms("timeout", "time before the reset", 0),
                AttributeSpec(
                    "reroll",
                    "s",
                    "how often every open connection re-draws whether it is hit (0: never)",
                    1.0,
                ),
            ),
            toxic_type="reset_peer",
            time_driven=True,
        ),
        FaultType(
            "flap",
            "Outage on and off: down for duty * period, up for the rest, repeated.",
            (
                AttributeSpec("period", "s", "length of one down+up cycle", 10.0, minimum=0.1),
                AttributeSpec(
                    "duty",
                    "fraction",
                    "share of each period the proxy is down",
                    0.5,
                    minimum=0.0,
                    maximum=1.0,
                    exclusive_minimum=True,
                ),
            ),
            disables_proxy=True,
            time_driven=True,
            uses_toxicity=False,
            uses_stream=False,
        ),
        FaultType(
            "ramp",
            "Latency rising in equal steps from `from` to `to` over the fault's duration.",
            (
                _ms("from", "latency of the first step", 0),
                _ms("to", "latency of the last step"),
                AttributeSpec("steps", "count", "number of steps", 5, minimum=1),
                _ms("jitter", "random ± variation", 0),
            ),
            toxic_type="latency",
            time_driven=True,
        ),
    )
}


def _describe(value: object) -> str:
    return f"{value!r} that is a {type(value).__name__}"


def _parse_duration(text: str) -> float | None:
    """Seconds from '250us', '500ms', '30s', '2m', '1h30m'; None when it is not one."""
    compact = text.strip().replace(" ", "")
    if not compact:
        return None
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_SCALE[match.group(2)]
        pos = match.end()
    return total if pos == len(compact) else None


def _normalise(fault_type: str, spec: AttributeSpec, raw: object) -> AttributeValue:
    where = f"{fault_type}: attribute {spec.name!r}"
    unit_words = _UNIT_WORDS[spec.unit]
    value: float
    if isinstance(raw, bool):
        raise ValueError(f"{where} expected a number in {unit_words}, got {_describe(raw)}")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str) and spec.unit in _TIME_UNITS:
        seconds = _parse_duration(raw)
        if seconds is None:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(
                    f"{where} expected a duration like 200ms, 1s or 250us, or a number in "
                    f"{unit_words}, got {raw!r}"
                ) from None
        else:
            value = seconds / _TIME_UNITS[spec.unit]
    else:
        raise ValueError(f"{where} expected a number in {unit_words}, got {_describe(raw)}")
    if not math.isfinite(value):
        raise ValueError(f"{where} expected a finite number, got {raw!r}")
    if spec.integer:
        rounded = round(value)
        # Tolerate float noise from unit conversion ('0.2s' → 200.00000000000003 ms).
        if abs(value - rounded) > 1e-6:
            raise ValueError(f"{where} expected a whole number of {unit_words}, got {raw!r}")
        value = rounded
    too_small = value <= spec.minimum if spec.exclusive_minimum else value < spec.minimum
    if too_small:
        bound = "greater than" if spec.exclusive_minimum else "at least"
        raise ValueError(f"{where} must be {bound} {spec.minimum:g}, got {raw!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ValueError(f"{where} must be at most {spec.maximum:g}, got {raw!r}")
    return int(value) if spec.integer else value


def validate_attributes(
    fault_type: str, attributes: Mapping[str, object]
) -> dict[str, AttributeValue]:
    """Check a fault's attributes and return them normalised, defaults filled in.

    Raises ValueError naming the type, the attribute, what was expected and what arrived.
    Time attributes accept durations with units ('200ms', '1s') or bare numbers in the
    attribute's own unit (milliseconds for Toxiproxy's, seconds for flap's period).
    """
    kind = FAULT_TYPES.get(fault_type)
    if kind is None:
        close = difflib.get_close_matches(str(fault_type), list(FAULT_TYPES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown fault type {fault_type!r}{hint}; expected one of {', '.join(FAULT_TYPES)}"
        )
    known = [a.name for a in kind.attributes]
    for key in attributes:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            accepted = f"known: {', '.join(known)}" if known else "it takes no attributes"
            raise ValueError(f"{fault_type}: unknown attribute {key!r}{hint}; {accepted}")
    result: dict[str, AttributeValue] = {}
    for spec in kind.attributes:
        if spec.name in attributes:
            result[spec.name] = _normalise(fault_type, spec, attributes[spec.name])
        elif spec.default is not None:
            result[spec.name] = spec.default
        else:
            raise ValueError(
                f"{fault_type}: attribute {spec.name!r} is required "
                f"({spec.description}, in {_UNIT_WORDS[spec.unit]})"
            )
    if fault_type == "slicer" and result["size_variation"] >= result["average_size"]:
        raise ValueError(
            f"slicer: attribute 'size_variation' must be smaller than 'average_size' "
            f"({result['average_size']}), got {result['size_variation']}"
        )
    return result


class FaultLike(Protocol):
    """The fields of the experiment model's Fault that a FaultSpec is built from."""

    @property
    def at(self) -> float: ...

    @property
    def duration(self) -> float: ...

    @property
    def proxy(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def stream(self) -> str: ...

    @property
    def toxicity(self) -> float: ...

    @property
    def attributes(self) -> Mapping[str, int | float | str]: ...


@dataclass(frozen=True)
class FaultSpec:
    """One scheduled fault, in plain values: what, where, from when, for how long.

    ``index`` is the fault's position in the experiment (it names its toxic). Attributes
    are validated and normalised on construction (ValueError when invalid).
    """

    index: int
    at: float
    duration: float
    proxy: str
    type: str
    stream: Stream = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, AttributeValue | str] = field(default_factory=dict)
    """Given as numbers or durations ('200ms'); stored normalised (numbers only)."""

    def __post_init__(self) -> None:
        where = f"fault {self.index} ({self.type} on {self.proxy})"
        if self.index < 0:
            raise ValueError(f"{where}: index must be >= 0, got {self.index}")
        if not math.isfinite(self.at) or self.at < 0:
            raise ValueError(f"{where}: 'at' must be >= 0 seconds, got {self.at!r}")
        if not math.isfinite(self.duration) or self.duration <= 0:
            raise ValueError(f"{where}: duration must be > 0 seconds, got {self.duration!r}")
        if not self.proxy:
            raise ValueError(f"{where}: proxy must be named")
        if self.stream not in STREAMS:
            raise ValueError(f"{where}: stream must be upstream or downstream, got {self.stream!r}")
        if isinstance(self.toxicity, bool) or not 0.0 <= self.toxicity <= 1.0:
            raise ValueError(f"{where}: toxicity must be between 0 and 1, got {self.toxicity!r}")
        try:
            normalised = validate_attributes(self.type, self.attributes)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        kind = FAULT_TYPES[self.type]
        if not kind.uses_toxicity and self.toxicity != 1.0:
            raise ValueError(
                f"{where}: toxicity has no meaning for {self.type} (a disabled proxy refuses "
                f"every connection), got {self.toxicity}"
            )
        if self.type == "flap" and self.duration / float(normalised["period"]) > 10_000:
            raise ValueError(f"{where}: more than 10000 flap periods; use a longer period")
        object.__setattr__(self, "attributes", normalised)
        object.__setattr__(self, "at", float(self.at))
        object.__setattr__(self, "duration", float(self.duration))
        object.__setattr__(self, "toxicity", float(self.toxicity))

    @property
    def end(self) -> float:
        return self.at + self.duration

    @property
    def kind(self) -> FaultType:
        return FAULT_TYPES[self.type]

    @property
    def toxic_name(self) -> str:
        return f"{TOXIC_PREFIX}{self.index}-{self.type}"

    @classmethod
    def from_model(cls, fault: FaultLike, index: int) -> FaultSpec:
        """Adapt the experiment model's Fault (durations already in seconds)."""
        return cls(
            index=index,
            at=float(fault.at),
            duration=float(fault.duration),
            proxy=fault.proxy,
            type=fault.type,
            stream=cast(Stream, fault.stream),
            toxicity=float(fault.toxicity),
            attributes=dict(fault.attributes),
        )


def specs_from_model(faults: Sequence[FaultLike]) -> list[FaultSpec]:
    """FaultSpecs for an experiment's ``faults`` list, indexed by position.

    Raises ExperimentError (naming ``faults[i]``) for a fault the loader let through but
    the catalogue refuses, so the run stops with exit 2 before anything is applied.
    """
    specs: list[FaultSpec] = []
    problems: list[str] = []
    for index, fault in enumerate(faults):
        try:
            specs.append(FaultSpec.from_model(fault, index))
        except ValueError as exc:
            problems.append(f"faults[{index}]: {exc}")
    if problems:
        raise ExperimentError(
            "invalid faults", location=ErrorLocation(path="faults"), problems=problems
        )
    return specs


StepAction = Literal["disable", "enable", "update"]


@dataclass(frozen=True)
class PlanStep:
    """A change made while the fault is active, at ``at`` on the experiment clock."""

    at: float
    action: StepAction
    attributes: Mapping[str, int] = field(default_factory=dict)
    toxicity: float | None = None

    def describe(self) -> dict[str, object]:
        detail: dict[str, object] = {"action": self.action}
        if self.attributes:
            detail["attributes"] = dict(self.attributes)
        if self.toxicity is not None:
            detail["toxicity"] = self.toxicity
        return detail


@dataclass(frozen=True)
class FaultPlan:
    """How to apply a fault (a toxic to add, or the proxy to disable) and what to change later.

    Healing undoes the apply: remove the toxic, and release the proxy (re-enabled when no
    other outage holds it).
    """

    spec: FaultSpec
    toxic: Toxic | None
    disables_proxy: bool
    steps: tuple[PlanStep, ...] = ()


def plan_fault(spec: FaultSpec) -> FaultPlan:
    """The plan of one fault; steps lie strictly inside (at, end)."""
    attrs = cast(Mapping[str, AttributeValue], spec.attributes)  # normalised at construction
    kind = spec.kind

    def toxic(attributes: Mapping[str, AttributeValue], toxicity: float | None = None) -> Toxic:
        assert kind.toxic_type is not None
        return Toxic(
            name=spec.toxic_name,
            type=kind.toxic_type,
            stream=spec.stream,
            toxicity=spec.toxicity if toxicity is None else toxicity,
            attributes={k: int(v) for k, v in attributes.items()},
        )

    if spec.type == "outage":
        return FaultPlan(spec, None, disables_proxy=True)
    if spec.type == "hang":
        return FaultPlan(spec, toxic({"timeout": 0}), disables_proxy=False)
    if spec.type == "flaky":
        reroll = float(attrs["reroll"])
        steps: list[PlanStep] = []
        if reroll > 0:
            count = math.ceil(spec.duration / reroll)
            for k in range(1, count):
                steps.append(PlanStep(spec.at + k * reroll, "update", toxicity=spec.toxicity))
        return FaultPlan(spec, toxic({"timeout": attrs["timeout"]}), False, tuple(steps))
    if spec.type == "flap":
        period = float(attrs["period"])
        down_for = float(attrs["duty"]) * period
        steps = []
        cycles = math.ceil(spec.duration / period)
        for j in range(cycles):
            up = spec.at + j * period + down_for
            down = spec.at + (j + 1) * period
            if down_for < period and up < spec.end:
                steps.append(PlanStep(up, "enable"))
            if down < spec.end and down_for < period:
                steps.append(PlanStep(down, "disable"))
        return FaultPlan(spec, None, disables_proxy=True, steps=tuple(steps))
    if spec.type == "ramp":
        n = int(attrs["steps"])
        start, stop = int(attrs["from"]), int(attrs["to"])
        levels = (
            [stop] if n == 1 else [round(start + (stop - start) * k / (n - 1)) for k in range(n)]
        )
        steps = [
            PlanStep(spec.at + k * spec.duration / n, "update", attributes={"latency": levels[k]})
            for k in range(1, n)
        ]
        first = toxic({"latency": levels[0], "jitter": attrs["jitter"]})
        return FaultPlan(spec, first, False, tuple(steps))
    # A plain toxic: its attributes are the toxic's.
    return FaultPlan(spec, toxic(attrs), disables_proxy=False)
