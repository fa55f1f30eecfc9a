"""Timeouts: requests ending at the client's timeout, spans ending in timeout errors, and
timeout inversions between a caller and its callee.

Three findings of kind ``timeout``, each only when its evidence is there:

- **client timeouts** (warning): requests whose outcome is ``timeout`` at the load
  generator, counted per endpoint and phase; at least ``min_client_timeouts`` (3) in the
  run, so one stray stall on a busy machine is not a finding.
- **timeout spans** (info): spans whose status or exception says they timed out
  (``Span.is_timeout``), grouped by service and span name; at least ``min_timeout_spans``
  (3) traces. Deadlines firing is often the design working (a hardened service failing
  fast), hence info: the SLOs judge whether it was acceptable.
- **timeout inversions** (warning), at least ``min_inversions`` (2): a caller giving up
  *before* its callee (the callee's span ends more than ``inversion_tolerance_s`` (0.5 s)
  after the caller stopped waiting: the client's own timeout against the target's first
  span, or an HTTP client span against its callee's server span: the callee works on for
  nobody), or *long after* it (an HTTP client span outlasting its callee's server span by
  more than ``long_after_s`` (1 s) and by more than the server span itself: a caller with
  no deadline of its own, waiting on an answer that was lost or never sent).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import (
    MAX_TRACE_IDS,
    BaseDetector,
    entry_span,
    example_ids,
    explain,
    phase_of,
    span_evidence,
    strongest,
    trace_of,
)
from resilience.analysis.detectors.base import Finding
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.observe.spans import Span, Trace
    from resilience.rundir.records import TraceRef


@dataclass(frozen=True)
class Inversion:
    """A caller that stopped waiting before (``early``) or long after (``late``) its callee."""

    trace_id: str
    caller: str
    callee: str
    kind: str
    seconds: float
    """How long the callee outlived the caller (early), or the caller the callee (late)."""
    span: Span


class TimeoutDetector(BaseDetector):
    kind: ClassVar[str] = "timeout"
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        findings: list[Finding] = []
        client = self._client_timeouts(ctx)
        if client is not None:
            findings.append(client)
        if ctx.traces:
            spans = self._timeout_spans(ctx)
            if spans is not None:
                findings.append(spans)
            inversions = self._inversions(ctx)
            if inversions is not None:
                findings.append(inversions)
        return findings

    # -- client timeouts --------------------------------------------------------------

    def _client_timeouts(self, ctx: AnalysisContext) -> Finding | None:
        per: dict[str, int] = {}
        by_phase = Counter[str]()
        seconds: set[int] = set()
        endpoints: set[str] = set()
        total = 0
        for phase in ctx.phases:
            view, phase_seconds = ctx.phase_load(phase.name), ctx.phase_seconds(phase.name)
            for endpoint in ctx.load.endpoints:
                count = 0
                for second in phase_seconds:
                    n = view.counts(endpoint, second).get("timeout", 0)
                    if n:
                        count += n
                        seconds.add(second)
                if count:
                    per[f"{endpoint} {phase.name} timeouts"] = count
                    by_phase[phase.name] += count
                    endpoints.add(endpoint)
                    total += count
        if total < self.int_param(ctx, "min_client_timeouts"):
            return None
        limit = ctx.experiment.load.client_timeout
        refs = [r for r in ctx.trace_refs if r.outcome == "timeout"]
        explanation = strongest(explain(ctx, r) for r in refs[:40]) if ctx.traces else None
        evidence: dict[str, Any] = {
            "endpoints": sorted(endpoints),
            "seconds": sorted(seconds),
            "trace_ids": example_ids(refs),
            "numbers": {"client timeout s": limit, "client timeouts": total, **per},
        }
        if explanation is not None:
            evidence["trace_id"] = explanation.trace_id
            evidence["span"] = explanation.span
        where = ", ".join(f"{n} in {p}" for p, n in by_phase.items())
        summary = (
            f"{total} requests hit the client timeout ({limit:g} s): {where}; "
            f"endpoints {', '.join(sorted(endpoints))}"
        )
        if not ctx.traces and ctx.traces_unavailable:
            # Without spans nothing says where the time went: say why, plainly.
            evidence["traces_unavailable"] = ctx.traces_unavailable
            summary += f" (no traces to explain them: {ctx.traces_unavailable})"
        return self.finding(ctx, summary, evidence)

    # -- spans ending in timeouts -----------------------------------------------------

    def _timeout_spans(self, ctx: AnalysisContext) -> Finding | None:
        by_name = Counter[str]()
        by_phase = Counter[str]()
        trace_ids: list[str] = []
        seconds: set[int] = set()
        example: Span | None = None
        for trace_id, trace in sorted(ctx.traces.items()):
            spans = trace.timeout_spans()
            if not spans:
                continue
            trace_ids.append(trace_id)
            for span in spans:
                by_name[f"{span.service}: {span.name}"] += 1
            first = spans[0]
            t = first.end_ns / 1e9 - ctx.t0
            seconds.add(int(t))
            by_phase[phase_of(ctx.phases, t) or "outside the run"] += 1
            # The deepest timeout is where the deadline fired; its parents only pass it on.
            deepest = max(spans, key=lambda s: _depth(trace, s))
            if example is None or deepest.start_ns < example.start_ns:
                example = deepest
        if len(trace_ids) < self.int_param(ctx, "min_timeout_spans") or example is None:
            return None
        evidence: dict[str, Any] = {
            "endpoints": _endpoints(ctx, trace_ids),
            "seconds": sorted(seconds),
            "trace_ids": trace_ids[:MAX_TRACE_IDS],
            "trace_id": example.trace_id,
            "span": span_evidence(example, example.status_message or "ended in a timeout"),
            "numbers": {
                "traces with timeout spans": len(trace_ids),
                **{f"traces in {p}": n for p, n in by_phase.items()},
                **dict(by_name.most_common(10)),
            },
        }
        top = ", ".join(f"{name} ({n})" for name, n in by_name.most_common(3))
        summary = f"{len(trace_ids)} traces end in timeout errors ({top})"
        return self.finding(ctx, summary, evidence, severity="info")

    # -- inversions -------------------------------------------------------------------

    def _inversions(self, ctx: AnalysisContext) -> Finding | None:
        tolerance = self.param(ctx, "inversion_tolerance_s")
        long_after = self.param(ctx, "long_after_s")
        refs = {r.trace_id.lower(): r for r in ctx.trace_refs}
        found: list[Inversion] = []
        for trace_id, trace in sorted(ctx.traces.items()):
            found.extend(
                _trace_inversions(ctx, trace, refs.get(trace_id.lower()), tolerance, long_after)
            )
        if len(found) < self.int_param(ctx, "min_inversions"):
            return None
        pairs = Counter[str](f"{i.caller} → {i.callee} ({i.kind})" for i in found)
        worst = max(found, key=lambda i: i.seconds)
        trace_ids: list[str] = []
        for inversion in sorted(found, key=lambda i: -i.seconds):
            if inversion.trace_id not in trace_ids:
                trace_ids.append(inversion.trace_id)
        reason = (
            f"{worst.callee} kept working {worst.seconds:.2f} s after {worst.caller} gave up"
            if worst.kind == "early"
            else f"{worst.caller} waited {worst.seconds:.2f} s longer than {worst.callee} worked"
        )
        evidence: dict[str, Any] = {
            "endpoints": _endpoints(ctx, trace_ids),
            "trace_ids": trace_ids[:MAX_TRACE_IDS],
            "trace_id": worst.trace_id,
            "span": span_evidence(worst.span, reason),
            "numbers": {"inversions": len(found), **dict(pairs.most_common(10))},
        }
        top = ", ".join(f"{p} ({n})" for p, n in pairs.most_common(3))
        summary = f"Timeout inversion in {len(found)} calls: {top}; worst: {reason}"
        return self.finding(ctx, summary, evidence)


def _trace_inversions(
    ctx: AnalysisContext,
    trace: Trace,
    ref: TraceRef | None,
    tolerance: float,
    long_after: float,
) -> list[Inversion]:
    out: list[Inversion] = []
    if ref is not None and ref.outcome == "timeout":
        entry = entry_span(trace, ref)
        if entry is not None:
            gave_up = ctx.t0 + ref.t + ref.latency
            outlived = entry.end_ns / 1e9 - gave_up
            if outlived > max(tolerance, 0.1 * ref.latency):
                out.append(
                    Inversion(trace.trace_id, "client", entry.service, "early", outlived, entry)
                )
    for client in trace.spans:
        if client.kind != "client" or client.http_method is None or client.db_system:
            continue
        servers = [c for c in trace.children(client) if c.kind == "server"]
        if not servers:
            continue
        server = servers[0]
        caller = client.service
        outlived = (server.end_ns - client.end_ns) / 1e9
        if outlived > max(tolerance, 0.1 * client.duration_s):
            out.append(Inversion(trace.trace_id, caller, server.service, "early", outlived, server))
            continue
        extra = client.duration_s - server.duration_s
        if extra > long_after and extra > server.duration_s:
            out.append(Inversion(trace.trace_id, caller, server.service, "late", extra, client))
    return out


def _depth(trace: Trace, span: Span) -> int:
    depth, current = 0, span
    seen: set[str] = set()
    while (parent := trace.parent(current)) is not None and parent.span_id not in seen:
        seen.add(parent.span_id)
        depth += 1
        current = parent
    return depth


def _endpoints(ctx: AnalysisContext, trace_ids: list[str]) -> list[str]:
    refs = {r.trace_id.lower(): r.endpoint for r in ctx.trace_refs}
    out: set[str] = set()
    for trace_id in trace_ids:
        endpoint = refs.get(trace_id.lower())
        if endpoint is None:
            trace = trace_of(ctx, trace_id)
            endpoint = trace.endpoint() if trace is not None else None
        if endpoint:
            out.add(endpoint)
    return sorted(out)
