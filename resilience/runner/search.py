"""A capacity search judged live: when its SLOs broke, and when the search stops.

A ``load.search`` steps the load up to its ceiling; it must not run away once the target
broke. Every second of the live loop, ``LiveSearch`` reads the recorder's rolling numbers
(by completion time, the stream the guards read) over the last ``WINDOW`` seconds, for the
whole target and each endpoint ``slo.baseline`` names, and judges them against the
baseline's limits (percentiles, max and error rate) when the window holds ``MIN_REQUESTS``
completions. ``SUSTAIN`` broken seconds in a row are a break (the same smoothing as the
analysis, analysis/breaking.py); the search then stops ``load.search.after`` seconds
later. Its plan's length (every step held, at most ``max_duration``) bounds it either way.
The breaking point itself is judged after the run, from the run directory (by send time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from resilience.analysis.smoothing import MIN_REQUESTS, SUSTAIN, WINDOW
from resilience.experiment.model import Experiment, Thresholds
from resilience.load.recorder import LiveStats

LiveNumbers = Callable[[int, str | None], LiveStats]
"""(window in seconds, endpoint or None) -> the recorder's rolling numbers."""


@dataclass
class LiveSearch:
    """The live judge of one capacity search (see the module doc)."""

    targets: list[tuple[str | None, Thresholds]]
    after: float
    warmup: float
    broke_at: float | None = None
    """When the break was sure (experiment clock)."""
    stop_at: float | None = None
    why: list[str] = field(default_factory=list)
    _run: int = 0
    _last_second: int | None = None

    @classmethod
    def of(cls, experiment: Experiment) -> LiveSearch | None:
        """The judge of ``experiment``'s search (None: not a search)."""
        search = experiment.load.search
        baseline = experiment.slo.baseline
        if search is None or baseline is None:
            return None
        targets: list[tuple[str | None, Thresholds]] = [(None, baseline)]
        targets.extend(baseline.endpoints.items())
        return cls(targets, after=search.after, warmup=experiment.load.warmup)

    def tick(self, now: float, live: LiveNumbers) -> float | None:
        """Judge the second just ended (once per second); returns when the search must stop
        once its SLOs broke, else None."""
        if self.stop_at is not None:
            return self.stop_at
        second = math.floor(now)
        if second == self._last_second or now < self.warmup + WINDOW:
            return None
        self._last_second = second
        broken = self._breaches(live)
        self._run = self._run + 1 if broken else 0
        if self._run >= SUSTAIN:
            self.broke_at = now
            self.stop_at = now + self.after
            self.why = broken
            return self.stop_at
        return None

    def _breaches(self, live: LiveNumbers) -> list[str]:
        out: list[str] = []
        for endpoint, limits in self.targets:
            stats = live(WINDOW, endpoint)
            if stats.completions < MIN_REQUESTS:
                continue
            where = endpoint or "all endpoints"
            for metric in ("p50", "p95", "p99", "max"):
                limit = getattr(limits, metric)
                value = getattr(stats, metric)
                if limit is not None and value is not None and value > limit:
                    out.append(f"{metric} of {where} {value * 1000:.0f} ms > {limit * 1000:.0f} ms")
            rate = stats.error_rate
            if limits.error_rate is not None and rate is not None and rate > limits.error_rate:
                out.append(f"error rate of {where} {rate:.2%} > {limits.error_rate:.2%}")
        return out

    def message(self) -> str:
        assert self.broke_at is not None and self.stop_at is not None
        return (
            f"search: the SLOs broke ({'; '.join(self.why[:2])}), sure at "
            f"{self.broke_at:.0f} s; the load stops at {self.stop_at:.0f} s"
        )
