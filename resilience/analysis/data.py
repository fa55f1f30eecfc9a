"""What the analysis reads: phases, and per-second per-endpoint load data behind a small view.

The load engine records, per second of SEND time and per endpoint, an HdrHistogram of
latencies (microseconds) and counts by outcome. ``LoadView`` is the narrow interface the
analysis needs from that; ``MemoryLoadView`` is a plain in-memory implementation used by
unit tests and by the adapter over the run directory's files.

Seconds are integer indexes on the experiment clock: second ``s`` holds requests sent in
``[s, s + 1)``. A second belongs to a phase when its midpoint ``s + 0.5`` lies inside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

from resilience.histogram import Histogram, as_histogram, merge_all
from resilience.rundir.load import LoadView, LoadViewBase, Segment
from resilience.vocabulary import ERROR_OUTCOMES


@dataclass
class MemoryLoadView(LoadViewBase):
    """An in-memory LoadView: ``data[endpoint][second] = (histogram, counts)``."""

    data: dict[str, dict[int, tuple[Histogram, dict[str, int]]]] = field(default_factory=dict)
    _all: dict[int, tuple[Histogram, dict[str, int]]] | None = None

    def add(
        self,
        endpoint: str,
        second: int,
        hist: Histogram | HdrHistogram,
        counts: Mapping[str, int],
    ) -> None:
        """Add one second of one endpoint (a dense HdrHistogram is converted)."""
        compact = as_histogram(hist)
        per_second = self.data.setdefault(endpoint, {})
        if second in per_second:
            old_hist, old_counts = per_second[second]
            for key, value in counts.items():
                old_counts[key] = old_counts.get(key, 0) + value
            per_second[second] = (merge_all([old_hist, compact]), old_counts)
        else:
            per_second[second] = (compact, dict(counts))
        self._all = None

    @property
    def endpoints(self) -> Sequence[str]:
        return sorted(self.data)

    @property
    def seconds(self) -> Sequence[int]:
        found: set[int] = set()
        for per_second in self.data.values():
            found.update(per_second)
        return sorted(found)

    def _aggregate(self) -> dict[int, tuple[Histogram, dict[str, int]]]:
        if self._all is None:
            parts: dict[int, list[Histogram]] = {}
            totals: dict[int, dict[str, int]] = {}
            for per_second in self.data.values():
                for second, (hist, counts) in per_second.items():
                    parts.setdefault(second, []).append(hist)
                    agg_counts = totals.setdefault(second, {})
                    for key, value in counts.items():
                        agg_counts[key] = agg_counts.get(key, 0) + value
            self._all = {s: (merge_all(parts[s]), totals[s]) for s in parts}
        return self._all

    def _entry(self, endpoint: str | None, second: int) -> tuple[Histogram, dict[str, int]] | None:
        source = self._aggregate() if endpoint is None else self.data.get(endpoint, {})
        return source.get(second)

    def segments(self, endpoint: str, second: int) -> dict[str, Segment]:
        """Everything in ``0-0``: an in-memory view has no phase marks."""
        entry = self._entry(endpoint, second)
        if entry is None or not sum(entry[1].values()):
            return {}
        return {"0-0": Segment(dict(entry[1]), entry[0])}

    def histogram(self, endpoint: str | None, second: int) -> Histogram | None:
        entry = self._entry(endpoint, second)
        return entry[0] if entry else None

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]:
        entry = self._entry(endpoint, second)
        return entry[1] if entry else {}


@dataclass(frozen=True)
class WindowStats:
    """Latency (milliseconds) and outcome statistics over a set of seconds."""

    requests: int
    errors: int
    seconds: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    counts: Mapping[str, int]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def rps(self) -> float | None:
        return self.requests / self.seconds if self.seconds else None


_P = (50.0, 95.0, 99.0)


def window_stats(view: LoadView, endpoint: str | None, seconds: Iterable[int]) -> WindowStats:
    """Merge the histograms and counts of ``seconds`` (missing seconds count as empty)."""
    hist, counts, n_seconds = view.window(endpoint, seconds)
    total = sum(counts.values())
    errors = sum(counts.get(k, 0) for k in ERROR_OUTCOMES)
    if hist.total == 0:
        return WindowStats(total, errors, n_seconds, None, None, None, None, counts)
    p50, p95, p99 = hist.percentiles_ms(_P)
    return WindowStats(
        requests=total,
        errors=errors,
        seconds=n_seconds,
        p50=p50,
        p95=p95,
        p99=p99,
        max=hist.max_ms,
        counts=counts,
    )


@dataclass(frozen=True)
class SecondSeries:
    """Per-second series of one endpoint (or all): arrays aligned on ``seconds``."""

    seconds: list[int]
    requests: list[int]
    errors: list[int]
    p50: list[float | None]
    p95: list[float | None]
    p99: list[float | None]

    def error_rate(self, i: int) -> float | None:
        return self.errors[i] / self.requests[i] if self.requests[i] else None


def second_series(view: LoadView, endpoint: str | None, seconds: Iterable[int]) -> SecondSeries:
    """Per second of ``seconds``: requests, errors and p50/p95/p99 (None where empty)."""
    table = view.table(endpoint, seconds, _P)
    return SecondSeries(
        table.seconds.tolist(),
        table.requests.tolist(),
        table.errors.tolist(),
        *(nullable(table.percentiles[p]) for p in _P),
    )


def nullable(values: np.ndarray) -> list[float | None]:
    """An array of floats as a list, NaN as None."""
    return [None if math.isnan(v) else v for v in values.tolist()]
