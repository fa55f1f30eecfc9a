"""pool_exhaustion from Prometheus pool gauges and from pool-acquire spans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.pool_exhaustion import PoolExhaustionDetector
from resilience.observe.prometheus import PrometheusUnavailable, Series
from resilience.observe.spans import Trace
from resilience.rundir.records import TraceRef
from resilience.testing.analysis import (
    T0,
    LoadBuilder,
    fault_phases,
    make_context,
    ref,
    shop_experiment,
    shop_trace,
)
from resilience.testing.observe_fakes import FakePrometheusSource

ITEMS = "GET /catalog/items"
POST = "POST /orders"
PHASES = fault_phases(end=38, fault=(10, 22))
DB = {"service": "orders", "job": "orders", "instance": "127.0.0.1:8001"}
SHARED = {"service": "gateway", "pool": "shared", "job": "gateway", "instance": "127.0.0.1:8000"}


def gauge(name: str, labels: dict[str, str], value: Callable[[int], float]) -> Series:
    return Series({"__name__": name, **labels}, [(T0 + s, value(s)) for s in range(38)])


def saturated(s: int) -> bool:
    return 12 <= s < 22


def pool_metrics(db_saturated: bool = True, shared_saturated: bool = True) -> FakePrometheusSource:
    """The shop's gauges: the db pool (4) and the gateway's shared pool (10) full in 12-21 s."""

    def family(prefix: str, labels: dict[str, str], size: int, on: bool) -> dict[str, list[Series]]:
        return {
            f"{prefix}_size": [gauge(f"{prefix}_size", labels, lambda s: size)],
            f"{prefix}_in_use": [
                gauge(f"{prefix}_in_use", labels, lambda s: size if on and saturated(s) else 1)
            ],
            f"{prefix}_waiting": [
                gauge(f"{prefix}_waiting", labels, lambda s: 6 + s if on and saturated(s) else 0)
            ],
        }

    return FakePrometheusSource(
        {
            **family("shop_db_pool", DB, 4, db_saturated),
            **family("shop_upstream_pool", SHARED, 10, shared_saturated),
        }
    )


def context(
    tmp_path: Path,
    *,
    prometheus: FakePrometheusSource | None = None,
    traces: list[Trace] | None = None,
    refs: list[TraceRef] | None = None,
    fault: bool = True,
    unavailable: str | None = None,
) -> AnalysisContext:
    load = LoadBuilder().add(ITEMS, range(38), ok=10)
    return make_context(
        shop_experiment(fault=fault),
        load.view,
        PHASES if fault else fault_phases(end=38),
        run_dir=tmp_path,
        prometheus=prometheus,
        prometheus_unavailable=unavailable,
        traces=traces or [],
        trace_refs=refs or [],
        traces_unavailable=None if traces else "none collected",
        builtin_shop=True,
    )


def test_saturated_pools_from_prometheus(tmp_path: Path) -> None:
    """Both shop pools at size with waiters for 10 s: one finding each, pointing at the
    gathered in-use, size and waiting series of that pool."""
    findings = PoolExhaustionDetector().detect(context(tmp_path, prometheus=pool_metrics()))
    assert [f.evidence["pool"] for f in findings] == [
        "db pool 'orders-db'",
        "upstream pool 'shared'",
    ]
    db, shared = findings
    assert db.evidence["seconds"] == list(range(12, 22))
    assert db.evidence["numbers"]["pool size"] == 4
    assert db.evidence["numbers"]["max waiters"] == 27
    assert shared.evidence["numbers"]["saturated seconds"] == 10
    refs = db.evidence["series"]
    assert [r["promql"] for r in refs] == [
        "shop_db_pool_in_use",
        "shop_db_pool_size",
        "shop_db_pool_waiting",
    ]
    for pointer in refs:
        assert (tmp_path / "prometheus" / pointer["file"]).is_file()
        assert pointer["labels"] == DB
    assert db.severity == "warning" and not db.fails_run


def test_pool_below_size_is_not_exhausted(tmp_path: Path) -> None:
    """Gauges that never reach the size with waiters give nothing."""
    source = pool_metrics(db_saturated=False, shared_saturated=False)
    assert PoolExhaustionDetector().detect(context(tmp_path, prometheus=source)) == []


def test_a_load_test_judges_its_load(tmp_path: Path) -> None:
    """No fault (a load test): the pools are judged over the load, and a pool exhausted by
    demand alone is found, said as "of the load"; a quiet one gives nothing."""
    ctx = context(tmp_path, prometheus=pool_metrics(shared_saturated=False), fault=False)
    assert PoolExhaustionDetector().applies(ctx)
    [finding] = PoolExhaustionDetector().detect(ctx)
    assert finding.evidence["pool"] == "db pool 'orders-db'"
    assert finding.summary.endswith("for 10 s of the load")
    quiet = context(
        tmp_path, prometheus=pool_metrics(db_saturated=False, shared_saturated=False), fault=False
    )
    assert PoolExhaustionDetector().detect(quiet) == []


def test_long_waits_in_spans_without_prometheus(tmp_path: Path) -> None:
    """Without Prometheus, three catalog requests waiting 4 s on the shared pool are enough."""
    traces = [shop_trace(ITEMS, 12.0 + i, 5.0, pool_wait=4.0) for i in range(3)]
    refs = [ref(t, ITEMS, 12.0 + i, latency=5.0, outcome="timeout") for i, t in enumerate(traces)]
    [finding] = PoolExhaustionDetector().detect(
        context(tmp_path, traces=traces, refs=refs, unavailable="connection refused")
    )
    assert finding.evidence["pool"] == "shared"
    assert finding.evidence["numbers"]["long waits"] == 3
    assert finding.evidence["endpoints"] == [ITEMS]
    assert finding.evidence["span"]["name"] == "pool.acquire"
    assert finding.evidence["trace_ids"] == [t.trace_id for t in traces]


def test_span_waits_join_the_prometheus_finding_of_their_pool(tmp_path: Path) -> None:
    """Long waits on the shared pool add trace ids to its Prometheus finding, not a second one."""
    traces = [shop_trace(ITEMS, 12.0 + i, 5.0, pool_wait=4.0) for i in range(3)]
    refs = [ref(t, ITEMS, 12.0 + i, latency=5.0, outcome="timeout") for i, t in enumerate(traces)]
    source = pool_metrics(db_saturated=False)
    [finding] = PoolExhaustionDetector().detect(
        context(tmp_path, prometheus=source, traces=traces, refs=refs)
    )
    assert finding.evidence["pool"] == "upstream pool 'shared'"
    assert finding.evidence["numbers"]["long waits in traces"] == 3
    assert finding.evidence["trace_id"] == traces[0].trace_id


def test_short_waits_are_not_exhaustion(tmp_path: Path) -> None:
    """Waits of 20 ms are under the 500 ms threshold."""
    traces = [shop_trace(ITEMS, 12.0 + i, 0.05, pool_wait=0.02) for i in range(5)]
    refs = [ref(t, ITEMS, 12.0 + i) for i, t in enumerate(traces)]
    ctx = context(tmp_path, prometheus=FakePrometheusSource(), traces=traces, refs=refs)
    assert PoolExhaustionDetector().detect(ctx) == []


def test_a_wait_that_fails_at_once_because_the_database_is_down_is_not_exhaustion(
    tmp_path: Path,
) -> None:
    """During an outage an acquire fails in 6 ms with 'Connect call failed', the pool empty:
    the dependency refused a connection, the pool did not run out (seen on the hardened
    shop's db-outage, 2026-12-04)."""
    traces = [
        shop_trace(
            POST,
            12.0 + i,
            0.01,
            upstream="orders",
            pool="orders-db",
            pool_wait=0.006,
            pool_in_use=0,
            pool_error="[Errno 111] Connect call failed ('127.0.0.1', 25432)",
        )
        for i in range(15)
    ]
    refs = [ref(t, POST, 12.0 + i, outcome="http_5xx") for i, t in enumerate(traces)]
    ctx = context(tmp_path, prometheus=FakePrometheusSource(), traces=traces, refs=refs)
    assert PoolExhaustionDetector().detect(ctx) == []


def test_a_wait_given_up_at_once_because_the_pool_is_full_is_exhaustion(tmp_path: Path) -> None:
    """A short wait that failed because the pool had nothing to give counts: its error says
    so, it timed out, or the span shows every connection in use."""
    for error, in_use in (
        ("QueuePool limit of size 10 overflow 0 reached", None),
        ("pool acquire timed out", None),
        ("acquire failed", 10),
    ):
        traces = [
            shop_trace(ITEMS, 12.0 + i, 0.01, pool_wait=0.005, pool_error=error, pool_in_use=in_use)
            for i in range(3)
        ]
        refs = [ref(t, ITEMS, 12.0 + i, outcome="http_5xx") for i, t in enumerate(traces)]
        ctx = context(tmp_path, prometheus=FakePrometheusSource(), traces=traces, refs=refs)
        [finding] = PoolExhaustionDetector().detect(ctx)
        assert finding.evidence["numbers"]["failed waits"] == 3, error


def test_neither_source_is_not_evaluated(tmp_path: Path) -> None:
    """No Prometheus and no traces: one not_evaluated finding naming both reasons."""
    [finding] = PoolExhaustionDetector().detect(context(tmp_path, unavailable="timed out"))
    assert finding.status == "not_evaluated"
    assert "timed out" in finding.evidence["reason"]
    assert not finding.fails_run


def test_prometheus_failing_mid_way_falls_back_to_spans(tmp_path: Path) -> None:
    """A Prometheus error is noted and the span evidence still makes the finding."""
    traces = [shop_trace(ITEMS, 12.0 + i, 5.0, pool_wait=4.0) for i in range(3)]
    refs = [ref(t, ITEMS, 12.0 + i, latency=5.0, outcome="timeout") for i, t in enumerate(traces)]
    broken = FakePrometheusSource(error=PrometheusUnavailable("down", endpoint="fake"))
    [finding] = PoolExhaustionDetector().detect(
        context(tmp_path, prometheus=broken, traces=traces, refs=refs)
    )
    assert finding.evidence["pool"] == "shared"
    assert any("down" in note for note in finding.evidence["notes"])


def test_custom_metric_names_from_params(tmp_path: Path) -> None:
    """Another target's pool gauges, named in params, are judged the same way."""
    labels = {"pool": "workers", "job": "app"}
    source = FakePrometheusSource(
        {
            "app_pool_busy": [gauge("app_pool_busy", labels, lambda s: 8 if saturated(s) else 2)],
            "app_pool_max": [gauge("app_pool_max", labels, lambda s: 8)],
            "app_pool_queue": [gauge("app_pool_queue", labels, lambda s: 3 if saturated(s) else 0)],
        }
    )
    extra = (
        "detectors: {pool_exhaustion: {params: {in_use_metric: app_pool_busy, "
        "size_metric: app_pool_max, waiting_metric: app_pool_queue, pool_label: pool}}}\n"
    )
    load = LoadBuilder().add(ITEMS, range(38), ok=10)
    ctx = make_context(
        shop_experiment(extra), load.view, PHASES, run_dir=tmp_path, prometheus=source
    )
    [finding] = PoolExhaustionDetector().detect(ctx)
    assert finding.evidence["pool"] == "custom pool 'workers'"
    assert len(finding.evidence["seconds"]) == 10


def test_waits_from_before_the_fault_are_ignored(tmp_path: Path) -> None:
    """A wait span that started before the fault belongs to another request: not counted."""
    stale = [shop_trace(ITEMS, -30.0 + i, 5.0, pool_wait=4.0) for i in range(3)]
    refs = [ref(t, ITEMS, 12.0 + i, latency=5.0, outcome="timeout") for i, t in enumerate(stale)]
    ctx = context(tmp_path, traces=stale, refs=refs, unavailable="connection refused")
    assert PoolExhaustionDetector().detect(ctx) == []


def test_a_pool_scraped_by_two_jobs_is_one_pool(tmp_path: Path) -> None:
    """The same gateway pool scraped twice (the stack's job and the experiment's
    observe.scrape job, other instance labels): one finding, not two."""
    source = pool_metrics(db_saturated=False)
    again = {**SHARED, "job": "shop-metrics", "instance": "127.0.0.1:9100"}
    for name in (
        "shop_upstream_pool_size",
        "shop_upstream_pool_in_use",
        "shop_upstream_pool_waiting",
    ):
        first = source.series[name][0]
        source.series[name] = [first, Series({**first.labels, **again}, first.points)]
    findings = PoolExhaustionDetector().detect(context(tmp_path, prometheus=source))
    assert [f.evidence["pool"] for f in findings] == ["upstream pool 'shared'"]


def saturated_pool(saturated: Callable[[int], bool]) -> FakePrometheusSource:
    """The gateway's pool of 10: at its size with 30 waiters in the seconds ``saturated``
    says, 2 in use and no waiters in the others."""

    def in_use(s: int) -> float:
        return 10 if saturated(s) else 2

    def waiting(s: int) -> float:
        return 30 if saturated(s) else 0

    return FakePrometheusSource(
        {
            "shop_upstream_pool_size": [gauge("shop_upstream_pool_size", SHARED, lambda s: 10)],
            "shop_upstream_pool_in_use": [gauge("shop_upstream_pool_in_use", SHARED, in_use)],
            "shop_upstream_pool_waiting": [gauge("shop_upstream_pool_waiting", SHARED, waiting)],
        }
    )


def stuck_pool(stuck_from: int) -> FakePrometheusSource:
    """The gateway's pool at its size with waiters from the fault on; from ``stuck_from`` s
    the recovery's waiters stay (a leak of slots), before that they drain at the heal."""
    return saturated_pool(lambda s: 12 <= s < 22 or s >= stuck_from)


def budget_context(tmp_path: Path, source: FakePrometheusSource) -> AnalysisContext:
    load = LoadBuilder().add(ITEMS, range(38), ok=10)
    experiment = shop_experiment("slo:\n  recovery: {within: 5s}\n")
    return make_context(
        experiment, load.view, PHASES, run_dir=tmp_path, prometheus=source, builtin_shop=True
    )


def test_a_pool_still_exhausted_after_the_recovery_budget_is_found(tmp_path: Path) -> None:
    """Fault 10-22 s, budget 5 s: the pool is at its size with waiters again from 24 s to
    the end (38 s). The fault's finding stands, and a second one says the pool was still
    exhausted from 5 s after the heal on, counting only the seconds past the budget."""
    findings = PoolExhaustionDetector().detect(budget_context(tmp_path, stuck_pool(24)))
    assert [f.evidence["phase"] for f in findings] == ["fault", "recovery"]
    late = findings[1]
    assert late.evidence["seconds"] == list(range(27, 38))
    assert late.evidence["numbers"]["recovery budget s"] == 5
    assert late.evidence["numbers"]["longest stretch s"] == 11
    assert late.summary.startswith("Pool still exhausted after the recovery budget: upstream")
    assert "for 11 s of the recovery, from 5 s after the heal" in late.summary
    assert late.evidence["series"]


def test_a_backlog_draining_inside_the_recovery_budget_is_not_found(tmp_path: Path) -> None:
    """Saturated only in the first seconds after the heal (22-26 s, inside the 5 s budget,
    then quiet): the fault's backlog draining, not a finding of the recovery."""
    source = saturated_pool(lambda s: 12 <= s < 27)
    findings = PoolExhaustionDetector().detect(budget_context(tmp_path, source))
    assert [f.evidence["phase"] for f in findings] == ["fault"]


def test_seconds_here_and_there_after_the_budget_are_not_stuck(tmp_path: Path) -> None:
    """The full spike run on a host with 50 % steal: the catalog pool at its size with
    waiters for 13 scattered seconds of a 400 s recovery (longest stretch 2 s). Nothing
    is stuck: no recovery finding. Ten in a row (the stuck_pool case above) is."""
    scattered = {27, 28, 31, 33, 36}
    source = saturated_pool(lambda s: 12 <= s < 22 or s in scattered)
    findings = PoolExhaustionDetector().detect(budget_context(tmp_path, source))
    assert [f.evidence["phase"] for f in findings] == ["fault"]
