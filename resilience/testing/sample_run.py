"""A synthetic run directory with known content, for report previews, docs and tests.

``write_sample_run`` writes what a real run leaves behind (journal, resolved experiment,
Prometheus series, OTLP traces) for a db-hang-like experiment, and returns the per-second
load data as a ``MemoryLoadView`` (the on-disk load format belongs to the recorder). The
``fragile`` variant shows a cascading failure into catalog, timeouts, pool exhaustion and
a slow recovery; the ``hardened`` one sheds only order traffic and recovers at once. Data
is seeded, so two calls with the same arguments write the same run.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from resilience.analysis.data import MemoryLoadView
from resilience.analysis.slo import evaluate_slos
from resilience.histogram import new_histogram
from resilience.rundir.journal import (
    CheckRecord,
    FaultRecord,
    FindingRecord,
    Journal,
    PhaseRecord,
    RecoveryRecord,
    SloRecord,
)
from resilience.vocabulary import FaultWindow, Phase, iso_utc, phases_from_faults

Variant = Literal["fragile", "hardened"]
T0 = 1_764_081_000.0
ENDPOINTS = ("GET /catalog/items", "GET /orders/{id}", "POST /orders")
ORDER_ENDPOINTS = ("GET /orders/{id}", "POST /orders")
CATALOG = "GET /catalog/items"
EXPLAINING_SPAN = "b7ad6b7169203331"
CASCADE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TIMEOUT_TRACE = "0af7651916cd43dd8448eb211c80319c"
SLOW_MS = 500.0
STABLE_SECONDS = 5


@dataclass
class _Limits:
    """Thresholds in the shape ``analysis.slo`` expects (latencies in seconds)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    error_rate: float | None = None
    min_rps: float | None = None
    endpoints: Mapping[str, _Limits] = field(default_factory=dict)


def _experiment_yaml(name: str, duration: int, fault: tuple[float, float]) -> str:
    return f"""name: {json.dumps(name)}
description: Orders' database stops answering under steady load.
target: {{url: http://127.0.0.1:18000}}
proxies:
  - {{name: postgres, listen: 127.0.0.1:25432, upstream: 127.0.0.1:15432}}
load:
  stages: [{{duration: {duration}s, users: 10, spawn_rate: 10}}]
faults:
  - {{at: {fault[0]:g}s, duration: {fault[1] - fault[0]:g}s, proxy: postgres, type: timeout, attributes: {{timeout: 0}}}}
slo:
  baseline: {{p95: 500ms, error_rate: 1%}}
  fault: {{endpoints: {{"{CATALOG}": {{p95: 500ms, error_rate: 1%}}}}}}
  recovery: {{within: 5s}}
checks:
  - {{name: pool saturated, promql: 'max(shop_db_pool_waiting)', phase: fault, expect: '== 0'}}
"""


def _request(
    rng: random.Random, endpoint: str, phase: str, variant: Variant, degraded: bool
) -> tuple[float, str]:
    """One request's latency (ms) and outcome; ``degraded`` marks fragile's slow recovery."""
    base = rng.lognormvariate(3.0, 0.35)  # about 20 ms
    if phase == "fault":
        if endpoint in ORDER_ENDPOINTS:
            if variant == "hardened":
                return rng.uniform(1.0, 3.0), "5xx"  # the breaker fails fast
            return 5000.0 + rng.uniform(0, 50), "timeout"
        if variant == "fragile":  # shared pool: catalog waits behind stuck order calls
            return base + rng.uniform(1500, 2600), "ok" if rng.random() > 0.2 else "timeout"
    if degraded:
        return base + 900.0, "5xx" if rng.random() < 0.3 else "ok"
    return base, "ok"


@dataclass
class SampleLoad:
    """The generated load data and its ground truth: good requests per second."""

    view: MemoryLoadView
    good: dict[int, int]
    recovered_at: float | None


def build_load(
    *, variant: Variant, duration: int, fault: tuple[float, float], rate: int, seed: int
) -> SampleLoad:
    """Per-second load data: ``rate`` requests per second per endpoint."""
    rng = random.Random(seed)
    phases = phases_from_faults([FaultWindow(0, "", "", *fault)], start=0.0, end=float(duration))
    slow_until = fault[1] + 8 if variant == "fragile" else -math.inf
    view = MemoryLoadView()
    good: dict[int, int] = {}
    recovered_at: float | None = None
    for second in range(duration):
        phase = next((p.name for p in phases if p.holds_second(second)), "baseline")
        degraded = phase == "recovery" and second < slow_until
        if phase == "recovery" and not degraded and recovered_at is None:
            recovered_at = float(second)
        for endpoint in ENDPOINTS:
            hist = new_histogram()
            counts: dict[str, int] = {}
            for _ in range(rate):
                ms, outcome = _request(rng, endpoint, phase, variant, degraded)
                hist.record_value(max(1, int(ms * 1000)))
                counts[outcome] = counts.get(outcome, 0) + 1
                good[second] = good.get(second, 0) + (outcome == "ok" and ms < SLOW_MS)
            view.add(endpoint, second, hist, counts)
    # The analysis wants a stable stretch after the last bad second (5 s by default).
    if recovered_at is not None and recovered_at + STABLE_SECONDS > duration:
        recovered_at = None
    return SampleLoad(view, good, recovered_at)


class SampleSpan(TypedDict):
    """One span of a sample trace, its times in ms after the trace's start."""

    id: str
    service: str
    name: str
    start: float
    end: float
    parent: NotRequired[str]
    server: NotRequired[bool]
    client: NotRequired[bool]
    error: NotRequired[str]


def _otlp(trace_id: str, start: float, spans: list[SampleSpan]) -> dict[str, object]:
    """Jaeger's /api/v3/traces answer for the given spans (times in ms after ``start``)."""
    by_service: dict[str, list[dict[str, object]]] = {}
    for span in spans:
        raw: dict[str, object] = {
            "traceId": trace_id,
            "spanId": span["id"],
            "name": span["name"],
            "kind": 2 if span.get("server") else 3 if span.get("client") else 1,
            "startTimeUnixNano": str(int((start + span["start"] / 1000) * 1e9)),
            "endTimeUnixNano": str(int((start + span["end"] / 1000) * 1e9)),
            "attributes": [{"key": "sample", "value": {"boolValue": True}}],
            "status": {"code": 2, "message": span["error"]} if span.get("error") else {},
        }
        if span.get("parent"):
            raw["parentSpanId"] = span["parent"]
        by_service.setdefault(span["service"], []).append(raw)
    return {
        "result": {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": svc}}]
                    },
                    "scopeSpans": [{"scope": {"name": "sample"}, "spans": raw_spans}],
                }
                for svc, raw_spans in by_service.items()
            ]
        }
    }


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def _write_traces(run_dir: Path, fault: tuple[float, float], hostile: str | None) -> None:
    pool_wait = hostile or "pool.acquire upstream"
    cascade: list[SampleSpan] = [
        {
            "id": "a000000000000001",
            "service": "gateway",
            "name": CATALOG,
            "start": 0,
            "end": 2350,
            "server": True,
        },
        {
            "id": EXPLAINING_SPAN,
            "parent": "a000000000000001",
            "service": "gateway",
            "name": pool_wait,
            "start": 2,
            "end": 2300,
        },
        {
            "id": "a000000000000003",
            "parent": "a000000000000001",
            "service": "gateway",
            "name": "GET catalog",
            "client": True,
            "start": 2300,
            "end": 2340,
        },
        {
            "id": "a000000000000004",
            "parent": "a000000000000003",
            "service": "catalog",
            "name": "GET /items",
            "start": 2305,
            "end": 2335,
            "server": True,
        },
        # A second, quick wait of the same name: the evidence's duration picks the right one.
        {
            "id": "a000000000000005",
            "parent": "a000000000000001",
            "service": "gateway",
            "name": pool_wait,
            "start": 2341,
            "end": 2342,
        },
    ]
    timeout: list[SampleSpan] = [
        {
            "id": "c000000000000001",
            "service": "gateway",
            "name": "POST /orders",
            "start": 0,
            "end": 5010,
            "server": True,
            "error": "client timeout",
        },
        {
            "id": "c000000000000002",
            "parent": "c000000000000001",
            "service": "gateway",
            "name": "POST orders",
            "client": True,
            "start": 1,
            "end": 5005,
            "error": "ReadTimeout",
        },
        {
            "id": "c000000000000003",
            "parent": "c000000000000002",
            "service": "orders",
            "name": "POST /orders",
            "start": 3,
            "end": 5004,
            "server": True,
        },
        {
            "id": "c000000000000004",
            "parent": "c000000000000003",
            "service": "orders",
            "name": "INSERT orders",
            "start": 5,
            "end": 5003,
            "error": "timeout",
        },
    ]
    _write_json(
        run_dir / "traces" / f"{CASCADE_TRACE}.json",
        _otlp(CASCADE_TRACE, T0 + fault[0] + 5.3, cascade),
    )
    _write_json(
        run_dir / "traces" / f"{TIMEOUT_TRACE}.json",
        _otlp(TIMEOUT_TRACE, T0 + fault[0] + 2.1, timeout),
    )


def _write_series(
    run_dir: Path, duration: int, fault: tuple[float, float], variant: Variant, hostile: str | None
) -> None:
    def value(t: int, high: float) -> float:
        return high if variant == "fragile" and fault[0] <= t < fault[1] + 4 else 0.0

    waiting = [[T0 + t, value(t, 9.0)] for t in range(duration)]
    in_use = [[T0 + t, 10.0 if value(t, 1.0) else 2.0 + (t % 3)] for t in range(duration)]
    label = hostile or "orders"
    _write_json(
        run_dir / "prometheus" / "pool-saturated.json",
        {
            "name": "pool saturated",
            "promql": "max(shop_db_pool_waiting)",
            "series": [{"labels": {"service": label}, "points": waiting}],
        },
    )
    _write_json(
        run_dir / "prometheus" / "pool-in-use.json",
        {
            "name": "pool in use",
            "promql": "shop_db_pool_in_use",
            "series": [
                {
                    "labels": {"__name__": "shop_db_pool_in_use", "service": "orders"},
                    "points": in_use,
                },
                {
                    "labels": {"__name__": "shop_db_pool_size", "service": "orders"},
                    "points": [[p[0], 10.0] for p in in_use],
                },
            ],
        },
    )


def _findings(
    variant: Variant,
    phases: list[Phase],
    recovery: RecoveryRecord,
    hostile: str | None,
) -> list[FindingRecord]:
    not_evaluated = FindingRecord(
        kind="retry_amplification",
        severity="warning",
        summary="no baseline traces to count downstream calls per request",
        status="not_evaluated",
    )
    if variant == "hardened":
        return [not_evaluated]
    fault = next(p for p in phases if p.name == "fault")
    seconds = list(fault.seconds())
    summary = "GET /catalog/items degraded during the fault though it never touches postgres"
    findings = [
        FindingRecord(
            kind="cascading_failure",
            severity="critical",
            summary=summary + (f" {hostile}" if hostile else ""),
            fails_run=True,
            evidence={
                "endpoints": [CATALOG],
                "seconds": seconds,
                "fault_p95_ms": 2412.0,
                "baseline_p95_ms": 33.0,
                "trace_id": CASCADE_TRACE,
                # The shape the detectors write (analysis.detectors._common.span_evidence).
                "span": {
                    "service": "gateway",
                    "name": hostile or "pool.acquire upstream",
                    "duration_ms": 2298.0,
                    "reason": "waited 2.3 s for the gateway's shared upstream pool",
                },
            },
        ),
        FindingRecord(
            kind="timeout",
            severity="critical",
            summary="order requests ended at the 5 s client timeout",
            fails_run=True,
            evidence={
                "endpoints": list(ORDER_ENDPOINTS),
                "count": len(seconds) * 20,
                "trace_ids": [TIMEOUT_TRACE, "ffffffffffffffffffffffffffffffff"],
            },
        ),
        FindingRecord(
            kind="pool_exhaustion",
            severity="warning",
            summary="orders' database pool in use at its size (10) with 9 waiters",
            evidence={"series": "pool-in-use.json", "pool_size": 10, "max_waiting": 9},
        ),
        not_evaluated,
    ]
    if not recovery.recovered or (
        recovery.seconds is not None
        and recovery.budget_seconds is not None
        and recovery.seconds > recovery.budget_seconds
    ):
        findings.append(
            FindingRecord(
                kind="slow_recovery",
                severity="critical",
                summary=f"recovered in {recovery.seconds} s, budget {recovery.budget_seconds} s",
                fails_run=True,
                evidence={
                    "recovery_seconds": recovery.seconds,
                    "budget_seconds": recovery.budget_seconds,
                },
            )
        )
    return findings


def write_load_files(run_dir: Path, view: MemoryLoadView) -> None:
    """Write ``view`` as the load engine's recorder would (latency.hlog, load.jsonl)."""
    from resilience.load.recorder import LoadRecorder
    from resilience.load.samples import EndpointSecond, SecondSample

    with LoadRecorder(run_dir, t0=T0, workers=1, endpoints=view.endpoints) as recorder:
        for second in view.seconds:
            endpoints: dict[str, EndpointSecond] = {}
            for name in view.endpoints:
                histogram = view.histogram(name, second)
                if histogram is not None:
                    counts = dict(view.counts(name, second))
                    endpoints[name] = EndpointSecond(counts=counts, histogram=histogram.encode())
            recorder.handle(SecondSample(worker=0, second=second, endpoints=endpoints))


def write_sample_run(
    run_dir: Path,
    *,
    variant: Variant = "fragile",
    duration: int = 45,
    fault: tuple[float, float] = (15.0, 30.0),
    rate: int = 10,
    seed: int = 7,
    experiment: str = "db-hang",
    hostile: str | None = None,
    load_files: bool = True,
) -> MemoryLoadView:
    """Write a complete synthetic run into ``run_dir`` and return its load data.

    ``load_files=False`` leaves out latency.hlog and load.jsonl (a run without load data).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    applied, healed = fault[0] + 0.04, fault[1] + 0.02
    load = build_load(
        variant=variant, duration=duration, fault=(applied, healed), rate=rate, seed=seed
    )
    view = load.view
    if hostile:
        for second in range(duration):
            hist = new_histogram()
            hist.record_value(20_000)
            view.add(hostile, second, hist, {"ok": 1})
    name = experiment + (f" {hostile}" if hostile else "")
    (run_dir / "experiment.yaml").write_text(
        _experiment_yaml(name, duration, fault), encoding="utf-8"
    )
    journal = Journal.start(
        run_dir / "journal.json",
        experiment=name,
        profile="smoke",
        t0=T0,
        target="http://127.0.0.1:18000",
        shop_mode=variant,
    )
    phases = phases_from_faults(
        [FaultWindow(0, "", "", applied, healed)], start=0.0, end=float(duration)
    )
    journal.event("fault.applied", applied, proxy="postgres", type="timeout")
    journal.event("fault.healed", healed, proxy="postgres")
    fault_endpoints = {CATALOG: _Limits(p95=0.5, error_rate=0.01), "GET /health": _Limits(p95=0.2)}
    if hostile:
        fault_endpoints[hostile] = _Limits(p95=0.5)
    limits = {
        "baseline": _Limits(p95=0.5, error_rate=0.01),
        "fault": _Limits(endpoints=fault_endpoints),
        "recovery": _Limits(p95=0.5),
    }
    slos = [SloRecord(**vars(r)) for r in evaluate_slos(view, phases, limits)]
    # Ground truth instead of the analysis (which the tests check separately): recovery is
    # the first clean second after the heal; the area is the share of good service lost.
    expected = rate * len(ENDPOINTS)
    impaired = [p for p in phases if p.name in ("fault", "recovery")]
    area = sum(
        1.0 - min(1.0, load.good.get(second, 0) / expected)
        for phase in impaired
        for second in phase.seconds()
    )
    recovery = RecoveryRecord(
        seconds=None
        if load.recovered_at is None
        else max(0.0, round(load.recovered_at - healed, 2)),
        budget_seconds=5.0,
        recovered=load.recovered_at is not None,
        degradation_area=round(area, 1),
    )
    pool_failed = variant == "fragile"
    checks = [
        CheckRecord(
            name=hostile or "pool saturated",
            phase="fault",
            promql="max(shop_db_pool_waiting)",
            expect="== 0",
            status="failed" if pool_failed else "passed",
            passed=not pool_failed,
            observed={"value": 9.0 if pool_failed else 0.0},
            series_file="pool-saturated.json",
            fails_run=pool_failed,
        ),
        CheckRecord(
            name="gateway up",
            phase="baseline",
            promql='min(up{job="gateway"})',
            expect="== 1",
            status="passed",
            passed=True,
            observed={"value": 1.0},
        ),
        CheckRecord(
            name="queue depth",
            phase="fault",
            promql="max(shop_queue_depth)",
            expect="< 100",
            status="not_evaluated",
            passed=None,
            reason="no data: the series is empty",
        ),
    ]
    findings = _findings(variant, phases, recovery, hostile)
    _write_series(run_dir, duration, fault, variant, hostile)
    _write_traces(run_dir, fault, hostile)
    journal.update(
        phases=[PhaseRecord(name=p.name, start=p.start, end=p.end) for p in phases],
        faults=[
            FaultRecord(
                index=0,
                proxy="postgres",
                type="timeout",
                attributes={"timeout": 0},
                scheduled_at=fault[0],
                scheduled_end=fault[1],
                applied_at=applied,
                healed_at=healed,
                applied_wall=iso_utc(T0 + applied),
                healed_wall=iso_utc(T0 + healed),
            )
        ],
        slo=slos,
        checks=checks,
        findings=findings,
        recovery=recovery,
    )
    failed = (
        any(s.passed is False for s in slos)
        or any(c.status == "failed" and c.fails_run for c in checks)
        or any(f.fails_run for f in findings)
    )
    if load_files:
        write_load_files(run_dir, view)
    journal.finish(
        "failed" if failed else "passed", ended=T0 + duration, exit_code=1 if failed else 0
    )
    return view
