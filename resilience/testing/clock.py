"""A clock that moves only when told: for code that takes ``clock`` and ``sleep`` callables
(bounded waits and polls), so a test runs a 30 s wait in no time and knows exactly how
long the code believed it waited."""

from __future__ import annotations


class ManualClock:
    """``clock()`` reads ``now``; ``sleep(s)`` and ``advance(s)`` move it on."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    advance = sleep
