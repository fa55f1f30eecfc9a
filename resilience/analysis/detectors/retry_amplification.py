"""Retry amplification: each client request costs more downstream calls during the fault
than before it.

Two sources, either is enough, both reported when present:

- **Traces**: downstream calls of a request are its HTTP client spans (calls to other
  services; database spans are not counted). The mean per request is compared between
  requests sent in the baseline and in the fault phase, each side needing at least
  ``min_traces`` (3) traces. Fault-phase traces are mostly those of failed or slow
  requests (the load engine keeps those), which is exactly where retries happen.
- **Prometheus**: downstream attempts over requests served, from counters increased over
  each window: by default the shop's gateway (``shop_upstream_requests_total`` without
  rejections, which counts every attempt including retries, over
  ``shop_http_request_duration_seconds_count``); ``shop_upstream_retries_total`` is
  reported beside it. Other targets give ``downstream_promql`` and ``requests_promql``:
  counter expressions (``sum(my_calls_total)``), gathered over the whole run; the increase
  over a window is the sum of the counter's rises in it (a drop is a reset: the new value
  counts as a rise). Counters move when calls *complete*: calls
  stuck during a hang complete (and are retried) at the heal, so the fault window is also
  judged together with the recovery after it, each window needing ``min_requests`` (20).

A finding when a fault-side ratio exceeds ``factor`` (1.5) times the baseline's.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import (
    MAX_TRACE_IDS,
    BaseDetector,
    rounded,
    setting,
    span_evidence,
    trace_of,
    wall_window,
)
from resilience.analysis.detectors.base import Finding
from resilience.errors import ObserveError
from resilience.vocabulary import Phase, Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.experiment.model import Experiment
    from resilience.observe.spans import Span, Trace

logger = logging.getLogger(__name__)

SHOP_DOWNSTREAM = 'sum(shop_upstream_requests_total{service="gateway",outcome!="rejected"})'
SHOP_REQUESTS = 'sum(shop_http_request_duration_seconds_count{service="gateway"})'
SHOP_RETRIES = 'sum(shop_upstream_retries_total{service="gateway"})'


def downstream_calls(trace: Trace) -> list[Span]:
    """HTTP client spans: the calls this request made to other services."""
    return [
        s
        for s in trace.spans
        if s.kind == "client" and s.http_method is not None and not s.db_system
    ]


class RetryAmplificationDetector(BaseDetector):
    kind: ClassVar[str] = "retry_amplification"
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def applies(self, ctx: AnalysisContext) -> bool:
        return ctx.phase("fault") is not None and ctx.phase("baseline") is not None

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        baseline, fault = ctx.phase("baseline"), ctx.phase("fault")
        if baseline is None or fault is None:
            return []
        if ctx.prometheus is None and (ctx.traces_unavailable or not ctx.traces):
            return [
                self.finding(
                    ctx,
                    "Retry amplification not evaluated: neither request counters nor traces",
                    {
                        "reason": f"Prometheus: {ctx.prometheus_unavailable or 'not configured'}; "
                        f"traces: {ctx.traces_unavailable or 'none collected'}"
                    },
                    status="not_evaluated",
                )
            ]
        factor = self.param(ctx, "factor")
        numbers: dict[str, Any] = {"factor": factor}
        evidence: dict[str, Any] = {"endpoints": [], "numbers": numbers}
        reasons: list[str] = []
        traced = self._from_traces(ctx, baseline, fault, numbers, evidence)
        if traced is not None and traced > factor:
            reasons.append(f"traces: {traced:.2f}x the baseline's calls per request")
        measured = self._from_prometheus(ctx, baseline, fault, numbers)
        if measured is not None and measured > factor:
            reasons.append(f"metrics: {measured:.2f}x the baseline's attempts per request")
        if not reasons:
            return []
        evidence["seconds"] = list(fault.seconds())
        summary = f"Retry amplification during the fault ({'; '.join(reasons)})"
        if "span" in evidence:
            summary += f". Trace {evidence['trace_id'][:16]}: {evidence['span']['reason']}"
        return [self.finding(ctx, summary, evidence)]

    def _from_traces(
        self,
        ctx: AnalysisContext,
        baseline: Phase,
        fault: Phase,
        numbers: dict[str, Any],
        evidence: dict[str, Any],
    ) -> float | None:
        # Keyed by role, not by name: the phase under stress may be a spike's.
        per_phase: dict[str, list[tuple[int, Trace, str]]] = {"baseline": [], "fault": []}
        for ref in ctx.trace_refs:
            role = next(
                (
                    r
                    for r, p in (("baseline", baseline), ("fault", fault))
                    if p.start <= ref.t < p.end
                ),
                None,
            )
            trace = trace_of(ctx, ref.trace_id)
            if role is None or trace is None:
                continue
            per_phase[role].append((len(downstream_calls(trace)), trace, ref.endpoint))
        minimum = self.int_param(ctx, "min_traces")
        base, flt = per_phase["baseline"], per_phase["fault"]
        if len(base) < minimum or len(flt) < minimum:
            return None
        base_mean = sum(n for n, _, _ in base) / len(base)
        fault_mean = sum(n for n, _, _ in flt) / len(flt)
        numbers["traces baseline"] = len(base)
        numbers["traces fault"] = len(flt)
        numbers["calls per request baseline (traces)"] = round(base_mean, 3)
        numbers["calls per request fault (traces)"] = round(fault_mean, 3)
        if base_mean <= 0:
            return None
        ratio = fault_mean / base_mean
        numbers["ratio (traces)"] = round(ratio, 3)
        heavy = sorted(flt, key=lambda x: -x[0])
        evidence["trace_ids"] = [t.trace_id for n, t, _ in heavy[:MAX_TRACE_IDS] if n > base_mean]
        evidence["endpoints"] = sorted({e for n, _, e in heavy if n > base_mean})
        if heavy and heavy[0][0] > base_mean:
            _, trace, _ = heavy[0]
            span, attempts = _most_retried(trace)
            if span is not None:
                evidence["trace_id"] = trace.trace_id
                evidence["span"] = span_evidence(
                    span, f"{attempts} calls downstream from one {span.name!r}"
                )
        return ratio

    def _from_prometheus(
        self, ctx: AnalysisContext, baseline: Phase, fault: Phase, numbers: dict[str, Any]
    ) -> float | None:
        if ctx.prometheus is None:
            return None
        downstream, requests, retries = self._counters(ctx.experiment)
        end = max(p.end for p in ctx.phases)
        windows = [baseline, fault, Phase("fault+recovery", fault.start, end)]
        minimum = self.param(ctx, "min_requests")
        ratios: dict[str, float] = {}
        try:
            for window in windows:
                calls = self._increase(ctx, downstream, window)
                served = self._increase(ctx, requests, window)
                if calls is None or served is None:
                    continue
                numbers[f"downstream calls {window.name}"] = rounded(calls, 1)
                numbers[f"requests {window.name}"] = rounded(served, 1)
                if retries is not None:
                    numbers[f"retries {window.name}"] = rounded(
                        self._increase(ctx, retries, window), 1
                    )
                if served >= minimum and served > 0:
                    ratio = calls / served
                    ratios[window.name] = ratio
                    numbers[f"calls per request {window.name}"] = round(ratio, 3)
        except ObserveError as exc:
            logger.info("retry_amplification: %s", exc)
            numbers["prometheus error"] = str(exc)
            return None
        base = ratios.get("baseline")
        fault_side = [r for name, r in ratios.items() if name != "baseline"]
        if base is None or base <= 0 or not fault_side:
            return None
        ratio = max(fault_side) / base
        numbers["ratio (metrics)"] = round(ratio, 3)
        return ratio

    def _counters(self, experiment: Experiment) -> tuple[str, str, str | None]:
        custom = setting(experiment, self.kind, "downstream_promql", None)
        downstream = custom or SHOP_DOWNSTREAM
        requests = setting(experiment, self.kind, "requests_promql", None) or SHOP_REQUESTS
        return downstream, requests, None if custom else SHOP_RETRIES

    def promql(self, experiment: Experiment, builtin_shop: bool) -> dict[str, str]:
        downstream, requests, retries = self._counters(experiment)
        if not builtin_shop and downstream == SHOP_DOWNSTREAM:
            return {}
        out = {"downstream calls": downstream, "requests served": requests}
        if retries is not None:
            out["retries"] = retries
        return out

    @staticmethod
    def _increase(ctx: AnalysisContext, counter: str, window: Phase) -> float | None:
        """How much ``counter`` rose over ``window`` (a drop is a reset)."""
        assert ctx.prometheus is not None
        start, end = wall_window(ctx, window)
        total: float | None = None
        for s in ctx.prometheus.query_range(counter, start, end, 1.0):
            values = [v for _, v in s.points if math.isfinite(v)]
            if len(values) < 2:
                continue
            rise = sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
            total = rise if total is None else total + rise
        return total


def _most_retried(trace: Trace) -> tuple[Span | None, int]:
    """The span with the most downstream calls among its children, and their count."""
    counts: dict[str, int] = {}
    for call in downstream_calls(trace):
        if call.parent_id is not None:
            counts[call.parent_id] = counts.get(call.parent_id, 0) + 1
    if not counts:
        return None, 0
    parent_id, n = max(counts.items(), key=lambda kv: kv[1])
    return trace.span(parent_id), n
