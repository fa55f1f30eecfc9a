"""The live part of a run: load, faults and guards on one clock, until the load ends.

One loop in the orchestrator's thread: it wakes at the next fault action (so stamps land
within a few milliseconds of their schedule), or every ``TICK`` seconds otherwise, feeds
the load engine's events to the recorder, evaluates guards, and reports a live status.
Nothing here heals faults on the way out: the orchestrator's ``finally`` does, on every
exit path.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resilience.errors import GuardTripped, ResilienceError
from resilience.faults.timeline import FaultTimeline
from resilience.load.engine import LoadEngine
from resilience.load.recorder import LoadRecorder
from resilience.observe.guards import GuardMonitor
from resilience.runner.files import RunFiles
from resilience.runner.live_export import timeline_phase
from resilience.runner.marks import PhaseMarker
from resilience.runner.observer import LiveStatus, RunObserver
from resilience.runner.search import LiveSearch
from resilience.vocabulary import Clock, Phase

logger = logging.getLogger(__name__)

TICK = 0.25
STATUS_EVERY = 0.5


@dataclass
class LiveRun:
    """The moving parts of the live loop."""

    clock: Clock
    engine: LoadEngine
    recorder: LoadRecorder
    timeline: FaultTimeline
    guards: GuardMonitor | None
    observer: RunObserver
    end: float
    stop: threading.Event
    between: Callable[[float], None] | None = None
    """Called on every pass with the clock's reading (the rig's health: may raise to stop
    the run, e.g. when Toxiproxy is lost)."""
    marker: PhaseMarker | None = None
    search: LiveSearch | None = None
    """A capacity search's live judge: once its SLOs broke, the load ends ``after`` later."""
    spike_phases: Sequence[Phase] | None = None
    """The scheduled phases of a run phased by a load spike (baseline, spike, recovery)."""

    def phase(self, now: float) -> str:
        return timeline_phase(self.timeline, self.spike_phases, now)

    def status(self, now: float) -> LiveStatus:
        live = self.recorder.live(window_s=3)
        return LiveStatus(
            t=now,
            total=self.end,
            phase=self.phase(now),
            rps=live.rps,
            p95=live.p95,
            error_rate=live.error_rate,
            in_flight=live.in_flight,
            users=live.users,
            active_faults=[f"{s.type} on {s.proxy}" for s in self.timeline.active()],
            oldest_in_flight=live.oldest_in_flight,
        )

    def run(self) -> None:
        """Until the load's end (or ``stop``); raises GuardTripped when a guard trips."""
        bound = int(self.end / 0.001) + 1000  # every pass advances the clock or waits
        next_status = 0.0
        for _ in range(bound):
            now = self.clock.now()
            if now >= self.end or self.stop.is_set():
                return
            self.timeline.tick(now)
            if self.marker is not None:
                self.marker.tick(self.clock.now())
            upcoming = self.timeline.next_event_time()
            wake = min(now + TICK, self.end, math.inf if upcoming is None else upcoming)
            self.recorder.consume(self.engine.poll(timeout=max(0.0, wake - self.clock.now())))
            # A fault due while we waited for events is applied before anything else.
            if upcoming is not None and self.clock.now() >= upcoming:
                self.timeline.tick()
            now = self.clock.now()
            if self.between is not None:
                self.between(now)
            if self.guards is not None:
                trip = self.guards.tick(now)
                if trip is not None:
                    self.observer.guard_tripped(trip)
                    raise GuardTripped(trip.message)
            if self.search is not None and self.search.stop_at is None:
                stop = self.search.tick(now, self.recorder.live)
                if stop is not None:
                    self.end = min(self.end, stop)
                    self.observer.message(self.search.message())
            if now >= next_status:
                self.observer.tick(self.status(now))
                next_status = now + STATUS_EVERY

    def drain(self, deadline: float) -> None:
        """After the load's end: collect the last seconds until the workers exit."""
        for _ in range(int(deadline / 0.05) + 10):
            if not self.engine.running or self.clock.now() >= self.end + deadline:
                break
            self.recorder.consume(self.engine.poll(timeout=0.25))
        self.recorder.consume(self.engine.poll(timeout=0.0))


def stop_engine(
    engine: LoadEngine,
    recorder: LoadRecorder | None,
    *,
    grace: float,
    files: RunFiles | None = None,
) -> None:
    """Stop the load workers (``grace`` seconds to finish), mask their logs through the
    run's redactor (``files``), record their last events and close the recording: a run's
    and a game day's load end the same way."""
    try:
        engine.stop(grace=grace)
    finally:
        if files is not None:
            files.redact_worker_logs()
        if recorder is not None:
            try:
                recorder.consume(engine.poll(timeout=0.0))
            except ResilienceError as exc:
                logger.debug("ignoring late load events: %s", exc)
            recorder.close()
