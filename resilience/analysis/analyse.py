"""``analyse(run_dir) -> Verdict``: the judgement of a run, from its run directory alone.

Everything here reads files the run wrote — the journal's fault stamps, the load data, the
Prometheus series, traces and read-back the runner gathered after the load — and nothing
else: no network, no clock. The same directory therefore always gives the same verdict,
and ``resilience analyse DIR`` can re-judge a run with changed SLOs, checks or detector
settings (``--set``) long after its stack is gone.

Order: phases from the journal's applied/healed stamps (minus the warm-up); SLOs from the
merged per-phase histograms; recovery; PromQL checks over the gathered series; the
detectors; the verdict. A source the run could not gather makes the checks and findings
that need it "not evaluated", with the reason, never a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import resilience
from resilience.analysis.breaking import BreakingPoint, breaking_point
from resilience.analysis.checks import Check, CheckResult, builtin_shop_checks, evaluate_checks
from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.base import Finding
from resilience.analysis.omission import estimate_omission
from resilience.analysis.phases import PhasedLoad, PhaseRule, run_rule
from resilience.analysis.pipeline import run_detectors
from resilience.analysis.recovery import RecoveryResult, measure_recovery
from resilience.analysis.resources import build_resources
from resilience.analysis.rig import (
    UNDOUBTED_FINDINGS,
    RigReport,
    WithoutSeconds,
    lost_reason,
    outage_finding,
    rig_report,
    rig_verdict,
    without_outage,
)
from resilience.analysis.slo import (
    SloResult,
    evaluate_slos,
    missing_load_from,
    without_missing_load,
)
from resilience.errors import ExperimentError, LoadError, ObserveError
from resilience.experiment.loader import load_experiment
from resilience.experiment.model import Experiment
from resilience.rundir.evidence import Evidence
from resilience.rundir.journal import (
    CheckRecord,
    FindingRecord,
    JournalData,
    PhaseRecord,
    RecoveryRecord,
    SloRecord,
)
from resilience.rundir.layout import RunDir
from resilience.rundir.load import LoadData, LoadView, sample_trace_refs, scan_writes
from resilience.rundir.readback import ReadBack
from resilience.rundir.reader import read_run, run_end
from resilience.rundir.records import WriteSummary
from resilience.rundir.rig import RigTable, read_rig_table
from resilience.rundir.series import RecordedPrometheus
from resilience.rundir.traces import DirectoryTraceSource
from resilience.vocabulary import (
    BUILTIN_SERVICES,
    STRESS_PHASES,
    FaultWindow,
    Phase,
    PhaseName,
    iso_utc,
    phases_from_faults,
    phases_from_spike,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """What the analysis concluded, and the journal fields that record it."""

    status: Literal["passed", "failed", "inconclusive"]
    """The runner may still call the run aborted (a guard) or error. ``inconclusive``: the
    rig (an overloaded generator or host) or missing evidence (critical checks not
    evaluated) keeps the run from being judged (exit 3; analysis/rig.py)."""
    exit_code: int
    reason: str
    phases: list[Phase]
    slo: list[SloResult] = field(default_factory=list)
    recovery: RecoveryResult | None = None
    recovery_budget: float | None = None
    checks: list[CheckResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)
    rig: RigReport | None = None

    def journal_fields(self) -> dict[str, Any]:
        """The journal's phases, slo, recovery, checks, findings and analysis keys."""
        recovery = self.recovery
        return {
            "phases": [
                PhaseRecord.model_validate(
                    {"name": p.name, "start": round(p.start, 4), "end": round(p.end, 4)}
                )
                for p in self.phases
            ],
            "slo": [
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
                for r in self.slo
            ],
            "recovery": RecoveryRecord(
                seconds=recovery.seconds if recovery else None,
                budget_seconds=self.recovery_budget,
                recovered=recovery.recovered if recovery else None,
                degradation_area=recovery.degradation_area if recovery else None,
                heal_time=recovery.heal_time if recovery else None,
                note=recovery.note if recovery else "no recovery phase",
            ),
            "checks": [check_record(r) for r in self.checks],
            "findings": [FindingRecord(**f.to_record()) for f in self.findings],
            "analysis": self.analysis,
            "rig": self.rig.to_dict() if self.rig is not None else None,
        }


@dataclass(frozen=True)
class RunEvidence:
    """Everything a run directory holds for judging it, read once (``read_evidence``):
    the journal, the experiment judged, the load data, the gathered series, traces and
    read-back, and the rig's samples. ``judge`` reads only this."""

    layout: RunDir
    journal: JournalData
    experiment: Experiment
    load: LoadData
    evidence: Evidence | None
    prometheus: RecordedPrometheus
    rig: RigTable | None

    @property
    def load_end(self) -> float:
        """When the load stopped (the journal's record, else the last evidence)."""
        return recorded_load_end(self.journal) or run_end(self.journal, self.load)


def read_evidence(
    run_dir: Path, *, experiment: Experiment | None = None, load: LoadData | None = None
) -> RunEvidence:
    """Read ``run_dir`` for judging; ``experiment`` replaces the one it recorded (a
    re-judgement with changed settings); ``load``: its load data, when the caller has read
    it already (to draw the reports from the same). ``ExperimentError`` naming the file
    when the directory cannot be read. The per-request files are not read here: ``judge``
    streams them."""
    layout = RunDir(Path(run_dir))
    run = read_run(layout.path, read_load=False)
    if experiment is None:
        experiment = load_experiment(layout.experiment)
    if load is None:
        load = read_load(layout.path)
    return RunEvidence(
        layout=layout,
        journal=run.journal,
        experiment=experiment,
        load=load,
        evidence=Evidence.load(layout.path),
        prometheus=RecordedPrometheus(layout.path),
        rig=read_rig_table(layout.path),
    )


def analyse(
    run_dir: Path,
    *,
    experiment: Experiment | None = None,
    say: Callable[[str], None] = lambda _m: None,
    load: LoadData | None = None,
) -> Verdict:
    """Judge the run in ``run_dir``; ``experiment`` replaces the one it recorded (a
    re-judgement with changed settings); ``load``: its load data when already read.
    Raises ``ExperimentError`` naming the file when the directory cannot be read."""
    run = read_evidence(run_dir, experiment=experiment, load=load)
    journal = run.journal
    load_end = run.load_end
    phases = run_phases_of(journal, run.experiment, load_end)
    return judge(
        run,
        Judged(
            phases=phases,
            faults=journal.fault_windows(),
            rule=run_rule(journal),
            start=phases[0].start if phases else 0.0,
            end=load_end,
        ),
        say=say,
    )


@dataclass(frozen=True)
class Judged:
    """What to judge of a run directory: the whole run (``analyse``), or one fault window
    of a game day (``resilience.analysis.windows``)."""

    phases: list[Phase]
    faults: list[FaultWindow]
    """The fault windows judged (a game-day window: only its own faults)."""
    rule: PhaseRule | None
    """How requests are placed in the phases (None: by send time)."""
    start: float
    """Requests sent before this (the warm-up, or the stretch before a window's baseline)
    belong to no phase."""
    end: float
    """The end of the last phase (the load's end, or the window's)."""
    only_within: bool = False
    """Leave out the load seconds, kept trace ids and acknowledged writes outside
    [start, end) (a window of a session: the other windows are not its evidence)."""


def judge(
    run: RunEvidence, what: Judged, *, say: Callable[[str], None] = lambda _m: None
) -> Verdict:
    """The verdict on ``what`` of ``run``: SLOs, recovery, checks, detectors (see the
    module docstring); reads nothing but ``run``."""
    journal, experiment, layout = run.journal, run.experiment, run.layout
    phases = what.phases
    load: LoadView = run.load
    within = (what.start, what.end) if what.only_within else None
    if within is not None:
        load = WithoutSeconds(load, {s for s in load.seconds if not what.start <= s < what.end})

    rig = rig_report(run.rig, phases, load, end=what.end)
    phased = PhasedLoad(load, phases, what.rule, warmup=what.start)
    answered = PhasedLoad(without_outage(load, rig), phases, what.rule, warmup=what.start)
    say("computing SLOs and recovery")
    slo_results = without_missing_load(
        evaluate_slos(phased, phases, experiment.slo.phases()),
        phases,
        missing_load_from(run.load.meta),
    )
    budget = experiment.slo.recovery.within if experiment.slo.recovery else None
    recovery = measure_recovery(
        answered,
        phases,
        band_k=experiment.recovery.band_k,
        stable_seconds=experiment.recovery.stable_seconds,
        budget_seconds=budget,
    )

    evidence, prometheus = run.evidence, run.prometheus
    prometheus_down = _prometheus_down(evidence, prometheus)
    if prometheus_down is not None:
        prometheus_down = lost_reason(rig, "prometheus", prometheus_down)
    say("judging the checks")
    builtin = _builtin(journal)
    files = (
        {}
        if prometheus_down is not None
        else {promql: g.file for promql, g in prometheus.store.index().items() if g.file}
    )
    check_results = _judge_checks(
        experiment, builtin, prometheus, prometheus_down, phases, journal.t0, files, rig
    )

    say("running detectors")
    traces, traces_down = _traces(layout, evidence)
    if traces_down is not None:
        traces_down = lost_reason(rig, "traces", traces_down)
    readback, readback_down, writes = _writes(layout, evidence, within)
    refs = sample_trace_refs(layout.path, traces, within=within)
    resources = build_resources(
        run.rig,
        None if prometheus_down else prometheus,
        experiment,
        builtin=builtin,
        t0=journal.t0,
        start=what.start,
        end=what.end,
        files=files,
    )
    point = (
        None
        if what.only_within
        else breaking_point(
            load, experiment, start=what.start, end=what.end, rig=run.rig, resources=resources
        )
    )
    slo_results = by_capacity(slo_results, point, experiment)
    ctx = AnalysisContext(
        experiment=experiment,
        run_dir=layout.path,
        t0=journal.t0,
        phases=phases,
        faults=what.faults,
        load=load,
        trace_refs=refs.refs,
        trace_refs_read=refs.read if refs.sampled else None,
        traces=traces,
        traces_unavailable=traces_down,
        prometheus=None if prometheus_down else prometheus,
        prometheus_unavailable=prometheus_down,
        series_files=files,
        writes=writes,
        readback=readback,
        readback_unavailable=readback_down,
        recovery=recovery,
        builtin_shop=builtin,
        shop_mode=journal.shop_mode,
        faulted_dependencies=_dependencies(experiment, journal, {f.proxy for f in what.faults}),
        target_down_seconds=frozenset(rig.down_seconds()),
        phased=answered,
        resources=resources,
    )
    findings = run_detectors(ctx)
    outage = outage_finding(rig)
    if outage is not None:
        findings.insert(0, outage)
    status, exit_code, reason = decide_with_rig(slo_results, check_results, findings, rig)
    reason = capacity_reason(reason, point, experiment)
    omission = estimate_omission(load, phases, experiment, phased)
    return Verdict(
        status=status,
        exit_code=exit_code,
        reason=reason,
        phases=phases,
        slo=slo_results,
        recovery=recovery,
        recovery_budget=budget,
        checks=check_results,
        findings=findings,
        analysis={
            "phase_rule": phased.method,
            "trace_refs": {"read": refs.read, "held": refs.held},
            "writes": writes.acknowledged if writes is not None else 0,
            "warmup_seconds": round(what.start, 3),
            "version": resilience.__version__,
            "load_model": experiment.load.model,
            **({"coordinated_omission": omission.to_dict()} if omission is not None else {}),
            **({"breaking_point": point.to_dict()} if point is not None else {}),
        },
        rig=rig,
    )


def judged_by_breaking_point(point: BreakingPoint | None, experiment: Experiment) -> bool:
    """A rising load with a capacity target, or a capacity search: its verdict is its
    breaking point, not its phases' SLOs (it goes past the knee by design)."""
    if point is None:
        return False
    return experiment.slo.capacity is not None or experiment.load.search is not None


def by_capacity(
    slo: list[SloResult], point: BreakingPoint | None, experiment: Experiment
) -> list[SloResult]:
    """The SLO results that decide the run: a run judged by its breaking point has the
    capacity target's results instead of its phases' (the SLOs located the knee); every
    other run keeps its phases' SLOs."""
    if not judged_by_breaking_point(point, experiment):
        return slo
    assert point is not None
    return point.capacity.slo_results() if point.capacity is not None else []


def capacity_reason(reason: str, point: BreakingPoint | None, experiment: Experiment) -> str:
    """The verdict's reason of a run judged by its breaking point says where it broke."""
    if not judged_by_breaking_point(point, experiment):
        return reason
    assert point is not None
    if point.capacity is not None and not point.capacity.met:
        return f"breaking point below the capacity target: {point.statement()}; {reason}"
    return f"{point.statement()}; {reason}"


def _judge_checks(  # noqa: PLR0917 (the judgement's locals, passed once)
    experiment: Experiment,
    builtin: bool,
    prometheus: RecordedPrometheus,
    prometheus_down: str | None,
    phases: Sequence[Phase],
    t0: float,
    files: dict[str, str],
    rig: RigReport,
) -> list[CheckResult]:
    """The experiment's checks (and the built-in shop's) over the gathered series."""
    checks = [Check(c.name, c.promql, c.phase, c.expect, c.severity) for c in experiment.checks]
    if builtin:
        checks.extend(builtin_shop_checks())
    if prometheus_down is not None:
        return [CheckResult(c, "not_evaluated", prometheus_down) for c in checks]
    results = evaluate_checks(
        checks, prometheus, [p for p in phases if p.duration > 0], t0=t0, files=files
    )
    return _unevaluated_where_lost(results, rig)


def read_load(run_dir: Path) -> LoadData:
    """A run directory's load data, or ``ExperimentError`` naming the file."""
    layout = RunDir(Path(run_dir))
    try:
        return LoadData.read(layout.path)
    except (LoadError, OSError, ValueError) as exc:
        raise ExperimentError(f"{layout.latency}: cannot read the load data: {exc}") from exc


def recorded_load_end(journal: JournalData) -> float | None:
    """When the load stopped, as the journal recorded it (runs from before ``load_end``:
    the guard's trip, else the planned ``duration``)."""
    if journal.load_end is not None:
        return journal.load_end
    trip = next((e.t for e in journal.events if e.kind == "guard_tripped"), None)
    if trip is not None:
        return trip
    planned = (journal.model_extra or {}).get("duration")
    return float(planned) if isinstance(planned, int | float) else None


def run_phases_of(
    journal: JournalData, experiment: Experiment, load_end: float | None = None
) -> list[Phase]:
    """The phases a run is judged by: from the journal's applied/healed stamps, the first
    ``load.warmup`` seconds left out (they belong to no phase), ending when the load did.
    A run without faults whose load shape has a spike (``Experiment.spike``) is cut by the
    spike's window instead: baseline / spike / recovery (a load that stopped before the
    spike ended has no recovery phase)."""
    end = load_end if load_end is not None else recorded_load_end(journal)
    if end is None:
        end = run_end(journal, None)
    faults = journal.fault_windows()
    spike = experiment.spike() if not faults else None
    if spike is not None and spike.start < end:
        warmup = min(experiment.load.warmup, spike.start, end)
        return phases_from_spike(spike.window, start=warmup, end=end)
    first_fault = min((f.start for f in faults), default=end)
    warmup = min(experiment.load.warmup, first_fault, end)
    return phases_from_faults(faults, start=warmup, end=end)


def decide(
    slo: Sequence[SloResult], checks: Sequence[CheckResult], findings: Sequence[Finding]
) -> tuple[Literal["passed", "failed"], int, str]:
    """passed (0) or failed (1), with the reason in one line."""
    reasons: list[str] = []
    failed_slos = [s for s in slo if s.passed is False]
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
        return "failed", 1, "; ".join(reasons)
    return "passed", 0, "every SLO, check and detector held"


def decide_with_rig(
    slo: Sequence[SloResult],
    checks: Sequence[CheckResult],
    findings: Sequence[Finding],
    rig: RigReport,
) -> tuple[Literal["passed", "failed", "inconclusive"], int, str]:
    """``decide``, then what the rig and the missing evidence change (analysis/rig.py)."""
    status, exit_code, reason = decide(slo, checks, findings)
    unevaluated = [
        f"{c.check.name}: {c.reason}"
        for c in checks
        if c.status == "not_evaluated" and c.check.severity == "critical"
    ]
    baseline = sum(1 for r in slo if r.passed is False and r.phase == "baseline")
    return rig_verdict(
        status,
        exit_code,
        reason,
        report=rig,
        baseline_breaches=baseline,
        critical_unevaluated=unevaluated,
        facts=[f.kind for f in findings if f.fails_run and f.kind in UNDOUBTED_FINDINGS],
        failing_phases=failing_phases(slo, checks, findings, [p.phase for p in rig.phases]),
    )


FINDING_PHASES: dict[str, tuple[PhaseName, ...]] = {
    "cascading_failure": STRESS_PHASES,
    "slow_recovery": ("recovery",),
}
"""The phases a failing finding is judged in (for the rig: analysis/rig.py rig_verdict).
Another kind that fails a run (a detector configured to) counts as judged in every phase."""


def failing_phases(
    slo: Sequence[SloResult],
    checks: Sequence[CheckResult],
    findings: Sequence[Finding],
    phases: Sequence[str],
) -> set[str] | None:
    """The phases the run failed in: of its breached SLOs, failed checks and failing
    findings (lost writes and an unreachable target aside: they are facts). None when one
    of them belongs to no single phase (a check over the whole run, a capacity target)."""
    out: set[str] = set()
    where: list[Sequence[str]] = [[r.phase] for r in slo if r.passed is False]
    where += [[c.check.phase] for c in checks if c.fails_run]
    for finding in findings:
        if finding.fails_run and finding.kind not in UNDOUBTED_FINDINGS:
            if finding.kind not in FINDING_PHASES:
                return None
            where.append([p for p in FINDING_PHASES[finding.kind] if p in phases])
    for names in where:
        if not names or any(name not in phases for name in names):
            return None
        out.update(names)
    return out


def _unevaluated_where_lost(results: list[CheckResult], rig: RigReport) -> list[CheckResult]:
    """A check whose phase overlaps a stretch when Prometheus did not answer was judged on
    a series with a hole: it is not evaluated, with the time it was lost."""
    lost = rig.lost("prometheus")
    if not lost:
        return results
    out: list[CheckResult] = []
    for result in results:
        windows = result.windows or ()
        hit = not windows or any(o.covers(w.start, w.end) for w in windows for o in lost)
        if hit and result.status != "not_evaluated":
            reason = lost_reason(rig, "prometheus", None) or "Prometheus unreachable"
            out.append(CheckResult(result.check, "not_evaluated", reason, windows=windows))
        else:
            out.append(result)
    return out


def check_record(result: CheckResult) -> CheckRecord:
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


def previous(journal: JournalData, analysed_at: float) -> dict[str, Any]:
    """The journal's current verdict, to keep beside a new one."""
    return {
        "status": journal.status,
        "exit_code": journal.exit_code,
        "reason": journal.reason,
        "analysis": journal.analysis,
        "slo": [s.model_dump() for s in journal.slo],
        "findings": [f.model_dump() for f in journal.findings],
        "recovery": journal.recovery.model_dump(),
        "replaced_at": iso_utc(analysed_at),
    }


def _builtin(journal: JournalData) -> bool:
    if journal.builtin is not None:
        return journal.builtin
    return journal.shop_mode is not None  # runs before the journal said it


def _prometheus_down(evidence: Evidence | None, prometheus: RecordedPrometheus) -> str | None:
    if evidence is not None and evidence.prometheus.unavailable_reason:
        return f"Prometheus unavailable: {evidence.prometheus.unavailable_reason}"
    try:
        index = prometheus.store.index()
    except ObserveError as exc:
        return str(exc)
    if not index:
        return "no Prometheus series were gathered for this run"
    return None


def _traces(layout: RunDir, evidence: Evidence | None) -> tuple[dict[str, Any], str | None]:
    source = DirectoryTraceSource(layout.traces)
    traces: dict[str, Any] = {}
    if layout.traces.is_dir():
        for trace_id in source.ids():
            try:
                trace = source.get(trace_id)
            except ObserveError as exc:
                logger.warning("skipping an unreadable trace: %s", exc)
                continue
            if trace is not None:
                traces[trace.trace_id] = trace
    if evidence is not None and (evidence.traces.model_extra or {}).get("target_spans") is False:
        # Only the load generator's own client spans: nothing in them explains the target.
        return {}, evidence.traces.reason or "the target exported no spans"
    if traces:
        return traces, None
    if evidence is not None and evidence.traces.reason:
        return {}, evidence.traces.reason
    return {}, "no traces were saved for this run"


def _readback(
    layout: RunDir, evidence: Evidence | None, wanted: bool
) -> tuple[ReadBack | None, str | None]:
    if not wanted:
        return None, None
    try:
        readback = ReadBack.load(layout.path)
    except ObserveError as exc:
        return None, str(exc)
    if readback is None:
        reason = evidence.readback.reason if evidence is not None else None
        return None, reason or "the acknowledged writes were not read back in this run"
    if readback.error:
        return None, readback.error
    return readback, None


def _writes(
    layout: RunDir, evidence: Evidence | None, within: tuple[float, float] | None
) -> tuple[ReadBack | None, str | None, WriteSummary | None]:
    """The read-back, why there is none, and the acknowledged writes summarised (streamed:
    a long run acknowledges millions; only the ids the read-back planned keep a record)."""
    if not (layout.writes.is_file() and layout.writes.stat().st_size > 0):
        return None, None, None
    readback, readback_down = _readback(layout, evidence, True)
    writes = scan_writes(layout.path, _planned(readback), within=within)
    if not writes:
        return None, None, None
    return readback, readback_down, writes


def _planned(readback: ReadBack | None) -> dict[str, list[str]]:
    """Per write endpoint, the ids its read-back planned to read (their first
    acknowledgements are what the data-loss check needs of each write)."""
    if readback is None:
        return {}
    return {name: list(e.planned) for name, e in readback.endpoints.items()}


def _dependencies(
    experiment: Experiment, journal: JournalData, faulted: set[str]
) -> dict[str, set[str]]:
    """Per faulted proxy, the peers behind it (the journal's, the built-in shop's, the
    experiment's declared proxies)."""
    deps: dict[str, set[str]] = {name: set(peers) for name, peers in journal.dependencies.items()}
    if not deps and _builtin(journal):
        for name, service in BUILTIN_SERVICES.items():
            deps[name] = {service}
    for declared in experiment.proxies:
        deps.setdefault(declared.name, set()).add(declared.listen)
    return {name: deps[name] for name in faulted if name in deps}
