"""cascading_failure on synthetic runs shaped like the shop under a hung database."""

from __future__ import annotations

from pathlib import Path

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.cascading_failure import CascadingFailureDetector
from resilience.observe.spans import Trace
from resilience.rundir.records import TraceRef
from resilience.testing.analysis import (
    SHOP_PORTS,
    LoadBuilder,
    fault_phases,
    make_context,
    ref,
    shop_experiment,
    shop_trace,
)
from resilience.vocabulary import Phase

ITEMS = "GET /catalog/items"
ITEM = "GET /catalog/items/{item_id}"
POST = "POST /orders"
ORDER = "GET /orders/{order_id}"
PHASES = fault_phases(end=38, fault=(10, 22))
BASELINE, FAULT, RECOVERY = range(0, 10), range(10, 22), range(22, 38)
PG_DEPS = {"postgres": {f"127.0.0.1:{SHOP_PORTS['postgres']}", "postgresql"}}


def healthy(load: LoadBuilder, seconds: range, latency_ms: float = 8.0) -> LoadBuilder:
    for endpoint in (ITEMS, ITEM, POST, ORDER):
        load.add(endpoint, seconds, ok=10, latency_ms=latency_ms)
    return load


def fragile_load() -> LoadBuilder:
    """Orders hang; the catalog queues behind them in the shared pool and times out."""
    load = healthy(LoadBuilder(), BASELINE)
    healthy(load, RECOVERY)
    load.add(POST, FAULT, ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    load.add(ORDER, FAULT, ok=0, errors={"timeout": 1}, error_latency_ms=5000)
    for endpoint in (ITEMS, ITEM):
        load.add(endpoint, FAULT, ok=2, latency_ms=9, errors={"timeout": 3}, error_latency_ms=5000)
    return load


def hardened_load() -> LoadBuilder:
    """Orders fail fast; the catalog does not notice."""
    load = healthy(LoadBuilder(), BASELINE)
    healthy(load, RECOVERY)
    load.add(POST, FAULT, ok=0, errors={"5xx": 6}, error_latency_ms=1000)
    load.add(ORDER, FAULT, ok=0, errors={"5xx": 3}, error_latency_ms=1000)
    for endpoint in (ITEMS, ITEM):
        load.add(endpoint, FAULT, ok=10, latency_ms=12)
    return load


def baseline_traces() -> tuple[list[Trace], list[TraceRef]]:
    """One sampled healthy trace per endpoint in the baseline."""
    traces = [
        shop_trace(ITEMS, 2.0, upstream="catalog"),
        shop_trace(ITEM, 3.0, upstream="catalog"),
        shop_trace(POST, 4.0, upstream="orders"),
        shop_trace(ORDER, 5.0, upstream="orders"),
    ]
    refs = [
        ref(t, t.endpoint() or "", t0) for t, t0 in zip(traces, (2.0, 3.0, 4.0, 5.0), strict=True)
    ]
    return traces, refs


def queued_catalog_traces() -> tuple[list[Trace], list[TraceRef]]:
    """Catalog requests of the fault phase that waited ~12 s for the shared pool."""
    traces = [shop_trace(ITEMS, 11.0 + i, 11.5, pool_wait=11.0 - i) for i in range(3)]
    refs = [
        ref(t, ITEMS, 11.0 + i, latency=5.0, outcome="timeout", status=0)
        for i, t in enumerate(traces)
    ]
    return traces, refs


def context(
    tmp_path: Path,
    load: LoadBuilder,
    *,
    traces: list[Trace] | None = None,
    refs: list[TraceRef] | None = None,
    builtin: bool = False,
    phases: list[Phase] = PHASES,
    extra: str = "",
    fault: bool = True,
) -> AnalysisContext:
    return make_context(
        shop_experiment(extra, fault=fault),
        load.view,
        phases,
        run_dir=tmp_path,
        trace_refs=refs or [],
        traces=traces or [],
        builtin_shop=builtin,
        faulted_dependencies=PG_DEPS,
    )


def test_fragile_catalog_collateral_damage_is_found_with_the_pool_wait(tmp_path: Path) -> None:
    """Catalog endpoints outside the postgres footprint that time out are a cascade,
    explained by the wait on the gateway's shared pool."""
    base_traces, base_refs = baseline_traces()
    fault_traces, fault_refs = queued_catalog_traces()
    ctx = context(
        tmp_path, fragile_load(), traces=base_traces + fault_traces, refs=base_refs + fault_refs
    )
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.kind == "cascading_failure"
    assert finding.status == "found"
    assert finding.severity == "critical" and finding.fails_run
    assert finding.evidence["endpoints"] == [ITEMS, ITEM]
    assert finding.evidence["seconds"] == list(FAULT)
    assert finding.evidence["span"]["name"] == "pool.acquire"
    assert "'shared'" in finding.evidence["span"]["reason"]
    assert finding.evidence["trace_id"] == fault_traces[0].trace_id
    assert finding.evidence["trace_ids"][0] == fault_traces[0].trace_id
    assert len(finding.evidence["trace_ids"]) <= 5
    assert finding.evidence["numbers"][f"{ITEMS} fault timeouts"] == 36
    assert finding.evidence["footprint"][POST] == {"touches": True, "decided_by": "traces"}
    assert finding.evidence["footprint"][ITEMS] == {"touches": False, "decided_by": "traces"}


def test_hardened_shop_sheds_only_orders_no_cascade(tmp_path: Path) -> None:
    """Order endpoints failing alone, inside the footprint, are not a cascade."""
    traces, refs = baseline_traces()
    ctx = context(tmp_path, hardened_load(), traces=traces, refs=refs, builtin=True)
    assert CascadingFailureDetector().detect(ctx) == []


def test_control_run_without_fault_does_not_apply(tmp_path: Path) -> None:
    """A run without a fault has no fault phase: the detector does not apply and finds nothing."""
    load = healthy(LoadBuilder(), range(38))
    ctx = context(tmp_path, load, phases=fault_phases(end=38), fault=False, builtin=True)
    detector = CascadingFailureDetector()
    assert not detector.applies(ctx)
    assert detector.detect(ctx) == []


def test_builtin_shop_without_traces_falls_back_to_the_topology(tmp_path: Path) -> None:
    """With no traces at all, the shop's known wiring decides the footprint."""
    ctx = context(tmp_path, fragile_load(), builtin=True)
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.status == "found"
    assert finding.evidence["endpoints"] == [ITEMS, ITEM]
    assert finding.evidence["footprint"][ORDER] == {"touches": True, "decided_by": "topology"}
    assert "span" not in finding.evidence


def test_unknown_target_without_traces_is_inconclusive(tmp_path: Path) -> None:
    """A target that is not the shop and left no baseline traces cannot be judged."""
    ctx = context(tmp_path, fragile_load(), builtin=False)
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.status == "inconclusive"
    assert not finding.fails_run
    assert set(finding.evidence["endpoints"]) == {ITEMS, ITEM, POST, ORDER}


def test_a_trace_missing_its_callee_does_not_shrink_the_footprint(tmp_path: Path) -> None:
    """An order trace whose orders spans never arrived is not read as "orders does not
    touch postgres"; the endpoint stays unknown (inconclusive) instead of a false cascade."""
    partial = shop_trace(POST, 4.0, upstream="orders", callee=False)
    items = shop_trace(ITEMS, 2.0)
    load = fragile_load()
    ctx = context(
        tmp_path,
        load,
        traces=[partial, items],
        refs=[ref(partial, POST, 4.0), ref(items, ITEMS, 2.0)],
    )
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.evidence["footprint"][POST]["touches"] is None
    assert finding.status == "found"
    assert finding.evidence["endpoints"] == [ITEMS]
    assert POST in finding.evidence["undetermined"]


def test_latency_only_degradation_counts(tmp_path: Path) -> None:
    """No errors but a p95 far above baseline (and above the floor) is degradation."""
    load = healthy(LoadBuilder(), BASELINE)
    load.add(POST, FAULT, ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    load.add(ORDER, FAULT, ok=5, latency_ms=8)
    load.add(ITEM, FAULT, ok=10, latency_ms=8)
    load.add(ITEMS, FAULT, ok=10, latency_ms=1200)
    [finding] = CascadingFailureDetector().detect(context(tmp_path, load, builtin=True))
    assert finding.evidence["endpoints"] == [ITEMS]
    assert finding.evidence["numbers"][f"{ITEMS} fault p95 ms"] > 1000


def test_small_latency_bump_is_not_a_cascade(tmp_path: Path) -> None:
    """8 ms to 40 ms is five times slower but under the 250 ms floor: not degradation."""
    load = healthy(LoadBuilder(), BASELINE)
    load.add(POST, FAULT, ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    load.add(ORDER, FAULT, ok=0, errors={"timeout": 1}, error_latency_ms=5000)
    for endpoint in (ITEMS, ITEM):
        load.add(endpoint, FAULT, ok=10, latency_ms=40)
    assert CascadingFailureDetector().detect(context(tmp_path, load, builtin=True)) == []


def test_one_bad_second_is_not_enough(tmp_path: Path) -> None:
    """A single second of catalog errors stays under min_affected_seconds (2)."""
    load = healthy(LoadBuilder(), BASELINE)
    load.add(POST, FAULT, ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    load.add(ORDER, FAULT, ok=0, errors={"timeout": 1}, error_latency_ms=5000)
    load.add(ITEM, FAULT, ok=10)
    load.add(ITEMS, range(10, 11), ok=5, errors={"5xx": 5})
    load.add(ITEMS, range(11, 22), ok=10)
    assert CascadingFailureDetector().detect(context(tmp_path, load, builtin=True)) == []


def test_mann_whitney_path_with_enough_seconds(tmp_path: Path) -> None:
    """With 30+ seconds per phase the Mann-Whitney path judges, and still finds the cascade."""
    phases = fault_phases(end=100, fault=(35, 70))
    load = healthy(LoadBuilder(), range(35))
    healthy(load, range(70, 100))
    load.add(POST, range(35, 70), ok=0, errors={"timeout": 2}, error_latency_ms=5000)
    load.add(ORDER, range(35, 70), ok=0, errors={"timeout": 1}, error_latency_ms=5000)
    load.add(ITEM, range(35, 70), ok=10)
    load.add(ITEMS, range(35, 70), ok=3, errors={"timeout": 3}, error_latency_ms=5000)
    ctx = context(tmp_path, load, builtin=True, phases=phases)
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.evidence["endpoints"] == [ITEMS]
    assert finding.evidence["per_endpoint"][ITEMS]["method"] == "mann-whitney"


def test_experiment_overrides_severity_and_fails_run(tmp_path: Path) -> None:
    """detectors.cascading_failure.{severity,fails_run} override the defaults."""
    extra = "detectors: {cascading_failure: {severity: warning, fails_run: false}}\n"
    ctx = context(tmp_path, fragile_load(), builtin=True, extra=extra)
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.severity == "warning"
    assert not finding.fails_run


def test_missing_server_span_explains_when_there_is_no_wait(tmp_path: Path) -> None:
    """A catalog call whose catalog server span never appeared is the explanation."""
    base_traces, base_refs = baseline_traces()
    stuck = shop_trace(ITEMS, 12.0, 8.0, callee=False)
    ctx = context(
        tmp_path,
        fragile_load(),
        traces=[*base_traces, stuck],
        refs=[*base_refs, ref(stuck, ITEMS, 12.0, latency=5.0, outcome="timeout", status=0)],
    )
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.evidence["trace_id"] == stuck.trace_id
    assert "no server span" in finding.evidence["span"]["reason"]


def test_requests_without_any_span_are_reported_as_untraced(tmp_path: Path) -> None:
    """Failed requests whose traces are absent (never served) are counted as untraced."""
    base_traces, base_refs = baseline_traces()
    lost = [ref(f"{i:032x}", ITEMS, 12.0 + i, latency=5.0, outcome="timeout") for i in range(1, 4)]
    ctx = context(tmp_path, fragile_load(), traces=base_traces, refs=base_refs + lost)
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.evidence["untraced"] == 3
    assert finding.evidence["trace_ids"] == [r.trace_id for r in lost]


def test_unknown_faulted_proxy_is_not_read_as_untouched(tmp_path: Path) -> None:
    """A fault phase with no fault record says nothing about footprints: inconclusive."""
    ctx = make_context(
        shop_experiment(),
        fragile_load().view,
        PHASES,
        run_dir=tmp_path,
        faults=[],
        builtin_shop=True,
    )
    [finding] = CascadingFailureDetector().detect(ctx)
    assert finding.status == "inconclusive"
