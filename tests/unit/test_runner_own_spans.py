"""The toolkit's own spans: a client span per kept request with the request's own ids, and
a run trace (run, phases, faults), exported through an in-memory exporter."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from resilience.rundir.journal import FaultRecord, JournalData
from resilience.rundir.records import TraceRef
from resilience.runner.own_spans import export_own_spans, run_trace_id
from resilience.vocabulary import Phase

T0 = 1_800_000_000.0
PHASES = [Phase("baseline", 2.0, 6.0), Phase("fault", 6.0, 14.0), Phase("recovery", 14.0, 24.0)]


def _journal() -> JournalData:
    return JournalData(
        experiment="db-hang",
        started_at="2027-01-15T08:00:00Z",
        t0=T0,
        load_end=24.0,
        faults=[
            FaultRecord(
                index=0, proxy="postgres", type="hang", scheduled_at=6.0, scheduled_end=14.0,
                applied_at=6.004, healed_at=14.01,
            )
        ],
    )  # fmt: skip


REFS = [
    TraceRef(0, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "GET /catalog/items",
             t=8.25, latency=4.75, outcome="ok", status=200, reason="slow"),
    TraceRef(1, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "POST /orders",
             t=9.5, latency=5.0, outcome="timeout", status=0, reason="failed"),
    TraceRef(1, "", "", "custom", t=1.0, latency=0.1, outcome="ok", status=200, reason="sampled"),
]  # fmt: skip


def test_client_spans_carry_the_requests_own_ids_and_times() -> None:
    """Each kept request becomes a parentless CLIENT span with its trace and span id,
    starting at the intended send time and ending at completion; failures are errors."""
    memory = InMemorySpanExporter()
    result = export_own_spans(
        _journal(), PHASES, REFS, "http://unused", run_name="run-a", exporter=memory
    )
    spans = {
        s.context.trace_id: s for s in memory.get_finished_spans() if s.kind == SpanKind.CLIENT
    }
    assert len(spans) == 2  # the ref without ids is skipped
    catalog = spans[int(REFS[0].trace_id, 16)]
    assert catalog.context.span_id == int(REFS[0].span_id, 16)
    assert catalog.parent is None
    assert catalog.name == "GET /catalog/items"
    assert catalog.start_time == int((T0 + 8.25) * 1e9)
    assert catalog.end_time == int((T0 + 13.0) * 1e9)
    assert catalog.attributes["http.request.method"] == "GET"
    assert catalog.resource.attributes["service.name"] == "resilience-load"
    timeout = spans[int(REFS[1].trace_id, 16)]
    assert timeout.status.status_code == StatusCode.ERROR
    assert result.client_spans == {r.trace_id: r.span_id for r in REFS[:2]}
    assert (
        result.evidence.status == "gathered" and result.evidence.gathered == 7
    )  # 2 clients, run, 3 phases, fault


def test_run_trace_has_the_run_its_phases_and_the_fault() -> None:
    """One run trace (id from the run's name): root, three phases, the fault under the
    fault phase from its apply to its heal."""
    memory = InMemorySpanExporter()
    result = export_own_spans(
        _journal(), PHASES, [], "http://unused", run_name="run-a", exporter=memory
    )
    spans = memory.get_finished_spans()
    assert result.run_trace_id == run_trace_id("run-a")
    assert {s.context.trace_id for s in spans} == {int(run_trace_id("run-a"), 16)}
    by_name = {s.name: s for s in spans}
    root = by_name["run db-hang"]
    assert root.parent is None and root.end_time == int((T0 + 24.0) * 1e9)
    for phase in PHASES:
        span = by_name[f"phase {phase.name}"]
        assert span.parent is not None and span.parent.span_id == root.context.span_id
    fault = by_name["fault hang on postgres"]
    assert fault.parent is not None
    assert fault.parent.span_id == by_name["phase fault"].context.span_id
    assert fault.start_time == int((T0 + 6.004) * 1e9)
    assert fault.end_time == int((T0 + 14.01) * 1e9)


def test_a_refusing_backend_costs_nothing_but_the_spans() -> None:
    """When the exporter fails, the result says so and names no client span to wait for."""

    class Refusing(InMemorySpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.FAILURE

    result = export_own_spans(
        _journal(), PHASES, REFS, "http://127.0.0.1:1/v1/traces", run_name="r", exporter=Refusing()
    )
    assert result.evidence.status == "unavailable"
    assert "took none of" in (result.evidence.reason or "")
    assert result.client_spans == {}
