"""Integration tests: traces sent with the OpenTelemetry SDK come back from a real Jaeger v2.

The module starts /var/lib/resilience/bin/jaeger (memory storage, OTLP/HTTP receiver,
jaeger_query, healthcheckv2; port offset 400, state under /tmp/res-observe) and kills its
process group at the end. Spans mimic the shop: a gateway calling catalog and orders
through their proxies, orders waiting for a pool slot and timing out on PostgreSQL.
Set RESILIENCE_RECORD_FIXTURES=1 to refresh tests/unit/data/jaeger_orders_trace.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context

from resilience.observe import JaegerTraceSource, collect_traces, dependency_footprint, touches
from resilience.rundir.traces import DirectoryTraceSource, save_collection
from resilience.stack.config import Ports

pytestmark = pytest.mark.integration

PORTS = Ports().shifted(400)
STATE = Path(os.environ.get("RESILIENCE_OBSERVE_STATE", "/tmp/res-observe"))
JAEGER = Path(os.environ.get("RESILIENCE_HOME", "/var/lib/resilience")) / "bin" / "jaeger"
FIXTURE = Path(__file__).parents[1] / "unit" / "data" / "jaeger_orders_trace.json"
POSTGRES_PROXY = f"127.0.0.1:{PORTS.postgres_proxy}"
ORDERS_PROXY = ("127.0.0.1", PORTS.orders_proxy)
CATALOG_PROXY = ("127.0.0.1", PORTS.catalog_proxy)
MS = 1_000_000

T = TypeVar("T")

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {max_traces}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_http}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns a truthy value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Jaeger:
    query_url: str
    otlp_url: str


@contextlib.contextmanager
def run_jaeger(ports: Ports, max_traces: int) -> Iterator[Jaeger]:
    """A Jaeger v2 on ``ports`` whose memory store keeps ``max_traces`` traces, killed
    (its process group) on the way out."""
    if not JAEGER.is_file():
        pytest.fail(f"{JAEGER} is missing: run scripts/bootstrap (resilience stack install)")
    STATE.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="jaeger-", dir=STATE))
    config = directory / "config.yaml"
    config.write_text(
        CONFIG.format(
            health=ports.jaeger_health,
            query=ports.jaeger_query,
            query_grpc=ports.jaeger_query_grpc,
            otlp_http=ports.jaeger_otlp_http,
            max_traces=max_traces,
        )
    )
    env = {
        **os.environ,
        # Jaeger traces its own query API and would export to localhost:4317, which may be
        # another stack's collector; sample nothing and point it at our own port.
        "OTEL_TRACES_SAMPLER": "always_off",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports.jaeger_otlp_grpc}",
    }
    log = directory / "jaeger.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(JAEGER), "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"jaeger exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            url = f"http://127.0.0.1:{ports.jaeger_health}/status"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("jaeger to be healthy", healthy)
        yield Jaeger(
            query_url=f"http://127.0.0.1:{ports.jaeger_query}",
            otlp_url=f"http://127.0.0.1:{ports.jaeger_otlp_http}/v1/traces",
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def jaeger() -> Iterator[Jaeger]:
    with run_jaeger(PORTS, max_traces=10_000) as started:
        yield started


class ChosenIds(RandomIdGenerator):
    """Root spans get the trace id the test chose; span ids stay random."""

    def __init__(self) -> None:
        self.next_trace_id = 0

    def generate_trace_id(self) -> int:
        return self.next_trace_id


@dataclass
class Shop:
    """Three tracer providers (one per service) sharing the chosen-id generator."""

    ids: ChosenIds
    providers: dict[str, TracerProvider]

    def tracer(self, service: str) -> Tracer:
        return self.providers[service].get_tracer("resilience-tests")

    def flush(self) -> None:
        for provider in self.providers.values():
            provider.force_flush(10_000)


@pytest.fixture(scope="module")
def shop(jaeger: Jaeger) -> Iterator[Shop]:
    ids = ChosenIds()
    providers: dict[str, TracerProvider] = {}
    for service in ("gateway", "orders", "catalog"):
        provider = TracerProvider(
            resource=Resource.create({"service.name": service}), id_generator=ids
        )
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=jaeger.otlp_url, timeout=5), schedule_delay_millis=200
            )
        )
        providers[service] = provider
    try:
        yield Shop(ids, providers)
    finally:
        for provider in providers.values():
            provider.shutdown()


def http_call(
    shop: Shop,
    trace_id: int,
    route: str,
    upstream: str,
    proxy: tuple[str, int],
    *,
    server_delay_ms: int = 2,
    server: bool = True,
    inner: Callable[[Tracer, Any, int], None] | None = None,
) -> str:
    """gateway SERVER -> gateway CLIENT -> upstream SERVER (optionally late or missing)."""
    shop.ids.next_trace_id = trace_id
    gw = shop.tracer("gateway")
    t0 = time.time_ns()
    root = gw.start_span(
        f"GET {route}",
        kind=SpanKind.SERVER,
        start_time=t0,
        attributes={"http.request.method": "GET", "http.route": route},
    )
    client = gw.start_span(
        "GET",
        context=set_span_in_context(root),
        kind=SpanKind.CLIENT,
        start_time=t0 + 1 * MS,
        attributes={
            "http.request.method": "GET",
            "server.address": proxy[0],
            "server.port": proxy[1],
        },
    )
    end = t0 + 800 * MS
    if server:
        up = shop.tracer(upstream)
        start = t0 + (1 + server_delay_ms) * MS
        callee = up.start_span(
            f"GET {route}",
            context=set_span_in_context(client),
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={"http.request.method": "GET", "http.route": route},
        )
        if inner is not None:
            inner(up, callee, start)
        callee.end(end_time=end - 2 * MS)
    else:
        client.set_status(Status(StatusCode.ERROR, "ReadTimeout: timed out"))
    client.end(end_time=end - 1 * MS)
    root.end(end_time=end)
    return f"{trace_id:032x}"


def orders_inner(tracer: Tracer, server: Any, start: int) -> None:
    """orders: a 250 ms pool wait, then a PostgreSQL query that times out."""
    ctx = set_span_in_context(server)
    wait = tracer.start_span(
        "pool.acquire",
        context=ctx,
        start_time=start + 1 * MS,
        attributes={"pool": "orders.db", "pool.size": 2, "pool.in_use": 2, "pool.waiting": 3},
    )
    wait.set_attribute("pool.wait_seconds", 0.25)
    wait.end(end_time=start + 251 * MS)
    db = tracer.start_span(
        "INSERT orders",
        context=ctx,
        kind=SpanKind.CLIENT,
        start_time=start + 252 * MS,
        attributes={
            "db.system": "postgresql",
            "net.peer.name": "127.0.0.1",
            "net.peer.port": PORTS.postgres_proxy,
        },
    )
    db.add_event(
        "exception",
        {"exception.type": "TimeoutError", "exception.message": "query timed out"},
        timestamp=start + 350 * MS,
    )
    db.set_status(Status(StatusCode.ERROR, "TimeoutError"))
    db.end(end_time=start + 350 * MS)


@dataclass
class Sent:
    catalog: str
    orders: str
    queued: str


@pytest.fixture(scope="module")
def sent(jaeger: Jaeger, shop: Shop) -> Sent:
    base = int(time.time())
    catalog = http_call(shop, (base << 64) | 1, "/catalog/items", "catalog", CATALOG_PROXY)
    orders = http_call(
        shop,
        (base << 64) | 2,
        "/orders",
        "orders",
        ORDERS_PROXY,
        server_delay_ms=300,
        inner=orders_inner,
    )
    queued = http_call(
        shop, (base << 64) | 3, "/catalog/items", "catalog", CATALOG_PROXY, server=False
    )
    shop.flush()
    # Each service's spans reach Jaeger in their own export, and Jaeger's batch processor
    # stores each batch on its own: a trace can be fetched, whole from its root, before a
    # callee's spans are stored. Wait until every span sent is there.
    spans = {catalog: 3, orders: 5, queued: 2}
    with JaegerTraceSource(jaeger.query_url, timeout=5.0) as source:

        def stored() -> bool:
            traces = {tid: source.get(tid) for tid in spans}
            return all(t is not None and len(t.spans) == spans[tid] for tid, t in traces.items())

        wait_for("every span sent to be stored", stored)
    return Sent(catalog, orders, queued)


def test_sent_trace_comes_back_with_structure_and_services(jaeger: Jaeger, sent: Sent) -> None:
    """A trace sent with the SDK is fetched by id with its parent/child tree and services."""
    with JaegerTraceSource(jaeger.query_url, timeout=5.0) as source:
        got = collect_traces(source, [sent.orders], deadline_s=20, poll_interval_s=0.2)
    assert got.missing == {}
    trace = got.traces[sent.orders]
    assert trace.is_complete
    assert trace.services() == {"gateway", "orders"}
    root = trace.root()
    assert root is not None and root.kind == "server" and root.service == "gateway"
    assert trace.endpoint() == "GET /orders"
    (client,) = trace.children(root)
    assert client.kind == "client"
    (server,) = trace.children(client)
    assert (server.service, server.kind) == ("orders", "server")
    assert [s.name for s in trace.children(server)] == ["pool.acquire", "INSERT orders"]
    assert [s.name for s in trace.critical_path()] == [
        "GET /orders",
        "GET",
        "GET /orders",
        "INSERT orders",
    ]
    if os.environ.get("RESILIENCE_RECORD_FIXTURES") == "1":
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        raw = httpx.get(f"{jaeger.query_url}/api/v3/traces/{sent.orders}", timeout=5).json()
        FIXTURE.write_text(json.dumps(raw, indent=1) + "\n")


def test_waits_timeouts_and_late_server_spans_are_found(jaeger: Jaeger, sent: Sent) -> None:
    """The pool wait, the database timeout and the late server span survive the round trip."""
    with JaegerTraceSource(jaeger.query_url) as source:
        got = collect_traces(source, [sent.orders, sent.queued], deadline_s=20)
    orders = got.traces[sent.orders]
    (wait,) = orders.waits()
    assert (wait.kind, wait.resource) == ("pool", "orders.db")
    assert wait.duration_s == pytest.approx(0.25, abs=0.002)
    (timeout,) = orders.timeout_spans()
    assert timeout.db_system == "postgresql"
    assert timeout.peer_address == POSTGRES_PROXY
    (late,) = orders.server_gaps(late_after_s=0.1)
    assert late.kind == "late" and late.delay_s == pytest.approx(0.3, abs=0.002)
    queued = got.traces[sent.queued]
    (missing,) = queued.server_gaps()
    assert missing.kind == "missing"
    assert missing.peer == f"{CATALOG_PROXY[0]}:{CATALOG_PROXY[1]}"


def test_footprint_answers_which_endpoint_touches_the_postgres_proxy(
    jaeger: Jaeger, sent: Sent
) -> None:
    """Only the orders endpoint's footprint holds the postgres proxy address and db system."""
    with JaegerTraceSource(jaeger.query_url) as source:
        got = collect_traces(source, [sent.catalog, sent.orders], deadline_s=20)
    footprint = dependency_footprint(got.traces.values())
    assert touches(footprint, "GET /orders", address=POSTGRES_PROXY)
    assert touches(footprint, "GET /orders", db="postgresql")
    assert not touches(footprint, "GET /catalog/items", address=POSTGRES_PROXY)
    assert touches(footprint, "GET /catalog/items", service="catalog")


def test_traces_saved_to_the_run_directory_load_back(
    jaeger: Jaeger, sent: Sent, tmp_path: Path
) -> None:
    """Collected traces saved as traces/<id>.json and index.json; the directory source reads them."""
    unknown = "0123456789abcdef0123456789abcdef"
    requests: dict[str, str | None] = {
        sent.catalog: "GET /catalog/items",
        sent.orders: "GET /orders",
        unknown: "x",
    }
    traces_dir = tmp_path / "traces"
    with JaegerTraceSource(jaeger.query_url) as source:
        got = collect_traces(source, requests, deadline_s=3, poll_interval_s=0.5, settle_s=1)
    save_collection(got, requests, traces_dir)
    assert set(got.traces) == {sent.catalog, sent.orders}
    assert "not found" in got.missing[unknown]
    saved = DirectoryTraceSource(traces_dir)
    assert saved.ids() == sorted([sent.catalog, sent.orders])
    assert saved.get(sent.orders) == got.traces[sent.orders]
    assert saved.get(unknown) is None
    assert saved.endpoints() == {sent.catalog: "GET /catalog/items", sent.orders: "GET /orders"}
    assert saved.index()[unknown]["status"] == "missing"
    raw = json.loads((traces_dir / f"{sent.orders}.json").read_text())
    assert "resourceSpans" in raw


def test_jaeger_api_shapes_for_unknown_and_malformed_ids(jaeger: Jaeger) -> None:
    """An unknown id is None (404 'No traces found'); Jaeger lists the services it saw."""
    with JaegerTraceSource(jaeger.query_url) as source:
        assert source.get("00000000000000000000000000000001") is None
        wait_for("services to be listed", lambda: "gateway" in source.services())
    body = httpx.get(f"{jaeger.query_url}/api/v3/traces/{'0' * 31}1", timeout=5).json()
    assert body == {"error": {"httpCode": 404, "message": "No traces found"}}
