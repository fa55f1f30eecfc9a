"""Cascading failure: an endpoint that never touches the faulted dependency degrades anyway.

The fault's *footprint* is the set of endpoints whose traces touch the faulted dependency
(a peer address, service or database system behind the faulted proxy, from
``ctx.faulted_dependencies`` or the experiment's proxy definition), or whose request
declares the faulted proxy in ``depends_on`` (the footprint when the target exports no
traces; with traces too, either saying "touches" keeps the endpoint in, and where they
disagree the evidence says so under ``disagreements``). Footprint traces are
those of requests sent in the baseline, plus any request that succeeded: a trace of a
request that failed during the fault may stop early and hide what it would have touched.
Traces with a gap (a callee's server span missing, or several roots) are left out for the
same reason. An endpoint without usable traces falls back to the built-in shop's known
topology when the target is the shop (catalog paths pass the ``catalog`` proxy; order
paths the ``orders`` and ``postgres`` proxies); for any other target it stays unknown.

Degradation is measured at the client, fault phase against baseline, on error rate (every
non-OK outcome) and on p95 latency (``numbers`` give both). The threshold rule: the error
rate rises by ``error_rate_margin`` (0.05) with at least ``min_errors`` (3) failures, or
p95 reaches ``p95_ratio`` (3) times the baseline's AND ``p95_floor_ms`` (250) above it; in
both cases on at least ``min_affected_seconds`` (2) seconds of the fault. With at least
``min_samples`` (30) one-second samples on both sides, the same rise must also be
significant by Mann-Whitney with the effect floor (``statistics.compare``). Throughput is
not a criterion: in a closed model, users stuck on the faulted endpoints send less of
everything. An endpoint outside the footprint that degrades is collateral damage (critical,
fails the run); its failed and slow requests' traces explain it (a wait on a shared pool,
worker or lock; a callee's server span missing or late; the target's first span late).
Degraded endpoints whose footprint is unknown give one ``inconclusive`` finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import (
    MAX_TRACE_IDS,
    BaseDetector,
    Explanation,
    PhaseNumbers,
    SecondPoint,
    example_ids,
    explain,
    phase_numbers,
    phase_points,
    strongest,
    trace_of,
)
from resilience.analysis.detectors.base import Finding
from resilience.analysis.rig import WithoutSeconds
from resilience.analysis.statistics import compare
from resilience.observe.spans import Trace, dependency_footprint
from resilience.vocabulary import Phase, Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.rundir.load import LoadView
    from resilience.rundir.records import TraceRef

SHOP_TOPOLOGY: tuple[tuple[str, frozenset[str]], ...] = (
    ("/catalog", frozenset({"catalog"})),
    ("/orders", frozenset({"orders", "postgres"})),
)
"""The built-in shop: path prefix → the Toxiproxy proxies a request to it passes."""

MAX_EXPLAINED = 40
"""Traces read to find the explaining span (the strongest one wins)."""


@dataclass(frozen=True)
class Degradation:
    """One endpoint's fault phase against its baseline, at the client."""

    endpoint: str
    degraded: bool
    method: str
    baseline: PhaseNumbers
    fault: PhaseNumbers
    seconds: list[int]
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    error_rate_margin: float
    min_errors: int
    p95_ratio: float
    p95_floor_ms: float
    min_affected_seconds: int
    min_samples: int
    alpha: float


def _error_up(base: float, value: float, errors: int, rules: Rules, *, min_errors: int) -> bool:
    return errors >= min_errors and value - base >= rules.error_rate_margin


def _slower(base: float | None, value: float | None, rules: Rules) -> bool:
    if value is None:
        return False
    if base is None:
        return value >= rules.p95_floor_ms
    return value >= rules.p95_ratio * base and value - base >= rules.p95_floor_ms


def judge_degradation(
    endpoint: str,
    baseline: PhaseNumbers,
    fault: PhaseNumbers,
    *,
    base_points: Sequence[SecondPoint],
    fault_points: Sequence[SecondPoint],
    rules: Rules,
) -> Degradation:
    """The threshold rule (plus Mann-Whitney with enough samples); see the module doc."""
    base_rate = baseline.error_rate or 0.0
    affected = [
        p.second
        for p in fault_points
        if _error_up(base_rate, p.error_rate or 0.0, p.errors, rules, min_errors=1)
        or _slower(baseline.p95, p.p95, rules)
    ]
    errors_up = _error_up(
        base_rate, fault.error_rate or 0.0, fault.errors, rules, min_errors=rules.min_errors
    )
    slower = _slower(baseline.p95, fault.p95, rules)
    method = "threshold"
    reasons: list[str] = []
    enough = len(base_points) >= rules.min_samples and len(fault_points) >= rules.min_samples
    if enough:
        method = "mann-whitney"
        if errors_up:
            test = compare(
                [p.error_rate or 0.0 for p in base_points],
                [p.error_rate or 0.0 for p in fault_points],
                alpha=rules.alpha,
                min_samples=rules.min_samples,
            )
            errors_up = test.verdict == "higher"
            reasons.append(f"error rate per second: {test.verdict} ({test.reason})")
        if slower:
            test = compare(
                [p.p95 for p in base_points if p.p95 is not None],
                [p.p95 for p in fault_points if p.p95 is not None],
                alpha=rules.alpha,
                min_samples=rules.min_samples,
            )
            slower = test.verdict == "higher"
            reasons.append(f"p95 per second: {test.verdict} ({test.reason})")
    if errors_up:
        reasons.insert(0, f"error rate {_pct(base_rate)} → {_pct(fault.error_rate or 0.0)}")
    if slower:
        reasons.insert(0, f"p95 {_ms(baseline.p95)} → {_ms(fault.p95)}")
    degraded = (errors_up or slower) and len(affected) >= rules.min_affected_seconds
    return Degradation(endpoint, degraded, method, baseline, fault, affected, reasons)


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} ms"


def _usable(trace: Trace) -> bool:
    """A trace whole enough to say what its request touched."""
    return len(trace.roots()) == 1 and not any(g.kind == "missing" for g in trace.server_gaps())


def _path_of(ctx: AnalysisContext, endpoint: str) -> str | None:
    for request in ctx.experiment.load.workload.requests or []:
        if request.endpoint == endpoint:
            return request.path
    for word in endpoint.split():
        if word.startswith("/"):
            return word
    return None


def shop_proxies(ctx: AnalysisContext, endpoint: str) -> frozenset[str] | None:
    """The built-in shop's proxies on ``endpoint``'s path, ``None`` when it is not a shop path."""
    path = _path_of(ctx, endpoint)
    if path is None:
        return None
    for prefix, proxies in SHOP_TOPOLOGY:
        if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
            return proxies
    return None


def faulted_members(ctx: AnalysisContext) -> dict[str, set[str]]:
    """Per faulted proxy, the tagged footprint members that mean "touches it"."""
    declared = {p.name: p for p in ctx.experiment.proxies}
    out: dict[str, set[str]] = {}
    for proxy in sorted({f.proxy for f in ctx.faults}):
        behind = set(ctx.faulted_dependencies.get(proxy, set()))
        if not behind and proxy in declared:
            behind = {declared[proxy].listen, declared[proxy].upstream}
        out[proxy] = {f"{tag}:{x}" for x in behind for tag in ("peer", "service", "db")}
    return out


@dataclass(frozen=True)
class Footprint:
    """Per endpoint: touches a faulted dependency (True/False) or unknown (None), how that
    was decided, and where the traces and ``depends_on`` disagree."""

    touches: dict[str, bool | None]
    decided_by: dict[str, str]
    disagreements: list[str] = field(default_factory=list)


def _declared(ctx: AnalysisContext, endpoint: str) -> frozenset[str] | None:
    """The proxies the file says ``endpoint`` passes (``depends_on``), None if it does not say."""
    request = ctx.experiment.load.workload.request(endpoint)
    if request is None or request.depends_on is None:
        return None
    return frozenset(request.depends_on)


def _combine(answers: dict[str, bool | None]) -> tuple[bool | None, str]:
    """Any source saying "touches" keeps the endpoint in the footprint (a trace can miss a
    span, a declaration can be incomplete); "does not touch" needs every source that knows."""
    known = {name: value for name, value in answers.items() if value is not None}
    if not known:
        return None, "unknown"
    return any(known.values()), "+".join(known)


def footprint(ctx: AnalysisContext, endpoints: Sequence[str], baseline: Phase) -> Footprint:
    """Per endpoint, whether it touches a faulted dependency, from the traces (its usable
    baseline traces), the file's ``depends_on`` and, for the built-in shop, its topology."""
    chosen: dict[str, Trace] = {}
    names: dict[str, str] = {}
    for ref in ctx.trace_refs:
        if not (baseline.start <= ref.t < baseline.end or ref.outcome == "ok"):
            continue
        trace = trace_of(ctx, ref.trace_id)
        if trace is not None and _usable(trace):
            chosen[trace.trace_id] = trace
            names[trace.trace_id] = ref.endpoint
    touched = dependency_footprint(chosen.values(), names)
    per_proxy = faulted_members(ctx) if ctx.faults else {}
    members = set().union(*per_proxy.values()) if per_proxy else set()
    faulted_proxies = {f.proxy for f in ctx.faults}
    result: dict[str, bool | None] = {}
    source: dict[str, str] = {}
    disagreements: list[str] = []
    for endpoint in endpoints:
        by_traces: bool | None = None
        if endpoint in touched and members:
            by_traces = bool(touched[endpoint] & members)
        by_declared: bool | None = None
        declared = _declared(ctx, endpoint)
        if declared is not None and faulted_proxies:
            by_declared = bool(declared & faulted_proxies)
            if endpoint in touched:
                disagreements.extend(
                    _disagreement(endpoint, proxy, bool(touched[endpoint] & peers), declared)
                    for proxy, peers in sorted(per_proxy.items())
                    if bool(touched[endpoint] & peers) != (proxy in declared)
                )
        by_topology: bool | None = None
        # Without knowing which proxy was faulted, "does not touch it" cannot be said.
        if ctx.builtin_shop and faulted_proxies:
            proxies = shop_proxies(ctx, endpoint)
            if proxies is not None:
                by_topology = bool(proxies & faulted_proxies)
        result[endpoint], source[endpoint] = _combine(
            {"traces": by_traces, "depends_on": by_declared, "topology": by_topology}
        )
    return Footprint(result, source, disagreements)


def _disagreement(endpoint: str, proxy: str, traced: bool, declared: frozenset[str]) -> str:
    listed = f"depends_on: [{', '.join(sorted(declared))}]" if declared else "depends_on: []"
    if traced:
        return f"traces show {endpoint} touches {proxy}, though its {listed} does not list it"
    return f"{endpoint} lists {proxy} in {listed}, but none of its traces touches it"


def answered_load(ctx: AnalysisContext) -> LoadView:
    """The load data without the seconds the target did not answer at all."""
    if not ctx.target_down_seconds:
        return ctx.load
    return WithoutSeconds(ctx.load, set(ctx.target_down_seconds))


class CascadingFailureDetector(BaseDetector):
    kind: ClassVar[str] = "cascading_failure"
    default_severity: ClassVar[Severity] = "critical"
    default_fails_run: ClassVar[bool] = True

    def applies(self, ctx: AnalysisContext) -> bool:
        # A spike faults no dependency and loads every endpoint alike: there is no footprint
        # to stay outside of. Pinning the overload on the first saturated resource flipped
        # between runs of the same shop (docs/findings.md), so a spike claims no cascade.
        return (
            ctx.phase("fault") is not None and ctx.phase("baseline") is not None and not ctx.spike
        )

    def rules(self, ctx: AnalysisContext) -> Rules:
        return Rules(
            error_rate_margin=self.param(ctx, "error_rate_margin"),
            min_errors=self.int_param(ctx, "min_errors"),
            p95_ratio=self.param(ctx, "p95_ratio"),
            p95_floor_ms=self.param(ctx, "p95_floor_ms"),
            min_affected_seconds=self.int_param(ctx, "min_affected_seconds"),
            min_samples=self.int_param(ctx, "min_samples"),
            alpha=self.param(ctx, "alpha"),
        )

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        baseline, fault = ctx.phase("baseline"), ctx.phase("fault")
        if baseline is None or fault is None:
            return []
        # The target's own outage is not a cascade: its seconds are left out.
        load = answered_load(ctx)
        endpoints = list(load.endpoints)
        found = footprint(ctx, endpoints, baseline)
        touches, source = found.touches, found.decided_by
        rules = self.rules(ctx)
        judged: dict[str, Degradation] = {}
        for endpoint in endpoints:
            if touches.get(endpoint) is True:
                continue
            base = phase_numbers(ctx, endpoint, baseline)
            flt = phase_numbers(ctx, endpoint, fault)
            if base.requests == 0 or flt.requests == 0:
                continue
            judged[endpoint] = judge_degradation(
                endpoint,
                base,
                flt,
                base_points=phase_points(ctx, endpoint, baseline),
                fault_points=phase_points(ctx, endpoint, fault),
                rules=rules,
            )
        collateral = [d for d in judged.values() if d.degraded and touches[d.endpoint] is False]
        unknown = [d for d in judged.values() if d.degraded and touches[d.endpoint] is None]
        common: dict[str, Any] = {
            "faulted": sorted({f.proxy for f in ctx.faults}),
            "footprint": {e: {"touches": touches[e], "decided_by": source[e]} for e in endpoints},
        }
        if ctx.traces_unavailable:
            common["traces_unavailable"] = ctx.traces_unavailable
        if found.disagreements:
            common["disagreements"] = found.disagreements
        if collateral:
            finding = self._collateral(ctx, fault, collateral, common)
            if unknown:
                finding.evidence["undetermined"] = [d.endpoint for d in unknown]
            return [finding]
        if unknown:
            names = ", ".join(d.endpoint for d in unknown)
            evidence = {
                **common,
                "endpoints": [d.endpoint for d in unknown],
                "seconds": sorted({s for d in unknown for s in d.seconds}),
                "numbers": _numbers(unknown),
                "reason": "no usable baseline traces for these endpoints, no depends_on for "
                "them in the file, and the target is not the built-in shop, so whether they "
                "touch the faulted dependency is unknown"
                + (f" ({ctx.traces_unavailable})" if ctx.traces_unavailable else ""),
            }
            return [
                self.finding(
                    ctx,
                    f"{names} degraded during the fault; whether that is collateral damage "
                    "is undetermined (no baseline traces show what they touch, and the file "
                    "declares no depends_on for them)",
                    evidence,
                    status="inconclusive",
                )
            ]
        return []

    def _collateral(
        self,
        ctx: AnalysisContext,
        fault: Phase,
        collateral: list[Degradation],
        common: dict[str, Any],
    ) -> Finding:
        names = [d.endpoint for d in collateral]
        refs = [
            r
            for r in ctx.trace_refs
            if r.endpoint in names and fault.start <= r.t < fault.end and r.reason != "sampled"
        ]
        # Failed first, then the slowest: the likeliest to show the wait.
        refs.sort(key=lambda r: (r.reason != "failed", -r.latency))
        explanation = strongest(explain(ctx, r) for r in refs[:MAX_EXPLAINED])
        evidence: dict[str, Any] = {
            **common,
            "endpoints": names,
            "seconds": sorted({s for d in collateral for s in d.seconds}),
            "trace_ids": _ordered_ids(refs, explanation),
            "numbers": _numbers(collateral),
            "per_endpoint": {
                d.endpoint: {
                    "baseline": d.baseline.to_dict(),
                    "fault": d.fault.to_dict(),
                    "method": d.method,
                    "reasons": d.reasons,
                }
                for d in collateral
            },
        }
        if explanation is not None:
            evidence["trace_id"] = explanation.trace_id
            evidence["span"] = explanation.span
        elif refs and not ctx.traces_unavailable:
            missing = [r.trace_id for r in refs if trace_of(ctx, r.trace_id) is None]
            if missing:
                evidence["untraced"] = len(missing)
                evidence["explanation"] = (
                    f"{len(missing)} of {len(refs)} failed or slow requests left no span at "
                    "all: the target never started serving them before the client gave up "
                    "(queued ahead of its workers), or their spans were lost"
                )
                if ctx.trace_refs_read is not None:
                    evidence["explanation"] += (
                        f" (counted in a sample of {len(ctx.trace_refs)} of the run's "
                        f"{ctx.trace_refs_read} kept trace ids)"
                    )
        faulted = ", ".join(common["faulted"])
        detail = "; ".join(f"{d.endpoint}: {', '.join(d.reasons[:2])}" for d in collateral)
        decided = sorted({common["footprint"][e]["decided_by"] for e in names})
        summary = (
            f"Cascading failure: {', '.join(names)} degraded while {faulted} was faulted, "
            f"though {'it does' if len(names) == 1 else 'they do'} not touch it "
            f"(by {', '.join(decided)}; {detail})"
        )
        if explanation is not None:
            summary += f". Trace {explanation.trace_id[:16]}: {explanation.span['reason']}"
        elif ctx.traces_unavailable:
            summary += f". No traces to explain it: {ctx.traces_unavailable}"
        return self.finding(ctx, summary, evidence)


def _ordered_ids(refs: Sequence[TraceRef], explanation: Explanation | None) -> list[str]:
    """Example trace ids, the explained one first."""
    ids = [explanation.trace_id] if explanation is not None else []
    for trace_id in example_ids(refs, MAX_TRACE_IDS + 1):
        if trace_id not in ids and len(ids) < MAX_TRACE_IDS:
            ids.append(trace_id)
    return ids


def _numbers(degradations: Sequence[Degradation]) -> dict[str, Any]:
    numbers: dict[str, Any] = {}
    for d in degradations:
        numbers[f"{d.endpoint} baseline error rate"] = d.baseline.to_dict()["error_rate"]
        numbers[f"{d.endpoint} fault error rate"] = d.fault.to_dict()["error_rate"]
        numbers[f"{d.endpoint} baseline p95 ms"] = d.baseline.to_dict()["p95_ms"]
        numbers[f"{d.endpoint} fault p95 ms"] = d.fault.to_dict()["p95_ms"]
        numbers[f"{d.endpoint} fault timeouts"] = d.fault.timeouts
        numbers[f"{d.endpoint} affected seconds"] = len(d.seconds)
    return numbers
