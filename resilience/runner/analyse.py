"""After the load: phases, SLOs, recovery, Prometheus checks, traces, detectors, verdict.

Everything reads from the run directory (plus Prometheus, Jaeger and the target itself
where a detector needs them), and everything it concludes goes into the journal. A
Prometheus or Jaeger that does not answer makes the parts that need it "not evaluated"
with the reason; the run still gets a verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.base import Finding
from resilience.analysis.pipeline import run_detectors
from resilience.analysis.recovery import measure_recovery
from resilience.analysis.slo import evaluate_slos
from resilience.errors import ObserveError
from resilience.experiment.model import Experiment
from resilience.load.recorder import LoadData
from resilience.load.samples import TraceRef
from resilience.observe.checks import Check, CheckResult, PhaseWindow, builtin_shop_checks
from resilience.observe.checks import evaluate_checks as evaluate_promql_checks
from resilience.observe.prometheus import HttpPrometheusSource
from resilience.observe.traces import JaegerTraceSource, collect_traces
from resilience.report.journal import (
    CheckRecord,
    FindingRecord,
    Journal,
    PhaseRecord,
    RecoveryRecord,
    SloRecord,
)
from resilience.stack import StackConfig
from resilience.stack.topology import stack_proxies
from resilience.vocabulary import Phase, phases_from_faults

logger = logging.getLogger(__name__)

MAX_TRACES = 240
"""Traces fetched per run: enough for evidence, bounded so analysis stays quick."""
BASELINE_TRACES_PER_ENDPOINT = 8
TRACE_DEADLINE = 8.0
"""Seconds to wait for traces Jaeger has not ingested. The shop exports spans within a
second or two; a trace still missing after this belongs to a request the target has not
finished yet (it is still queued or stuck) and will not help the verdict."""


@dataclass(frozen=True)
class AnalysisInputs:
    """What the analysis needs to know about where the run happened."""

    target_url: str
    builtin: bool
    shop_mode: str | None
    config: StackConfig
    load_end: float


@dataclass(frozen=True)
class Verdict:
    status: str
    exit_code: int
    reason: str


def analyse(
    experiment: Experiment,
    run_dir: Path,
    journal: Journal,
    inputs: AnalysisInputs,
    say: Callable[[str], None] = lambda _m: None,
) -> tuple[Verdict, LoadData]:
    """Fill the journal's phases, slo, recovery, checks and findings; return the verdict."""
    load = LoadData.read(run_dir)
    faults = journal.data.fault_windows()
    first_fault = min((f.start for f in faults), default=inputs.load_end)
    warmup = min(experiment.load.warmup, first_fault, inputs.load_end)
    phases = phases_from_faults(faults, start=warmup, end=inputs.load_end)
    journal.update(
        phases=[
            PhaseRecord(name=p.name, start=round(p.start, 4), end=round(p.end, 4)) for p in phases
        ]
    )

    say("computing SLOs and recovery")
    slo_results = evaluate_slos(load, phases, experiment.slo.phases())
    journal.update(
        slo=[
            SloRecord(
                phase=r.phase,
                endpoint=r.endpoint,
                metric=r.metric,
                threshold=r.threshold,
                observed=None if r.observed is None else round(r.observed, 6),
                passed=r.passed,
                unit=r.unit,
                summary=r.summary,
            )
            for r in slo_results
        ]
    )
    budget = experiment.slo.recovery.within if experiment.slo.recovery else None
    recovery = measure_recovery(
        load,
        phases,
        band_k=experiment.recovery.band_k,
        stable_seconds=experiment.recovery.stable_seconds,
        budget_seconds=budget,
    )
    journal.update(
        recovery=RecoveryRecord(
            seconds=recovery.seconds if recovery else None,
            budget_seconds=budget,
            recovered=recovery.recovered if recovery else None,
            degradation_area=recovery.degradation_area if recovery else None,
            heal_time=recovery.heal_time if recovery else None,
            note=recovery.note if recovery else "no recovery phase",
        )
    )

    say("evaluating Prometheus checks")
    prometheus, prometheus_down = _prometheus(inputs.config)
    check_results = _checks(
        experiment,
        inputs=inputs,
        source=prometheus,
        down=prometheus_down,
        phases=phases,
        journal=journal,
        run_dir=run_dir,
    )
    journal.update(checks=[_check_record(r) for r in check_results])

    say("fetching traces from Jaeger")
    traces, traces_down = _traces(inputs.config, load.traces, phases, run_dir)

    say("running detectors")
    with httpx.Client(base_url=inputs.target_url, timeout=5.0, trust_env=False) as http:

        def http_get(path: str) -> tuple[int, Any]:
            response = http.get(path)
            try:
                body = response.json()
            except ValueError:
                body = None
            return response.status_code, body

        ctx = AnalysisContext(
            experiment=experiment,
            run_dir=run_dir,
            t0=journal.data.t0,
            phases=phases,
            faults=faults,
            load=load,
            trace_refs=load.traces,
            traces=traces,
            traces_unavailable=traces_down,
            prometheus=prometheus,
            prometheus_unavailable=prometheus_down,
            writes=load.writes,
            http_get=http_get,
            recovery=recovery,
            builtin_shop=inputs.builtin,
            shop_mode=inputs.shop_mode,
            faulted_dependencies=_dependencies(experiment, inputs),
        )
        findings = run_detectors(ctx)
    if prometheus is not None:
        prometheus.close()
    journal.update(findings=[_finding_record(f) for f in findings])
    return _verdict(journal, check_results, findings), load


def _prometheus(config: StackConfig) -> tuple[HttpPrometheusSource | None, str | None]:
    source = HttpPrometheusSource(config.prometheus_url, timeout=5.0)
    try:
        source.targets()
    except ObserveError as exc:
        source.close()
        return None, f"Prometheus at {config.prometheus_url} did not answer: {exc}"
    return source, None


def _checks(
    experiment: Experiment,
    *,
    inputs: AnalysisInputs,
    source: HttpPrometheusSource | None,
    down: str | None,
    phases: list[Phase],
    journal: Journal,
    run_dir: Path,
) -> list[CheckResult]:
    checks = [Check(c.name, c.promql, c.phase, c.expect, c.severity) for c in experiment.checks]
    if inputs.builtin:
        checks.extend(builtin_shop_checks())
    if not checks:
        return []
    if source is None:
        return [CheckResult(c, "not_evaluated", down or "Prometheus unavailable") for c in checks]
    t0 = journal.data.t0
    windows = [PhaseWindow(p.name, t0 + p.start, t0 + p.end) for p in phases if p.duration > 0]
    out = run_dir / "prometheus"
    out.mkdir(exist_ok=True)
    return evaluate_promql_checks(checks, source, windows, out, budget_s=60.0)


def _check_record(result: CheckResult) -> CheckRecord:
    raw = result.to_dict()
    check = result.check
    return CheckRecord(
        name=check.name,
        phase=check.phase,
        promql=check.promql,
        expect=str(check.expect),
        status=result.status,
        passed=None if result.status == "not_evaluated" else result.status == "passed",
        observed={k: raw.get(k) for k in ("min", "max", "last", "worst", "points") if k in raw},
        reason=result.reason,
        severity=check.severity,
        series_file=result.series_file,
        fails_run=result.fails_run,
    )


def _select_traces(refs: list[TraceRef], phases: list[Phase]) -> dict[str, str]:
    """Failed and slow requests first, spread over endpoints and phases, plus baseline
    samples of every endpoint (the dependency footprint is learned from those)."""
    chosen: dict[str, str] = {}
    baseline = next((p for p in phases if p.name == "baseline"), None)
    per_endpoint: dict[str, int] = {}
    for ref in refs:
        in_baseline = baseline is not None and baseline.start <= ref.t < baseline.end
        taken = per_endpoint.get(ref.endpoint, 0)
        if in_baseline and ref.outcome == "ok" and taken < BASELINE_TRACES_PER_ENDPOINT:
            per_endpoint[ref.endpoint] = taken + 1
            chosen[ref.trace_id] = ref.endpoint
    buckets: dict[tuple[str, str, str], list[TraceRef]] = {}
    for ref in refs:
        if ref.trace_id in chosen:
            continue
        phase = next((p.name for p in phases if p.start <= ref.t < p.end), "other")
        buckets.setdefault((phase, ref.endpoint, ref.reason), []).append(ref)
    # Round-robin over the buckets so every (phase, endpoint, reason) gets examples.
    queues = sorted(buckets.items(), key=lambda kv: (kv[0][2] == "sample", kv[0]))
    depth = 0
    while len(chosen) < MAX_TRACES and any(depth < len(q) for _, q in queues):
        for _, queue in queues:
            if depth < len(queue) and len(chosen) < MAX_TRACES:
                chosen[queue[depth].trace_id] = queue[depth].endpoint
        depth += 1
    return chosen


def _traces(
    config: StackConfig, refs: list[TraceRef], phases: list[Phase], run_dir: Path
) -> tuple[dict[str, Any], str | None]:
    wanted = _select_traces(refs, phases)
    if not wanted:
        return {}, "the load engine kept no trace ids"
    with JaegerTraceSource(config.jaeger_query_url, timeout=5.0) as source:
        collection = collect_traces(
            source, wanted, run_dir / "traces", concurrency=8, deadline_s=TRACE_DEADLINE
        )
    if collection.unavailable and not collection.traces:
        reason = next(iter(collection.missing.values()), "Jaeger unavailable")
        return {}, reason
    return dict(collection.traces), None


def _dependencies(experiment: Experiment, inputs: AnalysisInputs) -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {}
    if inputs.builtin:
        services = {"postgres": "postgresql", "orders": "shop-orders", "catalog": "shop-catalog"}
        for proxy in stack_proxies(inputs.config.ports):
            deps[proxy.name] = {
                proxy.listen,
                f"localhost:{proxy.listen_port}",
                services[proxy.name],
            }
    for declared in experiment.proxies:
        deps.setdefault(declared.name, set()).add(declared.listen)
    return {name: deps[name] for name in {f.proxy for f in experiment.faults} if name in deps}


def _finding_record(finding: Finding) -> FindingRecord:
    return FindingRecord(**finding.to_record())


def _verdict(journal: Journal, checks: list[CheckResult], findings: list[Finding]) -> Verdict:
    reasons: list[str] = []
    failed_slos = [s for s in journal.data.slo if s.passed is False]
    if failed_slos:
        reasons.append(f"{len(failed_slos)} SLO(s) breached")
    failed_checks = [c for c in checks if c.fails_run]
    if failed_checks:
        reasons.append(f"{len(failed_checks)} check(s) failed")
    failing = [f for f in findings if f.fails_run]
    if failing:
        kinds = sorted({f.kind for f in failing})
        reasons.append(f"findings: {', '.join(kinds)}")
    if reasons:
        return Verdict("failed", 1, "; ".join(reasons))
    return Verdict("passed", 0, "every SLO, check and detector held")
