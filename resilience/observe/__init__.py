"""Observers: what Prometheus and the traces say about the target during and after a run.

Prometheus queries, per-phase checks and continuous guards; Jaeger trace fetching and the
span model detectors read. Every backend sits behind a small interface with a real httpx
implementation and a fake; an unreachable backend yields "not evaluated" with a reason,
never a hang. See docs/observe.md.
"""

from __future__ import annotations

from resilience.observe.checks import (
    Check,
    CheckResult,
    PhaseWindow,
    ShopMetrics,
    builtin_shop_checks,
    evaluate_checks,
    judge,
    save_range,
)
from resilience.observe.expect import Expectation, GradedExpectation, Threshold
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
    FakePrometheusSource,
    HttpPrometheusSource,
    PrometheusQueryError,
    PrometheusSource,
    PrometheusUnavailable,
    Series,
    Target,
    load_series,
    save_series,
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
    DirectoryTraceSource,
    FakeTraceSource,
    JaegerTraceSource,
    TraceBackendUnavailable,
    TraceCollection,
    TraceSource,
    collect_traces,
    load_trace,
    save_trace,
)

__all__ = [
    "DEFAULT_WAIT_RULES",
    "WAIT_KIND",
    "WAIT_RESOURCE",
    "Check",
    "CheckResult",
    "DirectoryTraceSource",
    "Expectation",
    "FakePrometheusSource",
    "FakeTraceSource",
    "GradedExpectation",
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
    "PhaseWindow",
    "PrometheusQueryError",
    "PrometheusSource",
    "PrometheusUnavailable",
    "PromqlGuard",
    "Series",
    "ServerGap",
    "ShopMetrics",
    "Span",
    "SpanEvent",
    "Target",
    "Threshold",
    "Trace",
    "TraceBackendUnavailable",
    "TraceCollection",
    "TraceSource",
    "Wait",
    "WaitRule",
    "builtin_shop_checks",
    "collect_traces",
    "dependency_footprint",
    "endpoints_touching",
    "evaluate_checks",
    "judge",
    "load_series",
    "load_trace",
    "parse_otlp_json",
    "save_range",
    "save_series",
    "save_trace",
    "to_otlp_json",
    "touches",
]
