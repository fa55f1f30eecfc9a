"""Honest evidence: depends_on as the cascade's footprint (and cross-checked against traces),
no trace id cited unless saved, "the target exported no spans" said plainly, a drained pool
told from an exhausted one, and no bare "recovery: never"."""

from __future__ import annotations

from pathlib import Path

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.cascading_failure import CascadingFailureDetector, footprint
from resilience.analysis.detectors.pool_exhaustion import PoolExhaustionDetector
from resilience.analysis.pipeline import run_detectors
from resilience.cli.run import recovery_line
from resilience.experiment import parse_experiment
from resilience.observe.prometheus import Series
from resilience.observe.spans import Trace
from resilience.report.summary import evidence_notes
from resilience.rundir.evidence import Evidence, SourceEvidence
from resilience.rundir.journal import EventRecord, JournalData, RecoveryRecord
from resilience.rundir.records import TraceRef
from resilience.testing.analysis import (
    SHOP_PORTS,
    T0,
    LoadBuilder,
    fault_phases,
    make_context,
    new_trace_id,
    ref,
    shop_trace,
)
from resilience.testing.observe_fakes import FakePrometheusSource

ITEMS = "GET /items"
ORDERS = "POST /orders"
PHASES = fault_phases(end=38, fault=(10, 22))
BASELINE, FAULT, RECOVERY = range(0, 10), range(10, 22), range(22, 38)
NO_SPANS = "the target exported no spans: none of 57 trace ids looked up was found"

SERVICE = """
name: ordinary
target: {{url: "http://127.0.0.1:9000"}}
proxies:
  - {{name: postgres, listen: "127.0.0.1:{pg}", upstream: "127.0.0.1:5432"}}
load:
  stages: [{{duration: 38s, users: 10, spawn_rate: 10}}]
  workload:
    requests:
      - {{path: /items{items_deps}}}
      - {{method: POST, path: /orders, json: {{a: 1}}{orders_deps}}}
faults:
  - {{at: 10s, duration: 12s, proxy: postgres, type: hang}}
"""


def service(items: str | None = "[]", orders: str | None = "[postgres]") -> str:
    def deps(value: str | None) -> str:
        return "" if value is None else f", depends_on: {value}"

    return SERVICE.format(
        pg=SHOP_PORTS["postgres"], items_deps=deps(items), orders_deps=deps(orders)
    )


def cascade_load() -> LoadBuilder:
    """Orders hang; /items (which does not touch postgres) times out too."""
    load = LoadBuilder()
    for endpoint in (ITEMS, ORDERS):
        load.add(endpoint, BASELINE, ok=10, latency_ms=8)
        load.add(endpoint, RECOVERY, ok=10, latency_ms=8)
    load.add(ORDERS, FAULT, ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    load.add(ITEMS, FAULT, ok=2, latency_ms=9, errors={"timeout": 3}, error_latency_ms=5000)
    return load


def no_span_refs() -> list[TraceRef]:
    """Trace ids the load engine kept for failed requests, none of which the backend has."""
    return [
        ref(new_trace_id(), ITEMS, 11.0 + i, latency=5.0, outcome="timeout", status=0)
        for i in range(6)
    ]


def context(
    tmp_path: Path,
    text: str,
    *,
    traces: list[Trace] | None = None,
    refs: list[TraceRef] | None = None,
    traces_unavailable: str | None = NO_SPANS,
    prometheus: FakePrometheusSource | None = None,
) -> AnalysisContext:
    return make_context(
        parse_experiment(text, file="ordinary.yaml"),
        cascade_load().view,
        PHASES,
        run_dir=tmp_path,
        trace_refs=refs if refs is not None else no_span_refs(),
        traces=traces or [],
        traces_unavailable=traces_unavailable,
        prometheus=prometheus,
        faulted_dependencies={"postgres": {f"127.0.0.1:{SHOP_PORTS['postgres']}", "postgresql"}},
    )


def test_depends_on_decides_the_cascade_when_the_target_exported_no_spans(
    tmp_path: Path,
) -> None:
    """Without traces, /items (depends_on: []) degrading under a postgres hang is collateral
    damage decided by depends_on; the summary says there are no traces, and why."""
    [finding] = CascadingFailureDetector().detect(context(tmp_path, service()))
    assert finding.status == "found" and finding.fails_run
    assert finding.evidence["endpoints"] == [ITEMS]
    assert finding.evidence["footprint"] == {
        ITEMS: {"touches": False, "decided_by": "depends_on"},
        ORDERS: {"touches": True, "decided_by": "depends_on"},
    }
    assert "(by depends_on;" in finding.summary
    assert finding.summary.endswith(f"No traces to explain it: {NO_SPANS}")


def test_without_depends_on_nor_traces_the_cascade_stays_inconclusive(tmp_path: Path) -> None:
    """The same run with no depends_on is inconclusive, and the reason names the missing
    depends_on and the missing spans."""
    [finding] = CascadingFailureDetector().detect(
        context(tmp_path, service(items=None, orders=None))
    )
    assert finding.status == "inconclusive"
    assert "no depends_on" in finding.evidence["reason"]
    assert NO_SPANS in finding.evidence["reason"]


def test_traces_that_contradict_depends_on_are_said(tmp_path: Path) -> None:
    """Traces show /items touching postgres though depends_on says []: the endpoint stays
    in the footprint (no cascade) and the evidence names the disagreement."""
    traced = shop_trace(ITEMS, 2.0, upstream="orders")  # reaches the database
    orders = shop_trace(ORDERS, 3.0, upstream="orders")
    refs = [ref(traced, ITEMS, 2.0), ref(orders, ORDERS, 3.0)]
    ctx = context(tmp_path, service(), traces=[traced, orders], refs=refs, traces_unavailable=None)
    assert CascadingFailureDetector().detect(ctx) == []
    found = footprint(ctx, [ITEMS, ORDERS], PHASES[0])
    assert found.touches[ITEMS] is True
    assert found.decided_by[ITEMS] == "traces+depends_on"
    assert found.disagreements == [
        f"traces show {ITEMS} touches postgres, though its depends_on: [] does not list it"
    ]


def test_no_trace_id_is_cited_unless_saved(tmp_path: Path) -> None:
    """Client timeouts with trace ids the backend never had: the finding cites none of
    them, counts them, and says the target exported no spans."""
    ctx = context(tmp_path, service())
    timeouts = [f for f in run_detectors(ctx) if f.kind == "timeout"]
    [finding] = timeouts
    assert "trace_ids" not in finding.evidence
    assert "trace_id" not in finding.evidence
    assert finding.evidence["uncited_trace_ids"] == 5
    assert finding.evidence["traces_unavailable"] == NO_SPANS
    assert finding.summary.endswith(f"(no traces to explain them: {NO_SPANS})")
    for other in run_detectors(ctx):
        assert not other.evidence.get("trace_ids"), other


def test_saved_trace_ids_are_still_cited(tmp_path: Path) -> None:
    """Ids whose trace was saved stay; the unsaved ones beside them are dropped."""
    saved = shop_trace(ITEMS, 11.0, 11.5, pool_wait=4.0)
    refs = [ref(saved, ITEMS, 11.0, latency=5.0, outcome="timeout", status=0), *no_span_refs()]
    ctx = context(tmp_path, service(), traces=[saved], refs=refs, traces_unavailable=None)
    [finding] = [f for f in run_detectors(ctx) if f.kind == "timeout" and "client" in f.summary]
    assert finding.evidence["trace_ids"] == [saved.trace_id]
    assert finding.evidence["uncited_trace_ids"] == 4


def pool(
    sizes: dict[range, float], in_use: dict[range, float], waiting: dict[range, float]
) -> FakePrometheusSource:
    """The shop's db pool gauges, each a table of second ranges to values."""

    def value(table: dict[range, float], s: int) -> float:
        return next((v for r, v in table.items() if s in r), 0.0)

    labels = {"service": "orders", "job": "orders"}
    return FakePrometheusSource(
        {
            name: [
                Series({"__name__": name, **labels}, [(T0 + s, value(table, s)) for s in range(38)])
            ]
            for name, table in (
                ("shop_db_pool_size", sizes),
                ("shop_db_pool_in_use", in_use),
                ("shop_db_pool_waiting", waiting),
            )
        }
    )


def test_a_pool_drained_by_a_dead_database_is_not_called_exhausted(tmp_path: Path) -> None:
    """8 connections before the fault, 1 left (in use) with waiters during it: "drained",
    size at saturation 1 of 8, severity info — not "at its size (8)"."""
    metrics = pool(
        sizes={range(0, 12): 8, range(12, 22): 1, range(22, 38): 8},
        in_use={range(0, 12): 2, range(12, 22): 1, range(22, 38): 2},
        waiting={range(12, 22): 5},
    )
    [finding] = PoolExhaustionDetector().detect(context(tmp_path, service(), prometheus=metrics))
    assert finding.evidence["state"] == "drained"
    assert finding.evidence["numbers"]["pool size"] == 8
    assert finding.evidence["numbers"]["pool size at saturation"] == 1
    assert finding.severity == "info"
    assert finding.summary.startswith("Pool drained, not exhausted:")
    assert "held 1 of its 8 connections" in finding.summary


def test_a_pool_full_at_its_size_is_exhausted(tmp_path: Path) -> None:
    """All 8 connections in use with waiters: "exhausted", at its size (8)."""
    metrics = pool(
        sizes={range(0, 38): 8},
        in_use={range(0, 12): 2, range(12, 22): 8, range(22, 38): 2},
        waiting={range(12, 22): 5},
    )
    [finding] = PoolExhaustionDetector().detect(context(tmp_path, service(), prometheus=metrics))
    assert finding.evidence["state"] == "exhausted"
    assert "at its size (8)" in finding.summary
    assert finding.severity == "warning"


def test_recovery_is_never_a_bare_never() -> None:
    """Not recovered: the line says what was not measured and, without a budget, that the
    verdict does not depend on it."""
    line = recovery_line(RecoveryRecord(seconds=None, recovered=False))
    assert "never" not in line
    assert line.startswith("not measured back to baseline before the load ended")
    assert "no recovery budget set" in line
    assert recovery_line(RecoveryRecord(seconds=2.5, budget_seconds=6.0, recovered=True)) == (
        "2.5 s (budget 6 s)"
    )


def test_reports_say_the_target_exported_no_spans(tmp_path: Path) -> None:
    """evidence_notes reads evidence.json and the journal: no spans, setup failures."""
    Evidence(
        traces=SourceEvidence(status="unavailable", wanted=57, reason=NO_SPANS),
        readback=SourceEvidence(status="gathered", wanted=10, gathered=10),
    ).save(tmp_path)
    journal = JournalData(
        experiment="ordinary",
        started_at="2026-01-01T00:00:00Z",
        t0=T0,
        events=[
            EventRecord(
                t=30.0,
                wall="",
                kind="setup_failed",
                detail={"users": 3, "errors": ["POST /login: HTTP 401"]},
            )
        ],
    )
    assert evidence_notes(tmp_path, journal) == [
        f"Traces: {NO_SPANS}.",
        "Setup failed for 3 user(s), who then stopped: POST /login: HTTP 401.",
    ]


def test_traces_holding_only_the_load_generators_spans_mean_no_spans_from_the_target(
    tmp_path: Path,
) -> None:
    """Every looked-up trace holds only our own client span: evidence says the target
    exported no spans (target_spans false), and the analysis reads no traces from them."""
    from resilience.analysis.analyse import _traces
    from resilience.rundir.layout import RunDir
    from resilience.rundir.load import LoadFiles
    from resilience.runner.evidence import Sources, gather_traces
    from resilience.runner.own_spans import CLIENT_SERVICE
    from resilience.testing.analysis import TraceBuilder
    from resilience.testing.observe_fakes import FakeTraceSource

    refs = no_span_refs()
    files = LoadFiles(tmp_path, t0=T0)
    traces = []
    for r in refs:
        builder = TraceBuilder(r.trace_id)
        builder.add(CLIENT_SERVICE, r.endpoint, r.t, r.t + r.latency, kind="client")
        traces.append(builder.build())
        files.write_trace(r)
    files.close()
    evidence = gather_traces(
        RunDir(tmp_path),
        PHASES,
        Sources(prometheus=None, traces=FakeTraceSource(traces), target_url=None),
    )
    assert evidence.status == "unavailable"
    assert evidence.reason is not None
    assert evidence.reason.startswith("the target exported no spans: none of 6 trace ids")
    assert (evidence.model_extra or {})["target_spans"] is False
    Evidence(traces=evidence).save(tmp_path)
    assert _traces(RunDir(tmp_path), Evidence.load(tmp_path)) == ({}, evidence.reason)


def _client_only(r: TraceRef) -> Trace:
    from resilience.runner.own_spans import CLIENT_SERVICE
    from resilience.testing.analysis import TraceBuilder

    builder = TraceBuilder(r.trace_id)
    builder.add(CLIENT_SERVICE, r.endpoint, r.t, r.t + r.latency, kind="client")
    return builder.build()


def _long_run(
    tmp_path: Path,
    latest_from_target: bool,
    dropped: float = 1.0,
    untraced: str | None = None,
    per_second: int = 100_000,
) -> tuple[list[TraceRef], SourceEvidence]:
    """A run of two endpoints that kept more trace ids than are looked up, where the
    backend holds only the load generator's own span for the requests of the first
    ``dropped`` share of the run (all of it: every request but, if ``latest_from_target``,
    each endpoint's newest): what a store keeping only its most recent traces leaves after
    a long run. The ``untraced`` endpoint's requests never hold a span of the target; the
    run sent ``per_second`` requests a second (by default past ``MIN_STORE_TRACES`` after
    each second but the last, where only the newest requests are)."""
    import json

    from resilience.rundir.layout import RunDir
    from resilience.rundir.load import LoadFiles
    from resilience.runner.evidence import (
        LATEST_PER_ENDPOINT,
        MAX_TRACES,
        Sources,
        gather_traces,
    )
    from resilience.testing.observe_fakes import FakeTraceSource

    count = MAX_TRACES + 40
    refs = [ref(new_trace_id(), (ITEMS, ORDERS)[i % 2], 38.0 * i / count) for i in range(count)]
    newest = [
        r
        for e in (ITEMS, ORDERS)
        for r in [r for r in refs if r.endpoint == e][-LATEST_PER_ENDPOINT:]
    ]
    ids = {r.trace_id for r in newest}

    def holds(r: TraceRef) -> bool:
        if r.endpoint == untraced:
            return False
        return latest_from_target if r.trace_id in ids else r.t >= 38.0 * dropped

    traces = [
        shop_trace(r.endpoint, r.t, trace_id=r.trace_id) if holds(r) else _client_only(r)
        for r in refs
    ]
    files = LoadFiles(tmp_path, t0=T0)
    for r in refs:
        files.write_trace(r)
    files.close()
    (tmp_path / "load.jsonl").write_text(
        "".join(
            json.dumps({"second": second, "endpoint": ITEMS, "n": per_second}) + "\n"
            for second in range(38)
        )
    )
    evidence = gather_traces(
        RunDir(tmp_path),
        PHASES,
        Sources(prometheus=None, traces=FakeTraceSource(traces), target_url=None),
    )
    return newest, evidence


def test_a_backend_that_dropped_a_long_runs_early_traces_is_not_taken_for_a_silent_target(
    tmp_path: Path,
) -> None:
    """The chosen traces hold only our own client spans but the run's latest hold the
    target's: the backend dropped the old ones (Jaeger's memory store keeps its latest
    200,000). Evidence says so (partial, not "exported no spans"), the latest traces are
    saved and the analysis reads them; the chosen ids are indexed as dropped."""
    import json

    from resilience.analysis.analyse import _traces
    from resilience.rundir.layout import RunDir
    from resilience.runner.evidence import MAX_TRACES

    newest, evidence = _long_run(tmp_path, latest_from_target=True)
    assert evidence.status == "partial"
    assert evidence.reason is not None
    assert "no longer holds the target's spans" in evidence.reason
    assert "exported no spans" not in evidence.reason
    assert f"{len(newest)} of the run's last {len(newest)} requests' traces" in evidence.reason
    assert (evidence.model_extra or {}).get("target_spans") is not False
    assert (evidence.wanted, evidence.gathered) == (MAX_TRACES + len(newest), len(newest))
    Evidence(traces=evidence).save(tmp_path)
    traces, why = _traces(RunDir(tmp_path), Evidence.load(tmp_path))
    assert why is None
    assert set(traces) == {r.trace_id for r in newest}
    index = json.loads((tmp_path / "traces" / "index.json").read_text())["traces"]
    dropped = [e for e in index.values() if e["status"] == "missing"]
    assert len(dropped) == MAX_TRACES
    assert all(e["reason"].startswith("dropped by the trace backend") for e in dropped)
    notes = evidence_notes(
        tmp_path, JournalData(experiment="e", started_at="2026-01-01T00:00:00Z", t0=T0)
    )
    assert any("no longer holds" in n for n in notes)


def test_a_target_silent_to_the_end_still_exported_no_spans(tmp_path: Path) -> None:
    """The run's latest traces hold only our own spans too: the target exported none."""
    _, evidence = _long_run(tmp_path, latest_from_target=False)
    assert evidence.status == "unavailable"
    assert evidence.reason is not None
    assert evidence.reason.startswith("the target exported no spans")
    assert (evidence.model_extra or {})["target_spans"] is False


def test_only_the_chosen_traces_older_than_the_backend_still_holds_count_as_dropped(
    tmp_path: Path,
) -> None:
    """A long run whose first half the backend dropped: the chosen traces of that half are
    indexed as dropped (not saved as requests that reached no service, which would teach
    the cascade a footprint of nothing), the later ones and the latest are saved."""
    import json

    from resilience.analysis.analyse import _traces
    from resilience.rundir.layout import RunDir

    newest, evidence = _long_run(tmp_path, latest_from_target=True, dropped=0.5)
    assert evidence.status == "partial"
    assert evidence.reason is not None
    assert "no longer holds the target's spans of " in evidence.reason
    assert "(requests from 0 s to 1" in evidence.reason  # the first half: 0 s to 18-19 s
    Evidence(traces=evidence).save(tmp_path)
    traces, why = _traces(RunDir(tmp_path), Evidence.load(tmp_path))
    assert why is None
    assert {r.trace_id for r in newest} <= set(traces)
    assert all(any(s.service != "resilience-load" for s in t.spans) for t in traces.values())
    index = json.loads((tmp_path / "traces" / "index.json").read_text())["traces"]
    dropped = [e for e in index.values() if e["status"] == "missing"]
    assert dropped
    assert all(e["reason"].startswith("dropped by the trace backend") for e in dropped)
    assert evidence.gathered == len(traces)


def test_a_run_whose_first_traces_hold_the_target_probes_nothing_more(tmp_path: Path) -> None:
    """Every chosen trace holds the target's spans: the latest are not looked up."""
    _, evidence = _long_run(tmp_path, latest_from_target=True, dropped=0.0)
    assert evidence.status == "gathered"
    assert evidence.reason is None


def test_an_endpoint_the_target_never_traces_is_not_called_dropped(tmp_path: Path) -> None:
    """One endpoint is never traced by the target, the other's early traces were dropped:
    only the traced endpoint's early traces count as dropped; the untraced one's stay what
    they are, requests that left no span of the target (saved, for the cascade to read)."""
    import json

    _newest, evidence = _long_run(tmp_path, latest_from_target=True, untraced=ORDERS)
    assert evidence.status == "partial"
    index = json.loads((tmp_path / "traces" / "index.json").read_text())["traces"]
    dropped = {
        e["endpoint"]
        for e in index.values()
        if e["status"] == "missing" and e["reason"].startswith("dropped by the trace backend")
    }
    assert dropped == {ITEMS}
    kept_orders = [e for e in index.values() if e["endpoint"] == ORDERS and e["status"] == "saved"]
    assert kept_orders
    assert all(e["services"] == ["resilience-load"] for e in kept_orders)


def test_a_trace_followed_by_too_few_requests_was_not_pushed_out(tmp_path: Path) -> None:
    """The same first half without the target's spans, in a run of 10 requests a second:
    380 requests cannot push a trace out of any store (MIN_STORE_TRACES), so those traces
    are what they look like (no span of the target yet), never "dropped by the backend"."""
    import json

    _, evidence = _long_run(tmp_path, latest_from_target=True, dropped=0.5, per_second=10)
    assert "dropped" not in (evidence.reason or "")
    index = json.loads((tmp_path / "traces" / "index.json").read_text())["traces"]
    assert not [e for e in index.values() if "dropped" in str(e.get("reason"))]
    assert any(e.get("services") == ["resilience-load"] for e in index.values())
