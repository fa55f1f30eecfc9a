"""timeout: client timeouts, spans ending in timeouts, and timeout inversions."""

from __future__ import annotations

from pathlib import Path

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.timeout import TimeoutDetector
from resilience.observe.spans import Trace
from resilience.rundir.records import TraceRef
from resilience.testing.analysis import (
    LOAD_SPAN_ID,
    LoadBuilder,
    TraceBuilder,
    fault_phases,
    make_context,
    ref,
    shop_experiment,
    shop_trace,
)

ITEMS = "GET /catalog/items"
POST = "POST /orders"
PHASES = fault_phases(end=38, fault=(10, 22))


def healthy_load(seconds: range = range(38)) -> LoadBuilder:
    load = LoadBuilder()
    load.add(ITEMS, seconds, ok=10)
    load.add(POST, seconds, ok=5)
    return load


def context(
    tmp_path: Path,
    load: LoadBuilder,
    *,
    traces: list[Trace] | None = None,
    refs: list[TraceRef] | None = None,
    fault: bool = True,
    extra: str = "",
) -> AnalysisContext:
    return make_context(
        shop_experiment(extra, fault=fault),
        load.view,
        PHASES if fault else fault_phases(end=38),
        run_dir=tmp_path,
        traces=traces or [],
        trace_refs=refs or [],
        builtin_shop=True,
    )


def test_client_timeouts_are_counted_per_endpoint_and_phase(tmp_path: Path) -> None:
    """Requests that hit the client timeout make a warning with counts per endpoint and phase."""
    load = healthy_load(range(10))
    load.add(POST, range(10, 22), ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    load.add(ITEMS, range(10, 13), ok=8, errors={"timeout": 1}, error_latency_ms=5000)
    timed_out = shop_trace(POST, 12.0, 20.0, upstream="orders")
    refs = [ref(timed_out, POST, 12.0, latency=5.0, outcome="timeout", status=0)]
    [finding, inversion] = TimeoutDetector().detect(
        context(
            tmp_path,
            load,
            traces=[timed_out],
            refs=refs,
            extra="detectors: {timeout: {params: {min_inversions: 1}}}\n",
        )
    )
    assert finding.severity == "warning" and not finding.fails_run
    numbers = finding.evidence["numbers"]
    assert numbers["client timeouts"] == 27
    assert numbers[f"{POST} fault timeouts"] == 24
    assert numbers[f"{ITEMS} fault timeouts"] == 3
    assert numbers["client timeout s"] == 5.0
    assert finding.evidence["endpoints"] == [ITEMS, POST]
    assert finding.evidence["seconds"] == list(range(10, 22))
    assert finding.evidence["trace_ids"] == [timed_out.trace_id]
    # The gateway worked on for 15 s after the client's 5 s timeout: an inversion.
    assert inversion.summary.startswith("Timeout inversion in 1 calls: client → shop-gateway")
    assert inversion.evidence["span"]["service"] == "shop-gateway"
    assert "kept working 15.00 s" in inversion.evidence["span"]["reason"]


def test_control_run_has_no_timeout_findings(tmp_path: Path) -> None:
    """A healthy run with healthy traces yields nothing."""
    traces = [shop_trace(ITEMS, float(s)) for s in range(0, 38, 5)]
    refs = [ref(t, ITEMS, float(s)) for t, s in zip(traces, range(0, 38, 5), strict=True)]
    ctx = context(tmp_path, healthy_load(), traces=traces, refs=refs, fault=False)
    assert TimeoutDetector().detect(ctx) == []


def test_a_stray_client_timeout_is_below_the_minimum(tmp_path: Path) -> None:
    """Two client timeouts in a run stay under min_client_timeouts (3)."""
    load = healthy_load()
    load.add(ITEMS, range(5, 7), ok=0, errors={"timeout": 1}, error_latency_ms=5000)
    assert TimeoutDetector().detect(context(tmp_path, load, fault=False)) == []


def deadline_trace(send_t: float) -> Trace:
    """Hardened: orders' statement deadline fires after 1 s, the gateway answers 504."""
    b = TraceBuilder()
    root = b.add(
        "shop-gateway",
        POST,
        send_t,
        send_t + 1.02,
        kind="server",
        parent=LOAD_SPAN_ID,
        attributes={"http.request.method": "POST", "http.route": "/orders"},
    )
    client = b.add(
        "shop-gateway",
        "POST",
        send_t + 0.001,
        send_t + 1.01,
        kind="client",
        parent=root,
        attributes={
            "http.request.method": "POST",
            "server.address": "127.0.0.1",
            "server.port": 28001,
        },
    )
    server = b.add(
        "shop-orders",
        POST,
        send_t + 0.002,
        send_t + 1.005,
        kind="server",
        parent=client,
        error="database: insert order did not finish within its deadline (1.0 s)",
        attributes={"http.request.method": "POST", "http.route": "/orders"},
    )
    b.add(
        "shop-orders",
        "INSERT orders",
        send_t + 0.003,
        send_t + 1.003,
        kind="client",
        parent=server,
        error="TimeoutError: timed out",
        attributes={"db.system": "postgresql"},
    )
    return b.build()  # fmt: skip


def test_spans_ending_in_timeouts_are_an_info_finding(tmp_path: Path) -> None:
    """Deadlines firing (spans with timeout errors) are reported as info, naming the span."""
    traces = [deadline_trace(11.0 + i) for i in range(4)]
    refs = [
        ref(t, POST, 11.0 + i, latency=1.02, outcome="5xx", status=504)
        for i, t in enumerate(traces)
    ]
    [finding] = TimeoutDetector().detect(
        context(tmp_path, healthy_load(), traces=traces, refs=refs)
    )
    assert finding.severity == "info"
    assert finding.evidence["numbers"]["traces with timeout spans"] == 4
    assert finding.evidence["numbers"]["traces in fault"] == 4
    # The deepest timeout (where the deadline fired) is the example.
    assert finding.evidence["span"]["name"] == "INSERT orders"
    assert finding.evidence["endpoints"] == [POST]
    assert finding.evidence["seconds"] == [12, 13, 14, 15]


def test_callee_outliving_its_caller_is_an_inversion(tmp_path: Path) -> None:
    """A gateway giving up after 1.4 s while orders works on for 3 s is an inversion."""
    traces = []
    for i in range(2):
        b = TraceBuilder()
        t = 11.0 + i
        root = b.add("shop-gateway", POST, t, t + 1.45, kind="server", parent=LOAD_SPAN_ID)
        client = b.add(
            "shop-gateway",
            "POST",
            t,
            t + 1.4,
            kind="client",
            parent=root,
            error="ReadTimeout",
            attributes={
                "http.request.method": "POST",
                "server.port": 28001,
                "server.address": "127.0.0.1",
            },
        )
        b.add("shop-orders", POST, t + 0.01, t + 3.0, kind="server", parent=client)  # fmt: skip
        traces.append(b.build())
    findings = TimeoutDetector().detect(context(tmp_path, healthy_load(), traces=traces))
    [inversion] = [f for f in findings if f.summary.startswith("Timeout inversion")]
    assert "shop-gateway → shop-orders (early) (2)" in inversion.summary
    assert inversion.evidence["numbers"]["inversions"] == 2
    assert inversion.evidence["span"]["service"] == "shop-orders"


def test_caller_waiting_long_after_its_callee_is_an_inversion(tmp_path: Path) -> None:
    """A caller without a deadline waiting 8 s on a callee that answered in 10 ms."""
    traces = []
    for i in range(2):
        b = TraceBuilder()
        t = 11.0 + i
        root = b.add("shop-gateway", ITEMS, t, t + 8.0, kind="server", parent=LOAD_SPAN_ID)
        client = b.add(
            "shop-gateway",
            "GET",
            t,
            t + 8.0,
            kind="client",
            parent=root,
            attributes={
                "http.request.method": "GET",
                "server.port": 28002,
                "server.address": "127.0.0.1",
            },
        )
        b.add("shop-catalog", ITEMS, t + 0.001, t + 0.011, kind="server", parent=client)  # fmt: skip
        traces.append(b.build())
    [inversion] = TimeoutDetector().detect(context(tmp_path, healthy_load(), traces=traces))
    assert "(late)" in inversion.summary
    assert inversion.evidence["span"]["service"] == "shop-gateway"
    assert "waited 7.99 s longer" in inversion.evidence["span"]["reason"]


def test_no_traces_still_reports_client_timeouts(tmp_path: Path) -> None:
    """Without traces, client-side timeouts are still a finding (no span evidence)."""
    load = healthy_load(range(10))
    load.add(POST, range(10, 22), ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    [finding] = TimeoutDetector().detect(context(tmp_path, load))
    assert "span" not in finding.evidence
    assert finding.evidence["numbers"]["client timeouts"] == 24
