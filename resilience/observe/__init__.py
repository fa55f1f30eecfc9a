"""Observers: what Prometheus and the traces say about the target during and after a run.

Prometheus queries, per-phase checks and continuous guards; Jaeger trace fetching and the
span model detectors read. Every backend sits behind a small interface with a real httpx
implementation and a fake; an unreachable backend yields "not evaluated" with a reason,
never a hang. See docs/observe.md.
"""

from __future__ import annotations

from resilience.observe.connection import Connection
from resilience.observe.guards import (
    Guard,
    GuardMonitor,
    GuardStatus,
    GuardTrip,
    LiveStats,
    LoadGuard,
    LoadSnapshot,
    LoadStats,
    PromqlGuard,
)
from resilience.observe.otlp import parse_otlp_json, to_otlp_json
from resilience.observe.prometheus import (
    HttpPrometheusSource,
    PrometheusQueryError,
    PrometheusSource,
    PrometheusUnavailable,
    Series,
    Target,
)
from resilience.observe.spans import (
    DEFAULT_WAIT_RULES,
    WAIT_KIND,
    WAIT_RESOURCE,
    ServerGap,
    Span,
    SpanEvent,
    Trace,
    Wait,
    WaitRule,
    dependency_footprint,
    endpoints_touching,
    touches,
)
from resilience.observe.traces import (
    JaegerTraceSource,
    TraceBackendUnavailable,
    TraceCollection,
    TraceSource,
    collect_traces,
    tempo_source,
)

__all__ = [
    "DEFAULT_WAIT_RULES",
    "WAIT_KIND",
    "WAIT_RESOURCE",
    "Connection",
    "Guard",
    "GuardMonitor",
    "GuardStatus",
    "GuardTrip",
    "HttpPrometheusSource",
    "JaegerTraceSource",
    "LiveStats",
    "LoadGuard",
    "LoadSnapshot",
    "LoadStats",
    "PrometheusQueryError",
    "PrometheusSource",
    "PrometheusUnavailable",
    "PromqlGuard",
    "Series",
    "ServerGap",
    "Span",
    "SpanEvent",
    "Target",
    "Trace",
    "TraceBackendUnavailable",
    "TraceCollection",
    "TraceSource",
    "Wait",
    "WaitRule",
    "collect_traces",
    "dependency_footprint",
    "endpoints_touching",
    "parse_otlp_json",
    "tempo_source",
    "to_otlp_json",
    "touches",
]
