"""Unit tests for the OTLP parser and the span model, on a recorded Jaeger answer and on
hand-built traces."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from resilience.errors import ObserveError
from resilience.observe import (
    WAIT_KIND,
    WAIT_RESOURCE,
    Span,
    Trace,
    WaitRule,
    dependency_footprint,
    endpoints_touching,
    parse_otlp_json,
    to_otlp_json,
    touches,
)

RECORDED = Path(__file__).parent / "data" / "jaeger_orders_trace.json"
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
MS = 1_000_000


def recorded() -> Trace:
    trace = parse_otlp_json(json.loads(RECORDED.read_text()))
    assert trace is not None
    return trace


def span(  # noqa: PLR0917 - positional like the Span fields it fills
    span_id: str,
    parent: str | None,
    service: str,
    name: str,
    kind: Any = "internal",
    start_ms: int = 0,
    end_ms: int = 10,
    **attributes: Any,
) -> Span:
    status = attributes.pop("status", "unset")
    message = attributes.pop("message", "")
    return Span(
        trace_id=TID,
        span_id=span_id.rjust(16, "0"),
        parent_id=parent.rjust(16, "0") if parent else None,
        service=service,
        name=name,
        kind=kind,
        start_ns=start_ms * MS,
        end_ns=end_ms * MS,
        status_code=status,
        status_message=message,
        attributes={k.replace("__", "."): v for k, v in attributes.items()},
    )


def test_recorded_jaeger_answer_parses_into_a_complete_tree() -> None:
    """The real Jaeger v3 answer ({"result": ...}) parses with ids, kinds, times and services."""
    trace = recorded()
    assert len(trace.spans) == 5
    assert trace.is_complete
    assert trace.services() == {"gateway", "orders"}
    root = trace.root()
    assert root is not None
    assert (root.name, root.kind, root.service, root.parent_id) == (
        "GET /orders",
        "server",
        "gateway",
        None,
    )
    assert root.http_method == "GET" and root.http_route == "/orders"
    assert trace.duration_s == pytest.approx(0.8, abs=0.001)
    db = next(s for s in trace.spans if s.db_system)
    assert db.kind == "client"
    assert db.is_error and db.is_timeout
    assert db.events[0].name == "exception"
    assert db.peer is not None and db.peer[1] == 25832
    assert isinstance(db.attributes["net.peer.port"], int)
    assert trace.raw is not None and "resourceSpans" in trace.raw


def test_recorded_trace_helpers_explain_the_slow_order() -> None:
    """Waits, late server span, critical path and per-service longest spans on real data."""
    trace = recorded()
    (wait,) = trace.waits()
    assert (wait.kind, wait.resource, wait.failed) == ("pool", "orders.db", False)
    (gap,) = trace.server_gaps()
    assert gap.kind == "late" and gap.delay_s == pytest.approx(0.3, abs=0.001)
    assert gap.server is not None and gap.server.service == "orders"
    assert [s.name for s in trace.critical_path()][-1] == "INSERT orders"
    longest = trace.longest_span_per_service()
    assert longest["gateway"].name == "GET /orders"
    assert [s.name for s in trace.spans_by_service()["orders"]] == [
        "GET /orders",
        "pool.acquire",
        "INSERT orders",
    ]
    assert [s.name for s in trace.error_spans()] == ["INSERT orders"]


def test_round_trip_through_to_otlp_json_keeps_every_span() -> None:
    """to_otlp_json writes OTLP JSON that parses back to an equal trace."""
    trace = recorded()
    again = parse_otlp_json(json.loads(json.dumps(to_otlp_json(trace))))
    assert again == trace


def test_tempo_shapes_with_base64_ids_and_enum_names_parse() -> None:
    """Tempo's {"batches": ...} with base64 ids and enum names reads like Jaeger's answer."""
    trace_bytes = bytes.fromhex(TID)
    data = {
        "batches": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]
                },
                "instrumentationLibrarySpans": [
                    {
                        "spans": [
                            {
                                "traceId": base64.b64encode(trace_bytes).decode(),
                                "spanId": base64.b64encode(
                                    bytes.fromhex("00f067aa0ba902b7")
                                ).decode(),
                                "parentSpanId": "",
                                "name": "root",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": 1000,
                                "endTimeUnixNano": 2000,
                                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                                "attributes": [
                                    {"key": "ok", "value": {"boolValue": True}},
                                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                                    {
                                        "key": "tags",
                                        "value": {"arrayValue": {"values": [{"stringValue": "a"}]}},
                                    },
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    trace = parse_otlp_json(data, TID)
    assert trace is not None
    (root,) = trace.spans
    assert (root.trace_id, root.span_id, root.parent_id) == (TID, "00f067aa0ba902b7", None)
    assert (root.kind, root.status_code, root.status_message) == ("server", "error", "boom")
    assert root.attributes == {"ok": True, "ratio": 0.5, "tags": ["a"]}
    wrapped = parse_otlp_json({"trace": {"resourceSpans": data["batches"]}})
    assert wrapped == trace


def test_empty_and_malformed_answers() -> None:
    """No spans is None; a broken span or several traces without an id is an ObserveError."""
    assert parse_otlp_json({"result": {"resourceSpans": []}}) is None
    with pytest.raises(ObserveError, match="malformed"):
        parse_otlp_json({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]})
    two = to_otlp_json(
        Trace(TID, (span("1", None, "a", "x"),)),
    )
    other = to_otlp_json(Trace("f" * 32, (span("2", None, "b", "y"),)))
    other["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "f" * 32
    both = {"resourceSpans": two["resourceSpans"] + other["resourceSpans"]}
    with pytest.raises(ObserveError, match="2 traces"):
        parse_otlp_json(both)
    picked = parse_otlp_json(both, "f" * 32)
    assert picked is not None and [s.service for s in picked.spans] == ["b"]


def test_root_of_an_incomplete_trace_is_the_earliest_orphan() -> None:
    """Without the real root, root() falls back to the earliest span whose parent is absent."""
    trace = Trace(
        TID,
        (
            span("2", "1", "orders", "late orphan", start_ms=5),
            span("3", "1", "orders", "early orphan", start_ms=2),
            span("4", "3", "orders", "child", start_ms=3),
        ),
    )
    assert not trace.is_complete
    root = trace.root()
    assert root is not None and root.name == "early orphan"
    assert [s.name for s in trace.roots()] == ["early orphan", "late orphan"]


def test_critical_path_follows_the_last_finishing_child_within_its_parent() -> None:
    """The critical path skips a child that outlives its parent (fire-and-forget)."""
    trace = Trace(
        TID,
        (
            span("1", None, "gw", "root", start_ms=0, end_ms=100),
            span("2", "1", "gw", "fast", start_ms=1, end_ms=20),
            span("3", "1", "gw", "slow", start_ms=21, end_ms=95),
            span("4", "1", "gw", "async", start_ms=30, end_ms=300),
            span("5", "3", "db", "query", start_ms=22, end_ms=90),
        ),
    )
    assert [s.name for s in trace.critical_path()] == ["root", "slow", "query"]


def test_waits_are_attribute_driven_with_configurable_rules() -> None:
    """resilience.wait.* marks any wait; custom rules recognise other conventions."""
    trace = Trace(
        TID,
        (
            span("1", None, "gw", "root", end_ms=100),
            span(
                "2", "1", "gw", "acquire", end_ms=40, **{WAIT_KIND: "pool", WAIT_RESOURCE: "http"}
            ),
            span("3", "1", "gw", "lock", end_ms=1, **{WAIT_KIND: "lock"}),
            span("4", "1", "gw", "sem", end_ms=30, semaphore__name="workers"),
        ),
    )
    assert [(w.kind, w.resource) for w in trace.waits()] == [("pool", "http"), ("lock", None)]
    assert [w.span.name for w in trace.waits(min_duration_s=0.01)] == ["acquire"]
    rule = WaitRule("semaphore.name", kind="worker", resource_attribute="semaphore.name")
    assert [(w.kind, w.resource) for w in trace.waits(rules=[rule])] == [("worker", "workers")]


def test_server_gaps_ignore_database_and_non_http_clients() -> None:
    """Only HTTP client spans can miss a server span; db clients are never gaps."""
    trace = Trace(
        TID,
        (
            span("1", None, "gw", "root", "server", end_ms=100),
            span("2", "1", "gw", "GET", "client", 1, 50, http__method="GET"),
            span("3", "1", "orders", "SELECT", "client", 1, 50, db__system="postgresql"),
            span("4", "1", "gw", "publish", "client", 1, 50),
            span("5", "1", "gw", "GET", "client", 60, 90, http__request__method="GET"),
            span("6", "5", "catalog", "GET /items", "server", 61, 89),
        ),
    )
    (gap,) = trace.server_gaps()
    assert gap.kind == "missing" and gap.client.span_id.endswith("2")
    assert trace.server_gaps(late_after_s=0.0)[-1].kind == "late"


def test_timeout_detection_reads_status_exception_and_error_type() -> None:
    """A span is a timeout when its error status, exception or error.type says so."""
    by_status = span("1", None, "a", "x", status="error", message="ReadTimeout")
    by_type = span("2", None, "a", "x", status="error", error__type="PoolTimeout")
    plain_error = span("3", None, "a", "x", status="error", message="500")
    ok_but_named = span("4", None, "a", "x", message="timeout")
    assert by_status.is_timeout and by_type.is_timeout
    assert not plain_error.is_timeout and not ok_but_named.is_timeout


def test_dependency_footprint_by_root_route_or_given_endpoint() -> None:
    """Footprints group by the load engine's endpoint name, else the root's METHOD route."""
    catalog = Trace(
        "a" * 32,
        (
            span("1", None, "gateway", "GET /catalog/items", "server",
                 http__request__method="GET", http__route="/catalog/items"),
            span("2", "1", "gateway", "GET", "client", server__address="127.0.0.1",
                 server__port=28002),
        ),
    )  # fmt: skip
    orders = Trace(
        "b" * 32,
        (
            span("1", None, "gateway", "POST /orders", "server"),
            span("2", "1", "orders", "INSERT", "client", db__system="postgresql",
                 net__peer__name="127.0.0.1", net__peer__port=25432),
        ),
    )  # fmt: skip
    footprint = dependency_footprint([catalog, orders], {"b" * 32: "POST /orders"})
    assert footprint["GET /catalog/items"] == {"service:gateway", "peer:127.0.0.1:28002"}
    assert footprint["POST /orders"] == {
        "service:gateway",
        "service:orders",
        "db:postgresql",
        "peer:127.0.0.1:25432",
    }
    assert touches(footprint, "POST /orders", address="127.0.0.1:25432")
    assert not touches(footprint, "GET /catalog/items", address="127.0.0.1:25432")
    assert not touches(footprint, "nope", service="gateway")
    assert endpoints_touching(footprint, "service:gateway") == {
        "GET /catalog/items",
        "POST /orders",
    }


def test_spans_and_traces_are_hashable_by_their_ids() -> None:
    """Spans and traces can go in sets and dict keys despite their attribute dicts."""
    trace = recorded()
    assert len(set(trace.spans)) == 5
    assert {trace: 1}[recorded()] == 1
