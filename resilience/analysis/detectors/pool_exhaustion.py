"""Pool exhaustion: a pool with every slot in use and callers waiting, during the fault.

Two sources, either is enough:

- **Prometheus**: each pool family is three gauges (in use, size, waiting) joined on their
  labels and range-queried over the fault phase at 1 s steps. A second is *saturated*
  when in use >= size and waiting > 0; a pool saturated for at least
  ``min_saturated_seconds`` (2) seconds is a finding, with its saturated seconds, max
  waiters, its size at saturation and the series saved under ``prometheus/``. A pool
  saturated while smaller than its largest size in the run is *drained* (its dependency
  died, its connections with it; the waiters wait on reconnects), said so at severity
  info; one saturated at its full size is *exhausted* by demand. The families are the shop's database
  pool (``shop_db_pool_*``) and gateway upstream pools (``shop_upstream_pool_*``), plus one
  of the experiment's own naming (params ``in_use_metric``, ``size_metric``,
  ``waiting_metric``) for other targets.
- **Spans**: waits on a pool (``Trace.waits``: the shop's ``pool.acquire`` spans or any
  span with ``resilience.wait.kind``) in traces of requests sent during the fault, longer
  than ``wait_threshold_ms`` (500) or ending in an error (a bounded wait that gave up).
  At least ``min_long_waits`` (3) such waits on one pool is a finding, unless Prometheus
  already reported that pool; otherwise they add trace ids to its finding.

The phase judged is the fault (a load spike is one too); a run without faults — a load
test — has its load judged instead (the baseline: a pool exhausted by demand alone is a
warning sign of its own). The recovery is judged too, from Prometheus, but only after its
budget (``slo.recovery.within``): a pool still at its size with callers waiting, for a
stretch of at least ``min_stuck_seconds`` (10) consecutive seconds, once the target should
have recovered is what holds the recovery back (a leak of slots, a backlog
that never drains), and is said with the seconds after the heal. Saturation inside the
budget is the backlog of the fault draining, not a finding. Severity warning by default
(experiments raise it, e.g. ``pool-exhaustion.yaml``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import (
    MAX_TRACE_IDS,
    BaseDetector,
    label_text,
    recovery_budget,
    run_window,
    second_of,
    series_key,
    series_refs,
    setting,
    span_evidence,
    trace_of,
    wall_window,
)
from resilience.analysis.detectors.base import Finding
from resilience.errors import ObserveError
from resilience.observe.prometheus import Series
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.experiment.model import Experiment
    from resilience.observe.spans import Wait
    from resilience.vocabulary import Phase

logger = logging.getLogger(__name__)

LabelKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PoolFamily:
    """Three gauges describing pools: slots in use, slots in all, callers waiting."""

    name: str
    in_use: str
    size: str
    waiting: str
    resource_label: str | None = None
    """The label naming the pool (matched against span waits' resource)."""


SHOP_FAMILIES: tuple[PoolFamily, ...] = (
    PoolFamily("db", "shop_db_pool_in_use", "shop_db_pool_size", "shop_db_pool_waiting"),
    PoolFamily(
        "upstream",
        "shop_upstream_pool_in_use",
        "shop_upstream_pool_size",
        "shop_upstream_pool_waiting",
        resource_label="pool",
    ),
)
SHOP_DB_POOL = "orders-db"
"""The shop's database pool name on its ``pool.acquire`` spans (resilience/shop/orders_store)."""


@dataclass
class Saturation:
    """One pool's saturated seconds during the fault."""

    family: PoolFamily
    labels: LabelKey
    seconds: list[int] = field(default_factory=list)
    size: float = 0.0
    """The pool's largest size seen in the run (its capacity when healthy)."""
    size_at_saturation: float = 0.0
    """The largest size the pool had in its saturated seconds."""
    max_in_use: float = 0.0
    max_waiting: float = 0.0
    series: list[Series] = field(default_factory=list)

    @property
    def drained(self) -> bool:
        """Saturated while smaller than it had been: connections died with the dependency
        and the pool emptied (its waiters wait on reconnects), not exhausted by demand."""
        return 0 < self.size_at_saturation < self.size

    @property
    def resource(self) -> str | None:
        labels = dict(self.labels)
        if self.family.resource_label:
            return labels.get(self.family.resource_label)
        return SHOP_DB_POOL if self.family.name == "db" else None

    @property
    def title(self) -> str:
        labels = dict(self.labels)
        name = self.resource or labels.get("service") or labels.get("job") or self.family.name
        return f"{self.family.name} pool {name!r}"


SCRAPE_LABELS = frozenset({"job", "instance"})
"""Labels a scrape adds: one pool scraped by two jobs (the stack's and the experiment's
``observe.scrape``) is still one pool."""


def _one_per_pool(saturations: list[Saturation]) -> list[Saturation]:
    """One saturation per pool, whatever scraped it: the one with the most saturated
    seconds (then the first) stands for the pool."""
    kept: dict[tuple[tuple[str, str], ...], Saturation] = {}
    for sat in saturations:
        pool = tuple((k, v) for k, v in sat.labels if k not in SCRAPE_LABELS)
        if pool not in kept or len(sat.seconds) > len(kept[pool].seconds):
            kept[pool] = sat
    return list(kept.values())


class PoolExhaustionDetector(BaseDetector):
    kind: ClassVar[str] = "pool_exhaustion"
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def applies(self, ctx: AnalysisContext) -> bool:
        return self.judged_phase(ctx) is not None

    @staticmethod
    def judged_phase(ctx: AnalysisContext) -> Phase | None:
        """The fault phase; for a run without faults (a load test), its load."""
        fault = ctx.phase("fault")
        if fault is not None or ctx.faults:
            return fault
        return ctx.phase("baseline")

    def families(self, experiment: Experiment) -> list[PoolFamily]:
        families = list(SHOP_FAMILIES)
        in_use = setting(experiment, self.kind, "in_use_metric", None)
        size = setting(experiment, self.kind, "size_metric", None)
        waiting = setting(experiment, self.kind, "waiting_metric", None)
        if in_use and size and waiting:
            label = setting(experiment, self.kind, "pool_label", None)
            families.append(PoolFamily("custom", in_use, size, waiting, label))
        return families

    def promql(self, experiment: Experiment, builtin_shop: bool) -> dict[str, str]:
        out: dict[str, str] = {}
        for family in self.families(experiment):
            out[f"{family.name} pool in use"] = family.in_use
            out[f"{family.name} pool size"] = family.size
            out[f"{family.name} pool waiting"] = family.waiting
        return out

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        fault = self.judged_phase(ctx)
        if fault is None:
            return []
        if ctx.prometheus is None and (ctx.traces_unavailable or not ctx.traces):
            reason = (
                f"Prometheus: {ctx.prometheus_unavailable or 'not configured'}; "
                f"traces: {ctx.traces_unavailable or 'none collected'}"
            )
            return [
                self.finding(
                    ctx,
                    "Pool exhaustion not evaluated: neither pool metrics nor traces",
                    {"reason": reason},
                    status="not_evaluated",
                )
            ]
        saturations: list[Saturation] = []
        notes: list[str] = []
        if ctx.prometheus is not None:
            for family in self.families(ctx.experiment):
                try:
                    saturations.extend(self._saturation(ctx, family, fault))
                except ObserveError as exc:
                    logger.info("pool_exhaustion: %s", exc)
                    notes.append(f"{family.name} pool metrics not read: {exc}")
        waits = self._long_waits(ctx, fault)
        min_seconds = self.int_param(ctx, "min_saturated_seconds")
        findings: list[Finding] = []
        reported: set[str] = set()
        for sat in saturations:
            if len(sat.seconds) < min_seconds:
                continue
            resource_waits = waits.get(sat.resource or "", []) if sat.resource else []
            if sat.resource:
                reported.add(sat.resource)
            findings.append(self._from_metrics(ctx, sat, resource_waits, notes, fault))
        min_waits = self.int_param(ctx, "min_long_waits")
        for resource, pool_waits in sorted(waits.items()):
            if resource in reported or len(pool_waits) < min_waits:
                continue
            findings.append(self._from_spans(ctx, resource, pool_waits, notes, fault))
        findings.extend(self._after_the_budget(ctx, min_seconds))
        return findings

    def _after_the_budget(self, ctx: AnalysisContext, min_seconds: int) -> list[Finding]:
        """Pools still saturated in the recovery once its budget is spent (Prometheus)."""
        recovery = ctx.phase("recovery")
        stress = ctx.phase("fault")
        budget = recovery_budget(ctx)
        if ctx.prometheus is None or recovery is None or stress is None or budget is None:
            return []
        since = recovery.start + budget
        if since >= recovery.end:
            return []
        # Still exhausted: saturated for a stretch, not a second here and there (a burst of
        # callers on a busy host saturates a pool for a second without anything stuck).
        stuck = self.int_param(ctx, "min_stuck_seconds")
        findings: list[Finding] = []
        for family in self.families(ctx.experiment):
            try:
                saturations = self._saturation(ctx, family, recovery, since=since)
            except ObserveError as exc:
                logger.info("pool_exhaustion (recovery): %s", exc)
                continue
            for sat in saturations:
                if _longest_run(sat.seconds) >= max(min_seconds, stuck):
                    findings.append(self._from_metrics(ctx, sat, [], [], recovery, budget=budget))
        return findings

    # -- Prometheus -------------------------------------------------------------------

    def _saturation(
        self, ctx: AnalysisContext, family: PoolFamily, fault: Phase, *, since: float = -1e18
    ) -> list[Saturation]:
        assert ctx.prometheus is not None
        start, end = wall_window(ctx, fault)
        query = ctx.prometheus.query_range
        in_use = {series_key(s): s for s in query(family.in_use, start, end, 1.0)}
        if not in_use:
            return []
        size = {series_key(s): s for s in query(family.size, start, end, 1.0)}
        waiting = {series_key(s): s for s in query(family.waiting, start, end, 1.0)}
        whole = run_window(ctx)
        capacity: dict[LabelKey, float] = {}
        if whole is not None:
            run_start, run_end = wall_window(ctx, whole)
            for series in query(family.size, run_start, run_end, 1.0):
                capacity[series_key(series)] = max((v for _t, v in series.points), default=0.0)
        out: list[Saturation] = []
        for key, used in in_use.items():
            if key not in size or key not in waiting:
                continue
            sizes = dict(size[key].points)
            waits = dict(waiting[key].points)
            sat = Saturation(family, key, series=[used, size[key], waiting[key]])
            sat.size = capacity.get(key, 0.0)
            seconds: set[int] = set()
            for t, value in used.points:
                cap, queued = sizes.get(t), waits.get(t)
                if cap is None or queued is None or second_of(ctx, t) < since:
                    continue
                sat.size = max(sat.size, cap)
                sat.max_in_use = max(sat.max_in_use, value)
                sat.max_waiting = max(sat.max_waiting, queued)
                if value >= cap > 0 and queued > 0:
                    seconds.add(second_of(ctx, t))
                    sat.size_at_saturation = max(sat.size_at_saturation, cap)
            sat.seconds = sorted(seconds)
            out.append(sat)
        return _one_per_pool(out)

    def _from_metrics(
        self,
        ctx: AnalysisContext,
        sat: Saturation,
        waits: list[Wait],
        notes: list[str],
        phase: Phase,
        *,
        budget: float | None = None,
    ) -> Finding:
        words = ctx.phase_words(phase.name)
        if budget is not None:
            # Judged after the recovery budget: the seconds counted start there.
            after = "the spike" if ctx.spike else "the heal"
            words = f"{words}, from {budget:g} s after {after} (the recovery budget) on"
        refs = series_refs(
            ctx, [sat.family.in_use, sat.family.size, sat.family.waiting], dict(sat.labels)
        )
        evidence: dict[str, Any] = {
            "pool": sat.title,
            "labels": label_text(sat.labels),
            "phase": phase.name,
            "endpoints": [],
            "seconds": sat.seconds,
            "state": "drained" if sat.drained else "exhausted",
            "numbers": {
                "saturated seconds": len(sat.seconds),
                "pool size": sat.size,
                "pool size at saturation": sat.size_at_saturation,
                "max in use": sat.max_in_use,
                "max waiters": sat.max_waiting,
                "long waits in traces": len(waits),
            },
            **_wait_evidence(ctx, waits),
        }
        if refs:
            evidence["series"] = refs
        if notes:
            evidence["notes"] = notes
        if sat.drained:
            summary = (
                f"Pool drained, not exhausted: {sat.title} held {sat.size_at_saturation:g} of "
                f"its {sat.size:g} connections, all in use, with up to {sat.max_waiting:g} "
                f"waiters for {len(sat.seconds)} s of {words}: the dependency behind it "
                "failed and the pool emptied (the waiters wait on reconnects), not demand"
            )
            return self.finding(ctx, summary, evidence, severity="info")
        if budget is not None:
            evidence["numbers"]["recovery budget s"] = budget
            evidence["numbers"]["longest stretch s"] = _longest_run(sat.seconds)
            summary = (
                f"Pool still exhausted after the recovery budget: {sat.title} at its size "
                f"({sat.size_at_saturation:g}) with up to {sat.max_waiting:g} waiters for "
                f"{len(sat.seconds)} s of {words}"
            )
            return self.finding(ctx, summary, evidence)
        summary = (
            f"Pool exhaustion: {sat.title} at its size ({sat.size_at_saturation:g}) with up "
            f"to {sat.max_waiting:g} waiters for {len(sat.seconds)} s of {words}"
        )
        return self.finding(ctx, summary, evidence)

    # -- spans --------------------------------------------------------------------------

    def _long_waits(self, ctx: AnalysisContext, fault: Phase) -> dict[str, list[Wait]]:
        """Pool waits over the threshold (or given up: ``Wait.gave_up``) in traces of
        fault-phase requests."""
        threshold = self.param(ctx, "wait_threshold_ms") / 1000.0
        # A span that starts before the request was sent belongs to another request
        # (a trace id reused across runs): it says nothing about this fault.
        earliest_ns = (ctx.t0 + fault.start - 1.0) * 1e9
        out: dict[str, list[Wait]] = {}
        for ref in ctx.trace_refs:
            if not fault.start <= ref.t < fault.end:
                continue
            trace = trace_of(ctx, ref.trace_id)
            if trace is None:
                continue
            for wait in trace.waits():
                # Long, or given up because the pool had nothing to give; a wait that
                # failed at once because the dependency refused a connection is not.
                if wait.kind != "pool" or not (wait.duration_s >= threshold or wait.gave_up):
                    continue
                if wait.span.start_ns < earliest_ns:
                    continue
                out.setdefault(wait.resource or "?", []).append(wait)
        return out

    def _from_spans(
        self,
        ctx: AnalysisContext,
        resource: str,
        waits: list[Wait],
        notes: list[str],
        phase: Phase,
    ) -> Finding:
        longest = max(w.duration_s for w in waits)
        failed = sum(1 for w in waits if w.failed)
        evidence: dict[str, Any] = {
            "pool": resource,
            "seconds": sorted({second_of(ctx, w.span.start_ns / 1e9) for w in waits}),
            "numbers": {
                "long waits": len(waits),
                "failed waits": failed,
                "longest wait ms": round(longest * 1000, 1),
            },
            **_wait_evidence(ctx, waits),
        }
        if notes:
            evidence["notes"] = notes
        summary = (
            f"Pool exhaustion: {len(waits)} waits on pool {resource!r} during "
            f"{ctx.phase_words(phase.name)} were "
            f"long or gave up (longest {longest * 1000:.0f} ms, {failed} failed)"
        )
        return self.finding(ctx, summary, evidence)


def _longest_run(seconds: list[int]) -> int:
    """The longest stretch of consecutive seconds in a sorted list."""
    longest = run = 0
    previous: int | None = None
    for second in seconds:
        run = run + 1 if previous is not None and second == previous + 1 else 1
        longest = max(longest, run)
        previous = second
    return longest


def _wait_evidence(ctx: AnalysisContext, waits: list[Wait]) -> dict[str, Any]:
    if not waits:
        return {}
    ordered = sorted(waits, key=lambda w: -w.duration_s)
    trace_ids: list[str] = []
    for wait in ordered:
        if wait.span.trace_id not in trace_ids:
            trace_ids.append(wait.span.trace_id)
    refs = {r.trace_id.lower(): r.endpoint for r in ctx.trace_refs}
    longest = ordered[0]
    size = longest.span.attributes.get("pool.size")
    reason = (
        f"waited {longest.duration_s * 1000:.0f} ms for pool {longest.resource or '?'!r}"
        + (f" of {size}" if size is not None else "")
        + (" and gave up" if longest.failed else "")
    )
    return {
        "endpoints": sorted({refs[t] for t in trace_ids if t in refs}),
        "trace_ids": trace_ids[:MAX_TRACE_IDS],
        "trace_id": longest.span.trace_id,
        "span": span_evidence(longest.span, reason),
    }
