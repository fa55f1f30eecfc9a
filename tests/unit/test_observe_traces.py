"""Unit tests for trace fetching: the Jaeger client's answers and failures, polling for
late traces, saving to and reading from a run directory."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from resilience.errors import ObserveError
from resilience.observe import (
    Connection,
    JaegerTraceSource,
    Span,
    Trace,
    TraceBackendUnavailable,
    collect_traces,
    parse_otlp_json,
    tempo_source,
    to_otlp_json,
)
from resilience.rundir.traces import DirectoryTraceSource, load_trace, save_collection
from resilience.stack.config import Ports
from resilience.testing.observe_fakes import FakeTraceSource

PORTS = Ports().shifted(400)
CLOSED_PORT = PORTS.catalog_proxy
SILENT_PORT = PORTS.orders_proxy
RECORDED = Path(__file__).parent / "data" / "jaeger_orders_trace.json"


@contextmanager
def silent_server(port: int) -> Iterator[str]:
    """A socket that accepts connections (kernel backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        sock.close()


def recorded_body() -> dict[str, object]:
    data = json.loads(RECORDED.read_text())
    assert isinstance(data, dict)
    return data


def recorded_id() -> str:
    trace = parse_otlp_json(recorded_body())
    assert trace is not None
    return trace.trace_id


def simple_trace(trace_id: str, *, complete: bool = True) -> Trace:
    """One server span; incomplete = a second span whose parent has not arrived yet."""
    spans = [Span(trace_id, "0000000000000001", None, "gateway", "GET /x", "server", 0, 10)]
    if not complete:
        spans.append(
            Span(trace_id, "0000000000000002", "ffffffffffffffff", "orders", "q", "client", 2, 8)
        )
    return Trace(trace_id, tuple(spans))


def jaeger(handler: object) -> JaegerTraceSource:
    return JaegerTraceSource("http://jaeger.test", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_jaeger_answer_is_unwrapped_and_parsed() -> None:
    """GET /api/v3/traces/{id} answering {"result": ...} gives the parsed trace."""
    tid = recorded_id()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=recorded_body())

    trace = jaeger(handler).get(tid.upper())
    assert seen == [f"/api/v3/traces/{tid}"]
    assert trace is not None and trace.trace_id == tid and len(trace.spans) == 5


def test_jaeger_404_is_none_and_other_errors_name_the_message() -> None:
    """Jaeger's 404 'No traces found' is None; a 400 raises with Jaeger's message."""

    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"httpCode": 404, "message": "No traces found"}})

    def bad(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": {"httpCode": 400, "message": "malformed parameter trace_id"}}
        )

    assert jaeger(not_found).get("0" * 31 + "1") is None
    with pytest.raises(ObserveError, match="HTTP 400: malformed parameter trace_id"):
        jaeger(bad).get("0" * 31 + "1")
    with pytest.raises(ObserveError, match="not a 16-byte id"):
        jaeger(not_found).get("zzz")


def test_tempo_source_asks_for_json_with_the_users_credentials() -> None:
    """Tempo: /api/traces/{id} (v1) or /api/v2/traces/{id}, Accept JSON, the connection's
    headers and bearer token; its {"batches": ...} answer parses like Jaeger's."""
    tid = recorded_id()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"batches": recorded_body()["result"]["resourceSpans"]})

    connection = Connection(headers={"X-Scope-OrgID": "team-a"}, bearer="tok")
    for api, path in (("v1", f"/api/traces/{tid}"), ("v2", f"/api/v2/traces/{tid}")):
        source = tempo_source(
            "http://tempo.test", api=api, connection=connection,
            transport=httpx.MockTransport(handler),
        )  # fmt: skip
        trace = source.get(tid)
        assert trace is not None and len(trace.spans) == 5
        assert seen[-1].url.path == path
        assert seen[-1].headers["Accept"] == "application/json"
        assert seen[-1].headers["Authorization"] == "Bearer tok"
        assert seen[-1].headers["X-Scope-OrgID"] == "team-a"


def test_trace_backend_check_names_refused_credentials() -> None:
    """check() asks the health path; a 401 says to check headers and auth."""
    ok = JaegerTraceSource(
        "http://jaeger.test", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={}))
    )
    ok.check()
    refused = tempo_source(
        "http://tempo.test", transport=httpx.MockTransport(lambda r: httpx.Response(401))
    )
    with pytest.raises(ObserveError, match=r"Tempo at http://tempo.test/api/echo .*HTTP 401.*auth"):
        refused.check()


def test_jaeger_on_a_closed_port_is_unavailable() -> None:
    """Nothing listening: TraceBackendUnavailable naming the endpoint."""
    source = JaegerTraceSource(f"http://127.0.0.1:{CLOSED_PORT}", timeout=2.0)
    with pytest.raises(TraceBackendUnavailable, match=f"127.0.0.1:{CLOSED_PORT}"):
        source.get("0" * 31 + "1")


def test_collect_against_a_silent_server_is_bounded() -> None:
    """A backend that never answers costs about one timeout; every id is 'not evaluated'."""
    ids = [f"{i:032x}" for i in range(1, 9)]
    with silent_server(SILENT_PORT) as url:
        source = JaegerTraceSource(url, timeout=0.5)
        began = time.monotonic()
        got = collect_traces(source, ids, concurrency=2, deadline_s=30)
        elapsed = time.monotonic() - began
    assert elapsed < 3.0
    assert got.traces == {}
    assert set(got.missing) == set(ids)
    assert all(r.startswith("not evaluated") for r in got.missing.values())
    assert got.unavailable


def test_collect_polls_until_a_trace_is_ingested() -> None:
    """A trace that appears only on the third ask is still collected before the deadline."""
    tid = "a" * 32
    source = FakeTraceSource([simple_trace(tid)], visible_after={tid: 3})
    got = collect_traces(source, [tid], deadline_s=5, poll_interval_s=0.01)
    assert set(got.traces) == {tid}
    assert source.calls[tid] == 3


def test_collect_gives_up_on_unknown_ids_at_the_deadline() -> None:
    """An id never ingested is reported missing once the deadline passes."""
    source = FakeTraceSource()
    began = time.monotonic()
    got = collect_traces(source, ["b" * 32], deadline_s=0.3, poll_interval_s=0.05)
    assert 0.25 <= time.monotonic() - began < 2.0
    assert "not found after" in got.missing["b" * 32]


def test_incomplete_trace_is_retried_for_the_settle_time_then_kept_as_partial() -> None:
    """A trace without its root is asked again for settle_s, then returned marked partial."""
    tid = "c" * 32
    source = FakeTraceSource([simple_trace(tid, complete=False)])
    got = collect_traces(source, [tid], deadline_s=5, poll_interval_s=0.02, settle_s=0.1)
    assert got.partial == {tid}
    assert source.calls[tid] >= 3


def test_invalid_ids_and_fetch_errors_are_reported_not_raised() -> None:
    """A malformed id and a backend error become 'missing' entries with reasons."""
    source = FakeTraceSource(error=ObserveError("HTTP 500: storage error"))
    got = collect_traces(source, ["nope", "d" * 32], deadline_s=1)
    assert "invalid trace id" in got.missing["nope"]
    assert "storage error" in got.missing["d" * 32]
    assert not got.unavailable


def test_saved_run_directory_reads_back_with_endpoints(tmp_path: Path) -> None:
    """Collected traces are saved as OTLP JSON with an index; the directory source reloads."""
    tid = recorded_id()
    recorded = parse_otlp_json(recorded_body())
    assert recorded is not None
    other = simple_trace("e" * 32)
    source = FakeTraceSource([recorded, other])
    traces_dir = tmp_path / "traces"
    first = {tid: "POST /orders"}
    save_collection(collect_traces(source, first), first, traces_dir)
    second: dict[str, str | None] = {other.trace_id: "GET /x", "f" * 32: None}
    save_collection(collect_traces(source, second, deadline_s=0.1), second, traces_dir)
    saved = DirectoryTraceSource(traces_dir)
    assert saved.ids() == sorted([tid, other.trace_id])
    assert saved.get(tid) == recorded
    assert saved.get(other.trace_id) == other
    assert saved.endpoints() == {tid: "POST /orders", other.trace_id: "GET /x"}
    assert saved.index()["f" * 32]["status"] == "missing"
    assert {t.trace_id for t in saved.all()} == {tid, other.trace_id}
    # The file holds the OTLP JSON as Jaeger sent it (unwrapped from "result").
    raw = json.loads((traces_dir / f"{tid}.json").read_text())
    assert raw == {"resourceSpans": recorded_body()["result"]["resourceSpans"]}  # type: ignore[index]
    # A trace built in memory (no raw JSON) is written with to_otlp_json.
    assert json.loads((traces_dir / f"{other.trace_id}.json").read_text()) == to_otlp_json(other)


def test_corrupt_trace_file_is_an_observe_error(tmp_path: Path) -> None:
    """A trace file that is not JSON raises ObserveError naming the file."""
    path = tmp_path / f"{'a' * 32}.json"
    path.write_text("{not json")
    with pytest.raises(ObserveError, match=str(path)):
        load_trace(path)
    with pytest.raises(ObserveError):
        DirectoryTraceSource(tmp_path).get("a" * 32)


def test_a_required_client_span_is_waited_for() -> None:
    """A trace that must hold our client span is asked again until that span has arrived:
    its server span alone (a remote root) does not count as complete."""
    tid = "a1" * 16
    server_only = Trace(
        tid,
        (Span(tid, "0000000000000002", "00000000000000c1", "gateway", "GET /x", "server", 5, 9),),
    )
    with_client = Trace(
        tid,
        (
            Span(tid, "00000000000000c1", None, "resilience-load", "GET /x", "client", 0, 10),
            *server_only.spans,
        ),
    )

    class Arriving(FakeTraceSource):
        def get(self, trace_id: str) -> Trace | None:
            super().get(trace_id)
            return with_client if self.calls[trace_id] >= 3 else server_only

    source = Arriving()
    got = collect_traces(
        source, [tid], deadline_s=5, poll_interval_s=0.01, require_spans={tid: "00000000000000C1"}
    )
    assert got.traces[tid] is with_client and not got.partial
    assert source.calls[tid] == 3
