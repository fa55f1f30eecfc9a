"""run_detectors: registry, enabled flags, needs, guarded errors, and the shop's ground truth
on synthetic runs (fragile, hardened, control)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.base import Detector, Finding
from resilience.analysis.pipeline import DETECTORS, run_detectors
from resilience.analysis.recovery import measure_recovery
from resilience.experiment.model import DETECTOR_KINDS
from resilience.observe.prometheus import Series
from resilience.observe.spans import Trace
from resilience.rundir.readback import ReadBack
from resilience.rundir.records import TraceRef
from resilience.runner.evidence import read_back
from resilience.testing.analysis import (
    SHOP_ENDPOINTS,
    SHOP_PORTS,
    T0,
    LoadBuilder,
    fault_phases,
    make_context,
    ref,
    shop_experiment,
    shop_trace,
    write_ack,
)
from resilience.testing.observe_fakes import FakePrometheusSource

ITEMS, ITEM, POST, ORDER = SHOP_ENDPOINTS
PHASES = fault_phases(end=38, fault=(10, 22))
PG_DEPS = {"postgres": {f"127.0.0.1:{SHOP_PORTS['postgres']}", "postgresql"}}
RECOVERY = "slo: {recovery: {within: 10s}}\n"


def orders_reader(present: set[int]) -> Any:
    def get(path: str) -> tuple[int, Any]:
        if path == "/orders/ids":
            return 200, {"ids": sorted(present)}
        order_id = int(path.rsplit("/", 1)[1])
        return (200, {"id": order_id}) if order_id in present else (404, None)

    return get


def gauges(saturated: bool) -> FakePrometheusSource:
    """Shop pool gauges over 38 s; pools full with waiters in 12-21 s when ``saturated``."""

    def series(name: str, labels: dict[str, str], size: int, full: bool, waiting: bool) -> Series:
        def value(s: int) -> float:
            on = saturated and 12 <= s < 22
            if full:
                return size if on else 1
            if waiting:
                return 5 if on else 0
            return size

        return Series({"__name__": name, **labels}, [(T0 + s, value(s)) for s in range(38)])

    out: dict[str, list[Series]] = {}
    for prefix, labels, size in (
        ("shop_db_pool", {"service": "orders"}, 4),
        ("shop_upstream_pool", {"service": "gateway", "pool": "shared"}, 10),
    ):
        out[f"{prefix}_size"] = [series(f"{prefix}_size", labels, size, False, False)]
        out[f"{prefix}_in_use"] = [series(f"{prefix}_in_use", labels, size, True, False)]
        out[f"{prefix}_waiting"] = [series(f"{prefix}_waiting", labels, size, False, True)]
    return FakePrometheusSource(out)


def healthy(load: LoadBuilder, seconds: range) -> LoadBuilder:
    for endpoint in SHOP_ENDPOINTS:
        load.add(endpoint, seconds, ok=10, latency_ms=8)
    return load


def baseline_traces() -> tuple[list[Trace], list[TraceRef]]:
    traces = [
        shop_trace(e, 2.0 + i, upstream="catalog" if "catalog" in e else "orders")
        for i, e in enumerate(SHOP_ENDPOINTS)
    ]
    return traces, [
        ref(t, e, 2.0 + i) for i, (t, e) in enumerate(zip(traces, SHOP_ENDPOINTS, strict=True))
    ]


def shop_run(tmp_path: Path, mode: str) -> AnalysisContext:
    """A synthetic db-hang smoke run of the shop in ``mode`` (fragile, hardened or control)."""
    load = healthy(LoadBuilder(), range(10))
    traces, refs = baseline_traces()
    writes = [write_ack(i, POST, 1.0 + i * 0.1) for i in range(1, 40)]
    if mode == "fragile":
        load.add(POST, range(10, 22), ok=0, errors={"timeout": 2}, error_latency_ms=5000)
        load.add(ORDER, range(10, 22), ok=0, errors={"timeout": 1}, error_latency_ms=5000)
        for e in (ITEMS, ITEM):
            load.add(e, range(10, 22), ok=2, errors={"timeout": 3}, error_latency_ms=5000)
        healthy(load, range(22, 38))
        stuck = [shop_trace(ITEMS, 11.0 + i, 11.5, pool_wait=11.0 - i) for i in range(3)]
        traces += stuck
        refs += [
            ref(t, ITEMS, 11.0 + i, latency=5.0, outcome="timeout") for i, t in enumerate(stuck)
        ]
    elif mode == "hardened":
        load.add(POST, range(10, 22), ok=0, errors={"5xx": 6}, error_latency_ms=900)
        load.add(ORDER, range(10, 22), ok=0, errors={"5xx": 3}, error_latency_ms=900)
        for e in (ITEMS, ITEM):
            load.add(e, range(10, 22), ok=10, latency_ms=9)
        healthy(load, range(22, 38))
    else:
        healthy(load, range(10, 38))
    phases = PHASES if mode != "control" else fault_phases(end=38)
    experiment = shop_experiment(RECOVERY, fault=mode != "control")
    read_back(experiment, writes, phases, orders_reader(set(range(1, 40)))).save(tmp_path)
    return make_context(
        experiment,
        load.view,
        phases,
        run_dir=tmp_path,
        trace_refs=refs,
        traces=traces,
        prometheus=gauges(saturated=mode == "fragile"),
        writes=writes,
        readback=ReadBack.load(tmp_path),
        # recovery.degradation_area walks hdrh's recorded-value iterator, seconds per run
        # with 5 s timeouts in the histograms; the fragile assertions do not need it.
        recovery=None
        if mode == "fragile"
        else measure_recovery(load.view, phases, budget_seconds=10.0),
        builtin_shop=True,
        faulted_dependencies=PG_DEPS if mode != "control" else {},
    )


def found(findings: list[Finding]) -> set[str]:
    return {f.kind for f in findings if f.status == "found"}


def test_registry_covers_every_detector_kind() -> None:
    """Every kind the experiment model accepts has a detector, under its own name."""
    assert set(DETECTORS) == set(DETECTOR_KINDS)
    assert all(cls.kind == kind for kind, cls in DETECTORS.items())


def test_control_run_has_no_findings_but_the_write_counts(tmp_path: Path) -> None:
    """No fault, healthy shop, every source present: only data_loss's counts, which hold."""
    [counts] = run_detectors(shop_run(tmp_path, "control"))
    assert counts.kind == "data_loss" and counts.severity == "info" and not counts.fails_run
    assert counts.evidence["numbers"]["acknowledged"] == 39
    assert counts.evidence["numbers"]["lost"] == 0


def test_fragile_run_finds_cascade_timeouts_and_pool_exhaustion(tmp_path: Path) -> None:
    """The fragile shop's ground truth on synthetic data."""
    findings = run_detectors(shop_run(tmp_path, "fragile"))
    assert {"cascading_failure", "timeout", "pool_exhaustion"} <= found(findings)
    [counts] = [f for f in findings if f.kind == "data_loss"]
    assert not counts.fails_run and counts.evidence["numbers"]["lost"] == 0
    [cascade] = [f for f in findings if f.kind == "cascading_failure"]
    assert cascade.evidence["endpoints"] == [ITEMS, ITEM]


def test_hardened_run_has_no_cascade_and_recovers(tmp_path: Path) -> None:
    """The hardened shop: no cascade, no slow recovery, nothing that fails the run."""
    findings = run_detectors(shop_run(tmp_path, "hardened"))
    assert "cascading_failure" not in found(findings)
    assert "slow_recovery" not in found(findings)
    assert not any(f.fails_run for f in findings)


def test_disabled_detectors_do_not_run(tmp_path: Path) -> None:
    """detectors: {kind: {enabled: false}} skips the detector."""
    ctx = shop_run(tmp_path, "fragile")
    ctx.experiment = shop_experiment(
        RECOVERY + "detectors: {cascading_failure: {enabled: false}, timeout: {enabled: false}}\n"
    )
    kinds = {f.kind for f in run_detectors(ctx)}
    assert "cascading_failure" not in kinds and "timeout" not in kinds
    assert "pool_exhaustion" in kinds


def test_missing_needs_give_one_not_evaluated_finding(tmp_path: Path) -> None:
    """data_loss without a read-back: one not_evaluated finding that does not fail the run."""
    ctx = shop_run(tmp_path, "control")
    ctx.readback, ctx.readback_unavailable = None, "the target answered none of the read-backs"
    [finding] = run_detectors(ctx)
    assert finding.kind == "data_loss"
    assert finding.status == "not_evaluated" and not finding.fails_run
    assert "answered none of the read-backs" in finding.evidence["reason"]


def test_missing_prometheus_reason_comes_from_the_context(tmp_path: Path) -> None:
    """A detector needing Prometheus names the context's reason when it is missing."""

    class NeedsProm(Detector):
        kind: ClassVar[str] = "memory_growth"
        needs: ClassVar[frozenset[str]] = frozenset({"prometheus"})

        def detect(self, ctx: AnalysisContext) -> list[Finding]:
            raise AssertionError("not called when a need is missing")

    ctx = shop_run(tmp_path, "control")
    ctx.prometheus, ctx.prometheus_unavailable = None, "connection refused at :9090"
    [finding] = run_detectors(ctx, {"memory_growth": NeedsProm})
    assert finding.status == "not_evaluated"
    assert "connection refused at :9090" in finding.summary


def test_a_failing_detector_does_not_stop_the_others(tmp_path: Path) -> None:
    """A detector that raises yields a not_evaluated finding naming the error; the rest run."""

    class Broken(Detector):
        kind: ClassVar[str] = "timeout"

        def detect(self, ctx: AnalysisContext) -> list[Finding]:
            raise ZeroDivisionError("oops")

    registry = {**DETECTORS, "timeout": Broken}
    findings = run_detectors(shop_run(tmp_path, "fragile"), registry)
    [broken] = [f for f in findings if f.kind == "timeout"]
    assert broken.status == "not_evaluated"
    assert "ZeroDivisionError: oops" in broken.evidence["error"]
    assert "cascading_failure" in found(findings)
