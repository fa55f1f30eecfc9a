"""The experiment clock the fault timeline runs on, and a fake one for unit tests.

One clock per run: ``now()`` is seconds since the run's origin (t = 0), read from the
monotonic clock so that wall-clock jumps cannot reorder events; ``epoch(t)`` turns an
experiment time into Unix seconds (origin + t), so every stamp can be written both ways
and lines up with Prometheus series and spans. ``FakeClock`` only moves when told to (or
when something sleeps on it), which makes timing logic testable without sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Seconds on the experiment clock, a way to wait, and the wall time of a moment."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def epoch(self, t: float) -> float: ...


class MonotonicClock:
    """The real experiment clock: t = 0 at construction (or at ``origin_epoch``)."""

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
    """A clock that stands still until ``advance`` or ``sleep`` moves it."""

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
