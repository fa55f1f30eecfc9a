"""The toolkit's shared words, defined once at the bottom of the package graph.

Every package may import this module and it imports nothing of the toolkit: the shop's
modes, severities, phase and status names, request outcomes, the built-in proxies, one
type for a phase and one for a fault window (both on the experiment clock), the clock
protocol with its real and fake clocks, and the journal's time format. A word needed in a
second package moves here instead of being spelled again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, Protocol, get_args

ShopMode = Literal["fragile", "hardened"]
"""The reference shop's two modes (same code, different settings; docs/shop.md)."""
SHOP_MODES: Final[tuple[ShopMode, ...]] = get_args(ShopMode)

Severity = Literal["info", "warning", "critical"]
"""How much a check or finding matters; only ``critical`` ones may fail a run."""
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)

PhaseName = Literal["baseline", "fault", "spike", "recovery"]
"""baseline (before the first fault, or the load spike), fault (while any fault is active),
spike (while the load spike lasts, in a run without faults), recovery (after the last heal,
or once the load came back down). A run has a fault phase or a spike phase, never both."""
PHASE_NAMES: Final[tuple[PhaseName, ...]] = get_args(PhaseName)
STRESS_PHASES: Final[tuple[PhaseName, ...]] = ("fault", "spike")
"""The phases that put the target under stress: recovery is measured from their end."""

RunStatus = Literal["starting", "running", "passed", "failed", "inconclusive", "aborted", "error"]
"""A run's status in its journal; ``starting`` and ``running`` are not final. ``inconclusive``
(exit 3): the run could not be judged — the rig was overloaded, or critical checks could not
be evaluated (analysis/rig.py)."""
FINAL_STATUSES: Final[frozenset[str]] = frozenset(
    {"passed", "failed", "inconclusive", "aborted", "error"}
)

CheckStatus = Literal["passed", "failed", "not_evaluated"]
FindingStatus = Literal["found", "held", "not_evaluated", "inconclusive"]

JSONScalar = str | int | float | bool | None
JSONValue = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]
"""A value as ``json.loads`` returns it: what the run directory's files, the game day's
HTTP bodies and the backends' answers hold before they are read into typed records."""
"""found: the detector's concern is there; held: it checked and what it checks held (with its
counts, e.g. no write lost); not_evaluated: a source it needs is missing; inconclusive: the
data could not decide."""

OUTCOMES: Final[tuple[str, ...]] = ("ok", "4xx", "5xx", "timeout", "connection_error", "unexpected")
"""What became of one request. ``unexpected``: a status outside the request's ``expect`` that
is neither 4xx nor 5xx (200 where 201 was expected), or a request a locustfile marked failed."""
ERROR_OUTCOMES: Final[tuple[str, ...]] = OUTCOMES[1:]

BUILTIN_PROXIES: Final[tuple[str, ...]] = ("postgres", "orders", "catalog")
"""The Toxiproxy proxies of the built-in stack, in creation order (see stack/topology.py)."""

BUILTIN_SERVICES: Final[dict[str, str]] = {
    "postgres": "postgresql",
    "orders": "shop-orders",
    "catalog": "shop-catalog",
}
"""The service names the built-in shop's spans give each proxied dependency."""

STACK_SCRAPE_JOBS: Final[tuple[str, ...]] = (
    "toxiproxy",
    "jaeger",
    "catalog",
    "orders",
    "gateway",
    "resilience",
)
"""The Prometheus jobs of the built-in stack (stack/generate.py); an experiment's own
``observe.scrape`` jobs take other names."""

EPHEMERAL_LOW: Final = 32768
EPHEMERAL_HIGH: Final = 61000
"""Linux's ephemeral port range: Toxiproxy fails intermittently on listen ports inside it."""


@dataclass(frozen=True)
class Phase:
    """A named span of the experiment clock, in seconds (``name`` is a ``PhaseName``, or
    ``run`` for the whole run)."""

    name: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end

    def holds_second(self, second: int) -> bool:
        """Whether one-second bucket ``second`` belongs here (its midpoint is inside)."""
        return self.contains(second + 0.5)

    def seconds(self) -> range:
        """The one-second buckets whose midpoint lies inside the phase."""
        first = math.ceil(self.start - 0.5)
        last = math.ceil(self.end - 0.5)  # exclusive
        return range(max(first, 0), max(last, 0))


@dataclass(frozen=True)
class FaultWindow:
    """One fault on the experiment clock: applied (or scheduled) at ``start``, healed at
    ``end`` (None: never healed, e.g. an aborted run)."""

    index: int
    proxy: str
    type: str
    start: float
    end: float | None
    attributes: dict[str, object] = field(default_factory=dict)

    @property
    def healed(self) -> bool:
        return self.end is not None


def phases_from_faults(faults: Sequence[FaultWindow], *, start: float, end: float) -> list[Phase]:
    """baseline / fault / recovery from fault windows (stamps or schedule).

    baseline: from ``start`` to the first fault; fault: from the first application to the
    last heal (one window, overlaps merged, gaps between faults included: the system has
    not had a clean stretch); recovery: from the last heal to ``end``. No fault: all
    baseline. A fault never healed ends the fault phase at ``end`` (no recovery phase).
    """
    if not faults:
        return [Phase("baseline", start, end)]
    first = min(f.start for f in faults)
    phases = [Phase("baseline", start, max(start, first))] if first > start else []
    heals = [f.end for f in faults]
    if any(h is None for h in heals):
        phases.append(Phase("fault", first, end))
        return phases
    last = max(h for h in heals if h is not None)
    phases.append(Phase("fault", first, min(last, end)))
    if last < end:
        phases.append(Phase("recovery", last, end))
    return phases


def phases_from_spike(spike: tuple[float, float], *, start: float, end: float) -> list[Phase]:
    """baseline / spike / recovery from a load spike's window (``spike``: from the second the
    load began to rise to the second it came back down): baseline from ``start`` to the
    spike, recovery from its end to ``end`` (the shape of ``phases_from_faults``)."""
    first, last = spike
    phases = [Phase("baseline", start, max(start, first))] if first > start else []
    phases.append(Phase("spike", max(start, first), min(last, end)))
    if last < end:
        phases.append(Phase("recovery", last, end))
    return phases


def phase_named(phases: Sequence[Phase], name: str) -> Phase | None:
    return next((p for p in phases if p.name == name), None)


def phase_key(name: str) -> str:
    """The experiment file's word for phase ``name``: a spike is judged by the fault's keys
    (``slo.fault``, checks with ``phase: fault``)."""
    return "fault" if name == "spike" else name


def stress_phase(phases: Sequence[Phase]) -> Phase | None:
    """The phase under stress: the fault phase, or a load spike's (``STRESS_PHASES``)."""
    return next((p for p in phases if p.name in STRESS_PHASES), None)


class Clock(Protocol):
    """Seconds on the experiment clock, a way to wait, and the wall time of a moment."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def epoch(self, t: float) -> float: ...


class MonotonicClock:
    """The real experiment clock: t = 0 at construction (or at ``origin_epoch``).

    ``now()`` reads the monotonic clock so that wall-clock jumps cannot reorder events;
    ``epoch(t)`` turns an experiment time into Unix seconds, so every stamp can be written
    both ways and lines up with Prometheus series and spans."""

    def __init__(self, origin_epoch: float | None = None) -> None:
        mono = time.monotonic()
        wall = time.time()
        self.origin_epoch = wall if origin_epoch is None else origin_epoch
        # The monotonic reading that corresponds to t = 0.
        self._mono_origin = mono - (wall - self.origin_epoch)

    def now(self) -> float:
        return time.monotonic() - self._mono_origin

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def epoch(self, t: float) -> float:
        return self.origin_epoch + t


class FakeClock:
    """A clock that stands still until ``advance`` or ``sleep`` moves it (for tests)."""

    def __init__(self, start: float = 0.0, origin_epoch: float = 1_767_225_600.0) -> None:
        self.t = start
        self.origin_epoch = origin_epoch
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def epoch(self, t: float) -> float:
        return self.origin_epoch + t


def iso_utc(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-25T14:30:09.123Z (the journal's format)."""
    return (
        datetime.fromtimestamp(epoch, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def epoch_of(iso: str | None) -> float | None:
    """Unix seconds of an ISO 8601 time (``iso_utc``'s format or any other); None if unreadable."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
