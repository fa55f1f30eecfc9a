"""Helpers the detectors share: parameters, per-endpoint phase numbers, trace look-ups,
the "explaining span" of a failed request, and evidence in the shape reports read.

Evidence keys are a contract with the reports: ``endpoints`` (list), ``seconds`` (affected
second indexes), ``trace_ids`` (at most ``MAX_TRACE_IDS`` examples), ``trace_id`` + ``span``
(``{service, name, duration_ms, reason}``) for the span that explains the finding,
``numbers`` (named numbers) and ``series`` (pointers to gathered files under the run's
``prometheus/``: ``[{file, promql, labels}]``, see ``series_refs``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resilience.analysis.detectors.base import Detector
from resilience.analysis.statistics import Trend, mann_kendall
from resilience.experiment.detector_params import declared
from resilience.histogram import Histogram
from resilience.observe.prometheus import Series
from resilience.rundir.load import LoadView
from resilience.vocabulary import Phase

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.experiment.model import Experiment
    from resilience.observe.spans import Span, Trace
    from resilience.rundir.records import TraceRef

logger = logging.getLogger(__name__)

MAX_TRACE_IDS = 5


class BaseDetector(Detector):
    """A ``Detector`` that can say it does not apply to a run at all.

    ``applies`` is asked before ``needs``: a detector with nothing to judge (no fault, a
    run too short for a trend, no writes) stays silent instead of reporting that a data
    source it would not have used is missing.
    """

    def applies(self, ctx: AnalysisContext) -> bool:
        return True

    def param(self, ctx: AnalysisContext, name: str) -> float:
        """The experiment's value of a number parameter, else its declared default
        (``resilience/experiment/detector_params.py``, checked when the file loads)."""
        return ctx.param(self.kind, name, number_default(self.kind, name))

    def int_param(self, ctx: AnalysisContext, name: str) -> int:
        return int(self.param(ctx, name))


def number_default(kind: str, name: str) -> float:
    """The declared default of a number parameter (``KeyError`` if it is not declared)."""
    default = declared(kind, name).default
    if isinstance(default, str) or default is None:
        raise TypeError(f"{kind} param {name!r} is not a number parameter")
    return float(default)


# -- load numbers -------------------------------------------------------------------------


def percentile_ms(hist: Histogram, percentile: float) -> float:
    """HdrHistogram's ``get_value_at_percentile`` in milliseconds (0 when empty)."""
    (value,) = hist.percentiles_ms((percentile,))
    return 0.0 if value is None else value


def errors_of(counts: Mapping[str, int]) -> int:
    """Every outcome that is not ``ok`` (4xx, 5xx, timeouts, connection errors, unexpected)."""
    return sum(v for k, v in counts.items() if k != "ok")


@dataclass(frozen=True)
class SecondPoint:
    """One second of one endpoint: requests, errors (non-OK) and p95 in milliseconds."""

    second: int
    requests: int
    errors: int
    p95: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def phase_points(ctx: AnalysisContext, endpoint: str | None, phase: Phase) -> list[SecondPoint]:
    """Per-second points of ``endpoint`` over the requests of ``phase``."""
    return second_points(ctx.phase_load(phase.name), endpoint, ctx.phase_seconds(phase.name))


def second_points(
    view: LoadView, endpoint: str | None, seconds: Iterable[int]
) -> list[SecondPoint]:
    """Per-second points of ``endpoint``; seconds without requests are left out."""
    table = view.table(endpoint, seconds, (95.0,))
    out: list[SecondPoint] = []
    rows = zip(
        table.seconds.tolist(),
        table.requests.tolist(),
        table.errors.tolist(),
        table.percentiles[95.0].tolist(),
        strict=True,
    )
    for second, requests, errors, p95 in rows:
        if requests:
            out.append(SecondPoint(second, requests, errors, None if math.isnan(p95) else p95))
    return out


@dataclass(frozen=True)
class PhaseNumbers:
    """One endpoint over one phase: totals and latency percentiles (ms) of the merged seconds."""

    requests: int
    errors: int
    timeouts: int
    p50: float | None
    p95: float | None
    max: float | None
    seconds_with_data: int

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "error_rate": rounded(self.error_rate, 4),
            "p50_ms": rounded(self.p50, 1),
            "p95_ms": rounded(self.p95, 1),
            "max_ms": rounded(self.max, 1),
            "seconds_with_data": self.seconds_with_data,
        }


def phase_numbers(ctx: AnalysisContext, endpoint: str | None, phase: Phase) -> PhaseNumbers:
    """One endpoint's totals and percentiles over the requests of ``phase`` (placed by their
    [sent, ended] interval when the run has phase marks)."""
    view = ctx.phase_load(phase.name)
    seconds = ctx.phase_seconds(phase.name)
    hist, counts, _ = view.window(endpoint, seconds)
    with_data = int((view.table(endpoint, seconds, ()).requests > 0).sum())
    requests = sum(counts.values())
    errors = errors_of(counts)
    timeouts = counts.get("timeout", 0)
    if hist.total == 0:
        return PhaseNumbers(requests, errors, timeouts, None, None, None, with_data)
    return PhaseNumbers(
        requests,
        errors,
        timeouts,
        percentile_ms(hist, 50),
        percentile_ms(hist, 95),
        hist.max_us / 1000.0,
        with_data,
    )


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded; ``None`` for a missing or non-finite one (evidence is JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


# -- time -------------------------------------------------------------------------------


def wall_window(ctx: AnalysisContext, phase: Phase) -> tuple[float, float]:
    """The phase on the wall clock (unix seconds), for Prometheus range queries."""
    return ctx.t0 + phase.start, ctx.t0 + phase.end


def run_window(ctx: AnalysisContext) -> Phase | None:
    """The whole run (first phase start to last phase end) as one phase named ``run``."""
    if not ctx.phases:
        return None
    return Phase("run", min(p.start for p in ctx.phases), max(p.end for p in ctx.phases))


def second_of(ctx: AnalysisContext, unix_s: float) -> int:
    """The experiment-clock second index of a wall-clock time."""
    return math.floor(unix_s - ctx.t0)


def phase_of(phases: Sequence[Phase], t: float) -> str | None:
    """The name of the phase holding experiment-clock time ``t``; a time after the run
    (a span that ended after the load did) counts in the last phase."""
    for phase in phases:
        if phase.start <= t < phase.end:
            return phase.name
    if phases and t >= max(p.end for p in phases):
        return phases[-1].name
    return None


# -- traces ------------------------------------------------------------------------------


def trace_of(ctx: AnalysisContext, trace_id: str) -> Trace | None:
    return ctx.traces.get(trace_id) or ctx.traces.get(trace_id.lower())


def span_evidence(span: Span, reason: str) -> dict[str, Any]:
    return {
        "service": span.service,
        "name": span.name,
        "duration_ms": round(span.duration_ns / 1e6, 1),
        "reason": reason,
    }


@dataclass(frozen=True)
class Explanation:
    """Why one request was slow or failed, read from its trace."""

    trace_id: str
    span: dict[str, Any]
    kind: str
    """``wait`` (on a shared resource), ``server_gap`` (missing or late server span),
    ``late_entry`` (the target's first span started late) or ``no_spans``."""
    weight: float
    """Seconds the explanation accounts for (to pick the strongest example)."""


def entry_span(trace: Trace, ref: TraceRef | None) -> Span | None:
    """The target's first span for the request: the child of the load engine's span if
    present, else the trace's root."""
    if ref is not None and ref.span_id:
        children = [s for s in trace.spans if s.parent_id == ref.span_id.lower()]
        if children:
            return min(children, key=lambda s: s.start_ns)
    return trace.root()


def explain(
    ctx: AnalysisContext,
    ref: TraceRef,
    *,
    min_wait_s: float = 0.1,
    late_after_s: float = 0.5,
) -> Explanation | None:
    """The span that explains a slow or failed request, strongest first: a wait on a shared
    resource, then a missing or late server span of a callee, then the target's own first
    span starting late (the request queued before the target took it). ``None`` when the
    trace says nothing (or is not there; see ``explain_missing``)."""
    trace = trace_of(ctx, ref.trace_id)
    if trace is None:
        return None
    waits = trace.waits(min_duration_s=min_wait_s)
    if waits:
        wait = max(waits, key=lambda w: w.duration_s)
        span = wait.span
        size = span.attributes.get("pool.size")
        resource = wait.resource or "?"
        what = f"{wait.kind} {resource!r}" + (f" (size {size})" if size is not None else "")
        outcome = "and gave up" if wait.failed else "before getting it"
        reason = f"waited {wait.duration_s * 1000:.0f} ms for {what} {outcome}"
        return Explanation(trace.trace_id, span_evidence(span, reason), "wait", wait.duration_s)
    gaps = trace.server_gaps(late_after_s=late_after_s)
    if gaps:

        def gap_weight(g: Any) -> float:
            return float(g.delay_s) if g.delay_s is not None else g.client.duration_s

        gap = max(gaps, key=gap_weight)
        peer = gap.peer or "the callee"
        if gap.kind == "missing":
            reason = (
                f"no server span from {peer}: the call queued before the callee could take "
                f"it (or never reached it) while the caller waited {gap.client.duration_s:.2f} s"
            )
        else:
            reason = (
                f"the server span at {peer} started {gap.delay_s or 0:.2f} s after the call: "
                "the request queued before the callee took it"
            )
        return Explanation(
            trace.trace_id, span_evidence(gap.client, reason), "server_gap", gap_weight(gap)
        )
    entry = entry_span(trace, ref)
    if entry is not None:
        delay = entry.start_ns / 1e9 - (ctx.t0 + ref.t)
        if delay > late_after_s:
            reason = (
                f"{entry.service} started serving {delay:.2f} s after the client sent the "
                "request: it queued before the target took it"
            )
            return Explanation(trace.trace_id, span_evidence(entry, reason), "late_entry", delay)
    return None


def strongest(explanations: Iterable[Explanation | None]) -> Explanation | None:
    found = [e for e in explanations if e is not None]
    order = {"wait": 3, "server_gap": 2, "late_entry": 1, "no_spans": 0}
    return max(found, key=lambda e: (order.get(e.kind, 0), e.weight), default=None)


def example_ids(refs: Iterable[TraceRef], limit: int = MAX_TRACE_IDS) -> list[str]:
    """Up to ``limit`` distinct trace ids, in the given order."""
    out: list[str] = []
    for ref in refs:
        if ref.trace_id not in out:
            out.append(ref.trace_id)
        if len(out) >= limit:
            break
    return out


# -- Prometheus -----------------------------------------------------------------------------


def series_key(series: Series) -> tuple[tuple[str, str], ...]:
    """A series' identity without its metric name (to join in_use / size / waiting)."""
    return tuple(sorted((k, v) for k, v in series.labels.items() if k != "__name__"))


def series_refs(
    ctx: AnalysisContext, promqls: Sequence[str], labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Evidence pointers to gathered series: per expression its file under ``prometheus/``
    and, when given, the labels that pick the series meant (the report draws those)."""
    refs: list[dict[str, Any]] = []
    for promql in promqls:
        file = ctx.series_files.get(promql)
        if file is not None:
            ref: dict[str, Any] = {"file": file, "promql": promql}
            if labels:
                ref["labels"] = dict(labels)
            refs.append(ref)
    return refs


def setting(experiment: Experiment, kind: str, name: str, default: str | None) -> str | None:
    """A detector's string parameter straight from the experiment (for ``promql()``);
    ``default`` depends on the target, so it is the caller's."""
    declared(kind, name)  # a name the detector did not declare is a bug
    settings = next((v for k, v in experiment.detectors.items() if k == kind), None)
    if settings is None or name not in settings.params:
        return default
    return str(settings.params[name])


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels if k not in ("__name__",))
    return "{" + inner + "}"


# -- trends ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrendJudgement:
    """A Mann-Kendall trend with its Theil-Sen line read as growth over the window."""

    trend: Trend
    start: float
    end: float

    @property
    def growth(self) -> float:
        return self.end - self.start

    @property
    def growth_ratio(self) -> float | None:
        return self.growth / self.start if self.start > 0 else None

    def grows(self, *, min_ratio: float, min_absolute: float) -> bool:
        """Increasing (significantly) and by enough: at least ``min_absolute`` and
        ``min_ratio`` of the starting level."""
        return (
            self.trend.direction == "increasing"
            and self.growth >= min_absolute
            and self.growth >= min_ratio * max(self.start, 0.0)
        )

    def numbers(self, unit: str, scale: float = 1.0) -> dict[str, Any]:
        return {
            f"start {unit}": rounded(self.start / scale, 2),
            f"end {unit}": rounded(self.end / scale, 2),
            f"growth {unit}": rounded(self.growth / scale, 2),
            "growth ratio": rounded(self.growth_ratio, 3),
            f"slope {unit} per hour": rounded(self.trend.slope * 3600 / scale, 2),
            "mann-kendall p": rounded(self.trend.p_value, 6),
            "mann-kendall z": rounded(self.trend.z, 3),
            "samples": self.trend.n,
        }


def judge_trend(x: Sequence[float], y: Sequence[float], *, alpha: float) -> TrendJudgement:
    """Mann-Kendall on ``y`` over ``x``; start and end read off the Theil-Sen line."""
    trend = mann_kendall(y, x, alpha=alpha)
    if math.isnan(trend.slope) or not x:
        return TrendJudgement(trend, math.nan, math.nan)
    return TrendJudgement(
        trend,
        trend.intercept + trend.slope * x[0],
        trend.intercept + trend.slope * x[-1],
    )


def recovery_budget(ctx: AnalysisContext) -> float | None:
    """Seconds after the heal (or the spike) the target has to recover: ``slo.recovery.within``,
    else the recovery measurement's own budget."""
    slo = ctx.experiment.slo.recovery
    if slo is not None and slo.within is not None:
        return float(slo.within)
    return ctx.recovery.budget_seconds if ctx.recovery is not None else None
