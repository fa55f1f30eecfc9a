"""A circuit breaker state machine with an injected clock, so its timing is exact and testable.

States and transitions (``now`` comes from the clock; nothing here sleeps or schedules):

    CLOSED ──(N consecutive failures, or failure ratio ≥ r over ≥ m calls in the window)──► OPEN
    OPEN ──(open_seconds elapsed)──► HALF_OPEN
    HALF_OPEN: one probe at a time, at most one every probe_interval_seconds;
        a probe fails ──► OPEN (a fresh open period)
        probes have succeeded continuously for recovery_seconds ──► CLOSED
        (the streak starts when the first successful probe of the half-open period completes)

While not CLOSED every call other than the probe is rejected at once. Results of calls
admitted under an earlier state are ignored (each transition starts a new epoch), so a
slow call admitted while CLOSED cannot close or re-open the breaker later.

Recovery after a healed fault, with traffic faster than one request per probe interval:
the breaker turns half-open at most ``open_seconds`` after the heal (the heal fails any
probe in flight, which starts a fresh open period), the first probe then succeeds after
its own latency L, and the breaker closes ``recovery_seconds`` later:
``recovery_seconds ≤ T ≤ recovery_seconds + open_seconds + L + 1/rate``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

logger = logging.getLogger(__name__)


class BreakerState(IntEnum):
    """The value of the ``shop_breaker_state`` gauge: 0 closed, 1 open, 2 half-open."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(frozen=True)
class BreakerConfig:
    """The breaker's thresholds and times, in seconds."""

    failure_threshold: int = 5
    failure_ratio: float = 0.5
    window_seconds: float = 10.0
    min_calls: int = 20
    open_seconds: float = 0.5
    probe_interval_seconds: float = 0.2
    recovery_seconds: float = 2.0


@dataclass(frozen=True)
class Permit:
    """Admission of one call: a normal call (while closed) or the half-open probe."""

    probe: bool
    epoch: int
    issued_at: float


TransitionHook = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Decides whether a call may go to the upstream, and learns from each call's outcome.

    Use: ``permit = breaker.acquire()``; ``None`` means rejected. Then report exactly one
    of ``record(permit, success=...)`` or ``release(permit)`` (no verdict, e.g. the call
    never reached the upstream).
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionHook | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._consecutive_failures = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._window_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._last_probe_at: float | None = None
        self._healthy_since: float | None = None

    @property
    def state(self) -> BreakerState:
        """The state now (time-driven transitions are applied on read)."""
        self._advance(self._clock())
        return self._state

    def acquire(self) -> Permit | None:
        """A permit for one call, or ``None`` when the call must be rejected."""
        now = self._clock()
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            return Permit(probe=False, epoch=self._epoch, issued_at=now)
        if self._state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            interval = self.config.probe_interval_seconds
            if self._last_probe_at is None or now - self._last_probe_at >= interval:
                self._probe_in_flight = True
                self._last_probe_at = now
                return Permit(probe=True, epoch=self._epoch, issued_at=now)
        return None

    def record(self, permit: Permit, *, success: bool) -> None:
        """Learn from a finished call."""
        now = self._clock()
        if permit.epoch != self._epoch:
            return  # admitted under an earlier state: says nothing about this one
        if permit.probe:
            self._probe_in_flight = False
            if not success:
                self._transition(BreakerState.OPEN, now)
                return
            if self._healthy_since is None:
                self._healthy_since = now
            self._advance(now)
            return
        if self._state is not BreakerState.CLOSED:
            return
        self._window.append((now, success))
        if not success:
            self._window_failures += 1
        self._prune(now)
        if success:
            self._consecutive_failures = 0
            return
        self._consecutive_failures += 1
        calls = len(self._window)
        if self._consecutive_failures >= self.config.failure_threshold or (
            calls >= self.config.min_calls
            and self._window_failures / calls >= self.config.failure_ratio
        ):
            self._transition(BreakerState.OPEN, now)

    def release(self, permit: Permit) -> None:
        """The admitted call ended without a verdict; free the probe slot if it was the probe."""
        if permit.probe and permit.epoch == self._epoch:
            self._probe_in_flight = False

    def _prune(self, now: float) -> None:
        horizon = now - self.config.window_seconds
        while self._window and self._window[0][0] < horizon:
            _, ok = self._window.popleft()
            if not ok:
                self._window_failures -= 1

    def _advance(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.config.open_seconds:
            self._transition(BreakerState.HALF_OPEN, now)
        if (
            self._state is BreakerState.HALF_OPEN
            and self._healthy_since is not None
            and now - self._healthy_since >= self.config.recovery_seconds
        ):
            self._transition(BreakerState.CLOSED, now)

    def _transition(self, new: BreakerState, now: float) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._probe_in_flight = False
        self._healthy_since = None
        if new is BreakerState.OPEN:
            self._opened_at = now
        elif new is BreakerState.HALF_OPEN:
            self._last_probe_at = None
        elif new is BreakerState.CLOSED:
            self._consecutive_failures = 0
            self._window.clear()
            self._window_failures = 0
        logger.info("breaker %s: %s -> %s", self.name, old.name.lower(), new.name.lower())
        if self._on_transition is not None:
            self._on_transition(old, new)
