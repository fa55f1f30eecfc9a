"""Halt conditions: guards that heal every fault of a game day when they trip.

Each condition is a guard of the experiment family (``load: error_rate|p95|p99|rps`` or
``promql``, an ``expect`` that must hold, ``for`` seconds) with its own ``GuardMonitor``, so
conditions can be added while the session runs. ``HaltBoard.tick(now)`` returns the trips
of this tick; the session heals everything at once and writes why on the timeline. A
tripped condition stays tripped (and shown so) until it is re-armed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from resilience.experiment.model import Guard
from resilience.observe.guards import (
    GuardMonitor,
    GuardTrip,
    LiveStats,
    PromqlGuard,
    guard_of,
)
from resilience.observe.prometheus import PrometheusSource
from resilience.vocabulary import Clock


@dataclass
class _Halt:
    guard: Guard
    origin: str
    monitor: GuardMonitor
    trip: GuardTrip | None = None


class HaltBoard:
    """Halt conditions from the plan and those set live; ``tick`` reports new trips."""

    def __init__(
        self,
        clock: Clock,
        live_stats: LiveStats,
        source_factory: Callable[[], PrometheusSource] | None = None,
        *,
        background: bool = True,
    ) -> None:
        self.clock = clock
        self.live_stats = live_stats
        self.source_factory = source_factory
        self.background = background
        self._source: PrometheusSource | None = None
        self._halts: list[_Halt] = []
        self._lock = threading.Lock()

    def add(self, guard: Guard, origin: str = "plan") -> None:
        """Arm a condition (a name already armed is replaced, i.e. re-armed)."""
        wrapped = guard_of(guard)
        source = None
        if isinstance(wrapped, PromqlGuard):
            if self.source_factory is None:
                raise ValueError("PromQL halt conditions need Prometheus")
            if self._source is None:
                self._source = self.source_factory()
            source = self._source
        monitor = GuardMonitor(
            [wrapped], source=source, live_stats=self.live_stats, clock=self.clock
        )
        monitor.start(background=self.background)
        with self._lock:
            old = [h for h in self._halts if h.guard.name == guard.name]
            self._halts = [h for h in self._halts if h.guard.name != guard.name]
            self._halts.append(_Halt(guard, origin, monitor))
        for halt in old:
            halt.monitor.stop(join_timeout=0.5)

    def remove(self, name: str) -> bool:
        with self._lock:
            gone = [h for h in self._halts if h.guard.name == name]
            self._halts = [h for h in self._halts if h.guard.name != name]
        for halt in gone:
            halt.monitor.stop(join_timeout=0.5)
        return bool(gone)

    def tick(self, now: float | None = None) -> list[GuardTrip]:
        """Evaluate every armed condition; the trips that happened in this tick."""
        with self._lock:
            halts = list(self._halts)
        trips: list[GuardTrip] = []
        for halt in halts:
            if halt.trip is not None:
                continue
            trip = halt.monitor.tick(now)
            if trip is not None:
                halt.trip = trip
                trips.append(trip)
        return trips

    def poll_promql(self) -> None:
        """Without background threads (tests): query every PromQL condition once."""
        with self._lock:
            halts = list(self._halts)
        for halt in halts:
            halt.monitor.poll_promql()

    def status(self) -> list[dict[str, object]]:
        with self._lock:
            halts = list(self._halts)
        out: list[dict[str, object]] = []
        for halt in halts:
            (status,) = halt.monitor.status()
            guard = halt.guard
            out.append(
                {
                    "name": guard.name,
                    "origin": halt.origin,
                    "watch": guard.promql or f"{guard.load} of {guard.endpoint or 'all endpoints'}",
                    "expect": str(guard.expect),
                    "for": guard.for_,
                    "state": status.state,
                    "value": status.to_dict()["value"],
                    "reason": halt.trip.message if halt.trip else status.reason,
                }
            )
        return out

    def stop(self) -> None:
        with self._lock:
            halts, self._halts = self._halts, []
        for halt in halts:
            halt.monitor.stop(join_timeout=1.0)
        close = getattr(self._source, "close", None)
        if callable(close):
            close()
