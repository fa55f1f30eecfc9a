"""The experiment clock: seconds since t0, from a monotonic source, with the wall time of t0.

Everything a run stamps (faults applied and healed, guards, phases) uses this one clock, so
load data, Prometheus series and spans line up. Tests inject a fake.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds on the experiment clock, and waiting on it."""

    @property
    def t0_wall(self) -> float: ...

    def now(self) -> float: ...

    def wall(self, t: float) -> float: ...

    def wait_until(self, t: float, stop: threading.Event) -> bool:
        """Wait until ``t`` or until ``stop`` is set; True if stopped."""
        ...


class MonotonicClock:
    """The real clock: t0 is fixed at construction (or given as a wall-clock epoch)."""

    def __init__(self, t0_wall: float | None = None) -> None:
        now_wall, now_mono = time.time(), time.monotonic()
        self._t0_wall = now_wall if t0_wall is None else t0_wall
        self._t0_mono = now_mono + (self._t0_wall - now_wall)

    @property
    def t0_wall(self) -> float:
        return self._t0_wall

    def now(self) -> float:
        return time.monotonic() - self._t0_mono

    def wall(self, t: float) -> float:
        return self._t0_wall + t

    def wait_until(self, t: float, stop: threading.Event) -> bool:
        remaining = t - self.now()
        if remaining <= 0:
            return stop.is_set()
        return stop.wait(remaining)
