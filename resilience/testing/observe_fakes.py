"""Canned Prometheus and trace sources for unit tests (the real ones talk HTTP).

``FakePrometheusSource`` answers from a mapping of PromQL to series, ``FakeTraceSource`` from
traces in memory; both can be told to fail, and both record what they were asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from resilience.errors import ObserveError
from resilience.observe.prometheus import Series, Target
from resilience.observe.spans import Trace

Responder = Callable[[str], Sequence[Series]]


class FakePrometheusSource:
    """Canned answers for unit tests.

    ``series`` maps a PromQL string to its series (full history); instant queries return each
    series' last point at or before ``at`` (or its last point), range queries the points in
    ``[start, end]``. ``error`` makes every call raise it; ``calls`` records what was asked.
    """

    def __init__(
        self,
        series: Mapping[str, Sequence[Series]] | None = None,
        *,
        targets: Sequence[Target] = (),
        error: ObserveError | None = None,
        responder: Responder | None = None,
    ) -> None:
        self.series: dict[str, Sequence[Series]] = dict(series or {})
        self._targets = list(targets)
        self.error = error
        self.responder = responder
        self.calls: list[tuple[str, str]] = []

    @property
    def endpoint(self) -> str:
        return "fake://prometheus"

    def _lookup(self, promql: str) -> Sequence[Series]:
        if self.error is not None:
            raise self.error
        if self.responder is not None:
            return self.responder(promql)
        return self.series.get(promql, [])

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        self.calls.append(("query", promql))
        out: list[Series] = []
        for s in self._lookup(promql):
            points = [p for p in s.points if at is None or p[0] <= at]
            if points:
                out.append(Series(labels=s.labels, points=[points[-1]]))
        return out

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        self.calls.append(("query_range", promql))
        out: list[Series] = []
        for s in self._lookup(promql):
            points = [p for p in s.points if start <= p[0] <= end]
            if points:
                out.append(Series(labels=s.labels, points=points))
        return out

    def targets(self) -> list[Target]:
        self.calls.append(("targets", ""))
        if self.error is not None:
            raise self.error
        return list(self._targets)


class FakeTraceSource:
    """In-memory traces for unit tests.

    ``visible_after`` makes a trace appear only from the n-th ``get`` of its id on
    (simulating Jaeger's asynchronous ingestion); ``error`` makes every call raise.
    """

    def __init__(
        self,
        traces: Iterable[Trace] = (),
        *,
        visible_after: Mapping[str, int] | None = None,
        error: ObserveError | None = None,
    ) -> None:
        self.traces = {t.trace_id: t for t in traces}
        self.visible_after = dict(visible_after or {})
        self.error = error
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, trace_id: str) -> Trace | None:
        with self._lock:
            self.calls[trace_id] = self.calls.get(trace_id, 0) + 1
            count = self.calls[trace_id]
        if self.error is not None:
            raise self.error
        if count < self.visible_after.get(trace_id, 0):
            return None
        return self.traces.get(trace_id)
