"""The console's numbers: one sample a second per endpoint, and charts drawn from them.

Every second the session samples the load recorder's live view (completions by completion
time over the last two seconds, so a hang shows at once) for each endpoint and for all of
them together, keeps the last ``KEEP_S`` seconds, and draws three inline SVG charts with
the report's ``svg`` module (requests/s, p95, error rate; one line per endpoint; fault
windows shaded as they happen). Drawn on the server, so the page needs no chart library.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from resilience.load.recorder import LiveStats
from resilience.report.svg import PALETTE, Line, LineChart, Window, line_chart

KEEP_S = 3600
VIEW_S = 300.0
WINDOW_S = 2
ALL = "all endpoints"


@dataclass(frozen=True)
class Sample:
    """The recorder's live numbers of one endpoint (or all) at ``t`` on the session clock."""

    t: float
    stats: LiveStats

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self.stats), "t": round(self.t, 2), "rps": round(self.stats.rps, 2)}


class LiveMetrics:
    """Per-endpoint samples, once a second, and the console's charts and table."""

    def __init__(
        self, live: Callable[[int, str | None], LiveStats], endpoints: Sequence[str]
    ) -> None:
        self._live = live
        self.endpoints = list(endpoints)
        self._series: dict[str, deque[Sample]] = {
            name: deque(maxlen=KEEP_S) for name in [ALL, *self.endpoints]
        }
        self._lock = threading.Lock()

    def sample(self, t: float) -> None:
        samples = {ALL: Sample(t, self._live(WINDOW_S, None))}
        for name in self.endpoints:
            samples[name] = Sample(t, self._live(WINDOW_S, name))
        with self._lock:
            for name, value in samples.items():
                self._series[name].append(value)

    def table(self) -> list[dict[str, Any]]:
        """The latest sample of each endpoint (and of all together, first)."""
        with self._lock:
            rows = []
            for name, series in self._series.items():
                if series:
                    latest = series[-1]
                    rows.append({"endpoint": name, **latest.to_dict()})
            return rows

    def charts(
        self, now: float, windows: Sequence[tuple[float, float | None, str]]
    ) -> dict[str, str]:
        """Three SVG charts over the last ``VIEW_S`` seconds, fault windows shaded."""
        start = max(0.0, now - VIEW_S)
        with self._lock:
            series = {
                name: [s for s in values if s.t >= start]
                for name, values in self._series.items()
                if name != ALL
            }
        shaded = [
            Window(a, now if b is None else b, label)
            for a, b, label in windows
            if (now if b is None else b) >= start
        ]

        def lines(value: Callable[[Sample], float | None]) -> list[Line]:
            return [
                Line(name, PALETTE[i % len(PALETTE)], [(s.t, value(s)) for s in samples])
                for i, (name, samples) in enumerate(series.items())
            ]

        def ms(s: Sample) -> float | None:
            return None if s.stats.p95 is None else s.stats.p95 * 1000.0

        def pct(s: Sample) -> float | None:
            return None if s.stats.error_rate is None else s.stats.error_rate * 100.0

        def draw(
            chart_id: str, title: str, unit: str, value: Callable[[Sample], float | None]
        ) -> str:
            return line_chart(
                LineChart(
                    chart_id=chart_id,
                    title=title,
                    y_label=unit,
                    x_range=(start, max(now, start + 10.0)),
                    lines=lines(value),
                    windows=shaded,
                    width=920,
                    height=220,
                    x_label="seconds on the session clock",
                )
            )

        return {
            "rps": draw("chart-rps", "requests per second", "req/s", lambda s: s.stats.rps),
            "p95": draw("chart-p95", "p95 latency", "ms", ms),
            "errors": draw("chart-errors", "error rate", "%", pct),
        }
