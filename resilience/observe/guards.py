"""Guards: continuous conditions that abort a run when they stay broken for long enough.

Two kinds: ``PromqlGuard`` (an instant PromQL query against Prometheus) and ``LoadGuard``
(a number from the load engine's live statistics: rps, p95, p99 or error rate, for one
endpoint or all). ``GuardMonitor`` evaluates them about once a second. The orchestrator
calls ``tick(now)`` from its own loop; ``tick`` never touches the network: PromQL guards are
queried by a background thread (every call bounded by the source's timeout) whose readings
``tick`` consumes, and load guards read a local callable.

A guard *trips* when its expectation fails at every evaluation for ``for_s`` seconds
(measured between the first and the latest failing evaluation; ``for_s == 0`` trips on the
first failure), ignoring evaluations in the first ``grace_s`` seconds after ``start()``.
A PromQL guard with several series fails when any series fails. No data (empty result,
NaN, a missing load number) and an unavailable Prometheus make a guard *not evaluated*:
its streak is reset, the state is logged once per change, and it never trips on missing
evidence. A PromQL reading older than ``stale_after`` counts as not evaluated too, so a
Prometheus that stops answering mid-run can neither hang nor trip the run.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol

from resilience.errors import ObserveError
from resilience.experiment import model
from resilience.experiment.expectation import Expectation
from resilience.observe.prometheus import PrometheusSource, PrometheusUnavailable
from resilience.vocabulary import Clock, JSONValue, MonotonicClock

logger = logging.getLogger(__name__)

LoadMetric = Literal["rps", "p95", "p99", "error_rate", "oldest_in_flight"]
LOAD_METRICS: tuple[LoadMetric, ...] = ("rps", "p95", "p99", "error_rate", "oldest_in_flight")

GuardState = Literal["pending", "grace", "ok", "breached", "not_evaluated", "tripped"]

_READINGS_KEPT = 64
"""Readings buffered per PromQL guard between two ticks (bounded; oldest dropped)."""


class LoadStats(Protocol):
    """Live load numbers for one endpoint or all: latencies in seconds, error rate 0..1.

    ``None`` means "no data yet" (e.g. no request completed in the window). When every
    request hangs nothing completes and p95 has no data; ``oldest_in_flight`` (how long
    the oldest unanswered request has waited) is the number that moves then.
    """

    @property
    def rps(self) -> float | None: ...

    @property
    def p95(self) -> float | None: ...

    @property
    def p99(self) -> float | None: ...

    @property
    def error_rate(self) -> float | None: ...

    @property
    def oldest_in_flight(self) -> float | None: ...


@dataclass(frozen=True)
class LoadSnapshot:
    """A plain ``LoadStats``."""

    rps: float | None = None
    p95: float | None = None
    p99: float | None = None
    error_rate: float | None = None
    oldest_in_flight: float | None = None


LiveStats = Callable[[str | None], LoadStats | None]
"""``live_stats(endpoint)`` -> current numbers for that endpoint (``None``: all endpoints)."""


@dataclass(frozen=True)
class PromqlGuard:
    """Abort when ``promql`` breaks ``expect`` for ``for_s`` seconds."""

    name: str
    promql: str
    expect: Expectation
    for_s: float = 0.0
    grace_s: float = 0.0

    @property
    def kind(self) -> str:
        return "promql"

    @property
    def subject(self) -> str:
        return self.promql


@dataclass(frozen=True)
class LoadGuard:
    """Abort when a live load number (for ``endpoint``, or all) breaks ``expect``."""

    name: str
    metric: LoadMetric
    expect: Expectation
    endpoint: str | None = None
    for_s: float = 0.0
    grace_s: float = 0.0

    def __post_init__(self) -> None:
        if self.metric not in LOAD_METRICS:
            raise ValueError(
                f"load guard {self.name!r}: metric must be one of {LOAD_METRICS}, "
                f"got {self.metric!r}"
            )

    @property
    def kind(self) -> str:
        return "load"

    @property
    def subject(self) -> str:
        return f"{self.metric} of {self.endpoint or 'all endpoints'}"


Guard = PromqlGuard | LoadGuard


def guard_of(guard: model.Guard) -> Guard:
    """The watcher for an experiment's (or a game-day plan's) guard."""
    if guard.promql is not None:
        return PromqlGuard(guard.name, guard.promql, guard.expect, guard.for_, guard.grace)
    assert guard.load is not None  # the model requires one of promql and load
    return LoadGuard(guard.name, guard.load, guard.expect, guard.endpoint, guard.for_, guard.grace)


@dataclass(frozen=True)
class GuardTrip:
    """A guard that tripped: what, by how much, since when (experiment-clock seconds)."""

    guard: str
    kind: str
    subject: str
    expectation: str
    value: float
    where: str
    breached_since: float
    tripped_at: float

    @property
    def message(self) -> str:
        return (
            f"guard {self.guard!r} tripped: {self.subject} = {self.value:.6g}{self.where} "
            f"broke '{self.expectation}' continuously for "
            f"{self.tripped_at - self.breached_since:.1f}s"
        )

    def to_dict(self) -> dict[str, JSONValue]:
        return {
            "guard": self.guard,
            "kind": self.kind,
            "subject": self.subject,
            "expect": self.expectation,
            "value": self.value if math.isfinite(self.value) else str(self.value),
            "where": self.where.strip(" ()"),
            "breached_since": self.breached_since,
            "tripped_at": self.tripped_at,
            "message": self.message,
        }


@dataclass(frozen=True)
class GuardStatus:
    """One guard's state for the journal and live displays."""

    name: str
    kind: str
    state: GuardState
    value: float | None
    reason: str
    evaluations: int
    breached_since: float | None

    def to_dict(self) -> dict[str, JSONValue]:
        value = self.value
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "value": value if value is None or math.isfinite(value) else str(value),
            "reason": self.reason,
            "evaluations": self.evaluations,
            "breached_since": self.breached_since,
        }


@dataclass(frozen=True)
class _Reading:
    """One evaluation: ``values`` (where, value) or ``error``."""

    at: float
    values: tuple[tuple[str, float], ...] = ()
    error: str | None = None


@dataclass
class _State:
    guard: Guard
    state: GuardState = "pending"
    reason: str = ""
    value: float | None = None
    where: str = ""
    breached_since: float | None = None
    last_at: float | None = None
    evaluations: int = 0
    readings: deque[_Reading] = field(default_factory=lambda: deque(maxlen=_READINGS_KEPT))


class GuardMonitor:
    """Evaluates guards about every ``interval`` seconds; ``tick`` reports the first trip.

    ``source`` is needed only for PromQL guards and ``live_stats`` only for load guards.
    ``stale_after`` (default ``3 * interval + 5``) is how old the latest PromQL reading may
    be before the guard counts as not evaluated. Use as a context manager, or call
    ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        guards: Sequence[Guard],
        source: PrometheusSource | None = None,
        live_stats: LiveStats | None = None,
        clock: Clock | None = None,
        *,
        interval: float = 1.0,
        stale_after: float | None = None,
        max_duration_s: float = 7 * 24 * 3600.0,
    ) -> None:
        names = [g.name for g in guards]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"guard names must be unique, repeated: {sorted(duplicates)}")
        if source is None and any(isinstance(g, PromqlGuard) for g in guards):
            raise ValueError("PromQL guards need a Prometheus source")
        if live_stats is None and any(isinstance(g, LoadGuard) for g in guards):
            raise ValueError("load guards need a live_stats callable")
        self._guards = list(guards)
        self._source = source
        self._live_stats = live_stats
        self._clock: Clock = clock or MonotonicClock()
        self._interval = interval
        self._stale_after = stale_after if stale_after is not None else 3 * interval + 5.0
        self._max_rounds = max(1, int(max_duration_s / max(interval, 0.01)))
        self._states = {g.name: _State(g) for g in guards}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._trips: list[GuardTrip] = []

    # -- lifecycle -------------------------------------------------------------------

    def start(self, *, background: bool = True) -> None:
        """Start the clock for grace periods and, if there are PromQL guards, the poller.

        ``background=False`` starts no thread: the caller runs ``poll_promql()`` itself
        (unit tests with a fake clock).
        """
        if self._started_at is not None:
            return
        self._started_at = self._clock.now()
        if background and self._promql_guards():
            self._thread = threading.Thread(
                target=self._poll_loop, name="resilience-guards", daemon=True
            )
            self._thread.start()

    def stop(self, join_timeout: float = 10.0) -> None:
        """Stop the poller; waits at most ``join_timeout`` (the thread is a daemon)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(join_timeout)
            if thread.is_alive():
                logger.warning("guard poller still busy after %.1fs; leaving it", join_timeout)

    def __enter__(self) -> GuardMonitor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def trips(self) -> list[GuardTrip]:
        return list(self._trips)

    # -- evaluation --------------------------------------------------------------------

    def poll_promql(self) -> None:
        """Query every PromQL guard once and queue the readings (blocking, bounded).

        Stops asking for the round at the first "unavailable" answer: the others would
        only wait for the same timeout.
        """
        source = self._source
        if source is None:
            return
        unavailable: str | None = None
        for guard in self._promql_guards():
            if unavailable is not None:
                reading = _Reading(self._clock.now(), error=unavailable)
            else:
                try:
                    series = source.query(guard.promql)
                except PrometheusUnavailable as exc:
                    unavailable = f"Prometheus unavailable: {exc}"
                    reading = _Reading(self._clock.now(), error=unavailable)
                except ObserveError as exc:
                    reading = _Reading(self._clock.now(), error=f"query failed: {exc}")
                else:
                    values = tuple(
                        (_where(s.labels), v)
                        for s in series
                        for _, v in s.points[-1:]
                        if not math.isnan(v)
                    )
                    reading = _Reading(self._clock.now(), values=values)
            with self._lock:
                self._states[guard.name].readings.append(reading)

    def tick(self, now: float | None = None) -> GuardTrip | None:
        """Consume PromQL readings, evaluate load guards, return a new trip (at most one).

        Never blocks on the network. ``now`` defaults to the monitor's clock.
        """
        if self._started_at is None:
            self.start()
        now = self._clock.now() if now is None else now
        new_trip: GuardTrip | None = None
        for guard in self._guards:
            state = self._states[guard.name]
            if state.state == "tripped":
                continue
            if isinstance(guard, PromqlGuard):
                with self._lock:
                    readings = list(state.readings)
                    state.readings.clear()
                for reading in readings:
                    self._apply(state, reading)
                if state.last_at is not None and now - state.last_at > self._stale_after:
                    self._not_evaluated(
                        state,
                        f"no reading from Prometheus for {now - state.last_at:.0f}s",
                    )
                elif state.last_at is None and now - self._start_time() > self._stale_after:
                    self._not_evaluated(state, "no reading from Prometheus yet")
            else:
                self._apply(state, self._load_reading(guard, now))
            trip = self._check_trip(state)
            if trip is not None and new_trip is None:
                new_trip = trip
        return new_trip

    def status(self) -> list[GuardStatus]:
        return [
            GuardStatus(
                name=s.guard.name,
                kind=s.guard.kind,
                state=s.state,
                value=s.value,
                reason=s.reason,
                evaluations=s.evaluations,
                breached_since=s.breached_since,
            )
            for s in self._states.values()
        ]

    # -- internals ---------------------------------------------------------------------

    def _promql_guards(self) -> list[PromqlGuard]:
        return [g for g in self._guards if isinstance(g, PromqlGuard)]

    def _start_time(self) -> float:
        assert self._started_at is not None  # set by start(), which tick() calls first
        return self._started_at

    def _poll_loop(self) -> None:
        for _ in range(self._max_rounds):
            if self._stop.is_set():
                return
            began = time.monotonic()
            self.poll_promql()
            # Event.wait, not sleep: stop() ends the wait at once.
            if self._stop.wait(max(0.0, self._interval - (time.monotonic() - began))):
                return
        logger.warning("guard poller reached its maximum duration; PromQL guards stop")

    def _load_reading(self, guard: LoadGuard, now: float) -> _Reading:
        assert self._live_stats is not None  # checked in __init__
        try:
            stats = self._live_stats(guard.endpoint)
        except Exception as exc:  # a guard must never take the run down with it
            return _Reading(now, error=f"live load statistics failed: {exc!r}")
        value = None if stats is None else getattr(stats, guard.metric, None)
        if value is None or math.isnan(value):
            return _Reading(now)
        return _Reading(now, values=((f" ({guard.endpoint})" if guard.endpoint else "", value),))

    def _apply(self, state: _State, reading: _Reading) -> None:
        guard = state.guard
        state.last_at = reading.at
        if reading.at - self._start_time() < guard.grace_s:
            state.state, state.reason, state.breached_since = "grace", "in grace period", None
            return
        if reading.error is not None:
            self._not_evaluated(state, reading.error)
            return
        if not reading.values:
            self._not_evaluated(state, "no data")
            return
        if state.state == "not_evaluated":
            logger.info("guard %r evaluated again", guard.name)
        state.evaluations += 1
        failing = [(w, v) for w, v in reading.values if not guard.expect.holds(v)]
        if failing:
            state.where, state.value = _worst(failing, guard.expect)
            if state.breached_since is None:
                state.breached_since = reading.at
            state.state = "breached"
            state.reason = f"{state.value:.6g}{state.where} breaks '{guard.expect}'"
        else:
            state.where, state.value = _worst(list(reading.values), guard.expect)
            state.state, state.breached_since = "ok", None
            state.reason = f"holds '{guard.expect}'"

    def _not_evaluated(self, state: _State, reason: str) -> None:
        if state.state != "not_evaluated":
            logger.warning("guard %r not evaluated: %s", state.guard.name, reason)
        state.state, state.reason, state.breached_since = "not_evaluated", reason, None

    def _check_trip(self, state: _State) -> GuardTrip | None:
        if state.state != "breached" or state.breached_since is None or state.last_at is None:
            return None
        guard = state.guard
        if state.last_at - state.breached_since < guard.for_s:
            return None
        trip = GuardTrip(
            guard=guard.name,
            kind=guard.kind,
            subject=guard.subject,
            expectation=str(guard.expect),
            value=state.value if state.value is not None else math.nan,
            where=state.where,
            breached_since=state.breached_since,
            tripped_at=state.last_at,
        )
        state.state = "tripped"
        self._trips.append(trip)
        logger.warning("%s", trip.message)
        return trip


def _where(labels: Mapping[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f" ({{{inner}}})" if inner else ""


def _worst(values: list[tuple[str, float]], expect: Expectation) -> tuple[str, float]:
    index = expect.worst_index([v for _, v in values])
    return values[index if index is not None else 0]
