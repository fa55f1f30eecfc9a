"""Memory growth (endurance runs): a target process whose resident memory keeps rising.

Range-queries ``process_resident_memory_bytes`` of the target's services over the whole
run at ``step_s`` (10) second steps: for the built-in shop the jobs gateway, orders and
catalog; for another target the experiment names the query (param ``memory_promql``),
and without one the detector stays silent (it cannot tell the target's processes from
the stack's own). Like ``latency_trend`` it needs at least ``min_seconds`` (300) of run,
else no finding. Each series gets Mann-Kendall (``alpha`` 0.05) with the Theil-Sen slope;
a finding when one grows by at least ``min_growth_mb`` (20) and ``min_growth_ratio``
(0.1) of its starting level. The series are the ones gathered under ``prometheus/``. A query that
returns no series on a long run is ``not_evaluated`` (the process exports no memory
gauge, or Prometheus did not scrape it), never a silent "no growth".

A run with a fault or a spike and a recovery of at least ``min_recovery_points`` (10)
samples has its growing series judged again over the recovery alone: memory that rose
under the stress and then stayed level (Python and most allocators keep what a burst
took) is a *step*, said at severity info with the levels before, at the peak and over the
recovery; memory still rising after the stress stands at the detector's severity.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import (
    BaseDetector,
    TrendJudgement,
    judge_trend,
    label_text,
    run_window,
    series_key,
    series_refs,
    setting,
    wall_window,
)
from resilience.analysis.detectors.base import Finding
from resilience.analysis.statistics import median
from resilience.errors import ObserveError
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.experiment.model import Experiment
    from resilience.observe.prometheus import Series

logger = logging.getLogger(__name__)

SHOP_MEMORY = 'process_resident_memory_bytes{job=~"gateway|orders|catalog"}'
MB = 1024.0 * 1024.0


class MemoryGrowthDetector(BaseDetector):
    kind: ClassVar[str] = "memory_growth"
    needs: ClassVar[frozenset[str]] = frozenset({"prometheus"})
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def query(self, ctx: AnalysisContext) -> str | None:
        return self._query(ctx.experiment, ctx.builtin_shop)

    def _query(self, experiment: Experiment, builtin_shop: bool) -> str | None:
        return setting(
            experiment, self.kind, "memory_promql", SHOP_MEMORY if builtin_shop else None
        )

    def promql(self, experiment: Experiment, builtin_shop: bool) -> dict[str, str]:
        query = self._query(experiment, builtin_shop)
        return {"resident memory": query} if query else {}

    def applies(self, ctx: AnalysisContext) -> bool:
        window = run_window(ctx)
        return (
            window is not None
            and window.duration >= self.param(ctx, "min_seconds")
            and self.query(ctx) is not None
        )

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        window, query = run_window(ctx), self.query(ctx)
        if window is None or query is None or ctx.prometheus is None:
            return []
        start, end = wall_window(ctx, window)
        step = max(1.0, self.param(ctx, "step_s"))
        try:
            series = ctx.prometheus.query_range(query, start, end, step)
        except ObserveError as exc:
            logger.info("memory_growth: %s", exc)
            return [
                self.finding(
                    ctx,
                    "Memory growth not evaluated: the memory query failed",
                    {"reason": str(exc), "promql": query},
                    status="not_evaluated",
                )
            ]
        if not any(len(s.points) >= 10 for s in series):
            # Silence would read as "no growth"; say that memory was not measured.
            return [
                self.finding(
                    ctx,
                    f"Memory growth not evaluated: Prometheus has no memory series for {query}",
                    {
                        "reason": "the memory query returned no series (or too few points)",
                        "promql": query,
                    },
                    status="not_evaluated",
                )
            ]
        alpha = self.param(ctx, "alpha")
        growing, level = _judged(
            series,
            ctx.t0,
            alpha=alpha,
            min_ratio=self.param(ctx, "min_growth_ratio"),
            min_bytes=self.param(ctx, "min_growth_mb") * MB,
        )
        if not growing:
            return [self._held(ctx, level, query, window.duration)]
        stepped = self._stepped(ctx, growing, alpha=alpha)
        if len(stepped) == len(growing):
            return [self._step_finding(ctx, growing, stepped, query)]
        growing = [g for g in growing if _name(g[0]) not in stepped]
        refs = series_refs(ctx, [query])
        numbers: dict[str, Any] = {}
        for s, judged in growing:
            name = _name(s)
            for key, value in judged.numbers("MB", MB).items():
                numbers[f"{name} {key}"] = value
        worst_series, worst = max(growing, key=lambda g: g[1].growth)
        evidence: dict[str, Any] = {
            "endpoints": [],
            "seconds": [],
            "processes": [_name(s) for s, _ in growing],
            "labels": [label_text(series_key(s)) for s, _ in growing],
            "numbers": numbers,
            "promql": query,
        }
        if refs:
            evidence["series"] = refs
        if stepped:
            evidence["stepped"] = stepped
        summary = (
            f"Memory growth: {', '.join(_name(s) for s, _ in growing)}; worst "
            f"{_name(worst_series)} from {worst.start / MB:.0f} MB to {worst.end / MB:.0f} MB "
            f"over {window.duration:.0f} s (Mann-Kendall p={worst.trend.p_value:.2g})"
        )
        return [self.finding(ctx, summary, evidence)]

    def _held(
        self,
        ctx: AnalysisContext,
        level: list[tuple[Series, TrendJudgement]],
        query: str,
        duration: float,
    ) -> Finding:
        """No process grew, said with each one's levels: an endurance run's question is
        answered either way, and silence would not tell "flat" from "not looked at"."""
        numbers: dict[str, Any] = {}
        parts: list[str] = []
        for s, judged in level:
            name = _name(s)
            for key, value in judged.numbers("MB", MB).items():
                numbers[f"{name} {key}"] = value
            if not math.isnan(judged.start):
                parts.append(f"{name} {judged.start / MB:.0f} to {judged.end / MB:.0f} MB")
        evidence: dict[str, Any] = {
            "endpoints": [],
            "seconds": [],
            "processes": [_name(s) for s, _ in level],
            "labels": [label_text(series_key(s)) for s, _ in level],
            "numbers": numbers,
            "promql": query,
        }
        refs = series_refs(ctx, [query])
        if refs:
            evidence["series"] = refs
        summary = (
            f"No memory growth over {duration:.0f} s: "
            + (", ".join(parts) if parts else "no trend line could be drawn")
            + " (Theil-Sen line; growth needs a significant rise of at least "
            f"{self.param(ctx, 'min_growth_mb'):g} MB and "
            f"{self.param(ctx, 'min_growth_ratio'):.0%})"
        )
        return self.finding(ctx, summary, evidence, severity="info", status="held")

    def _stepped(
        self, ctx: AnalysisContext, growing: list[tuple[Series, TrendJudgement]], *, alpha: float
    ) -> dict[str, dict[str, float]]:
        """The growing series that are level over the recovery: name -> levels in MB."""
        stress, recovery = ctx.phase("fault"), ctx.phase("recovery")
        if stress is None or recovery is None:
            return {}
        out: dict[str, dict[str, float]] = {}
        for s, _judged in growing:
            points = [(t - ctx.t0, v) for t, v in s.points if math.isfinite(v)]
            after = [(t, v) for t, v in points if recovery.start <= t <= recovery.end]
            before = [v for t, v in points if t < stress.start]
            if len(after) < self.int_param(ctx, "min_recovery_points") or not before:
                continue
            tail = judge_trend([t for t, _ in after], [v for _, v in after], alpha=alpha)
            if tail.trend.direction == "increasing":
                continue  # still rising once the stress was over
            out[_name(s)] = {
                "before MB": round(median(before) / MB, 1),
                "peak MB": round(max(v for _, v in points) / MB, 1),
                "recovery min MB": round(min(v for _, v in after) / MB, 1),
                "recovery max MB": round(max(v for _, v in after) / MB, 1),
            }
        return out

    def _step_finding(
        self,
        ctx: AnalysisContext,
        growing: list[tuple[Series, TrendJudgement]],
        stepped: dict[str, dict[str, float]],
        query: str,
    ) -> Finding:
        stress = ctx.phase_words("fault")
        parts = [
            f"{name} {levels['before MB']:.0f} MB before, {levels['peak MB']:.0f} MB at the "
            f"peak, {levels['recovery min MB']:.0f}-{levels['recovery max MB']:.0f} MB after"
            for name, levels in stepped.items()
        ]
        evidence: dict[str, Any] = {
            "endpoints": [],
            "seconds": [],
            "processes": list(stepped),
            "labels": [label_text(series_key(s)) for s, _ in growing],
            "numbers": {
                f"{name} {key}": value
                for name, levels in stepped.items()
                for key, value in levels.items()
            },
            "stepped": stepped,
            "promql": query,
        }
        refs = series_refs(ctx, [query])
        if refs:
            evidence["series"] = refs
        summary = (
            f"Memory stepped up in {stress} and stayed level after it, not a growth: "
            + "; ".join(parts)
            + " (what a burst took is kept, not leaked)"
        )
        return self.finding(ctx, summary, evidence, severity="info")


def _judged(
    series: list[Series], t0: float, *, alpha: float, min_ratio: float, min_bytes: float
) -> tuple[list[tuple[Series, TrendJudgement]], list[tuple[Series, TrendJudgement]]]:
    """Each series with ten points or more, judged: (the growing ones, the others)."""
    growing: list[tuple[Series, TrendJudgement]] = []
    level: list[tuple[Series, TrendJudgement]] = []
    for s in series:
        points = [(t, v) for t, v in s.points if math.isfinite(v)]
        if len(points) < 10:
            continue
        judged = judge_trend([t - t0 for t, _ in points], [v for _, v in points], alpha=alpha)
        if judged.grows(min_ratio=min_ratio, min_absolute=min_bytes):
            growing.append((s, judged))
        else:
            level.append((s, judged))
    return growing, level


def _name(series: Series) -> str:
    labels = series.labels
    return labels.get("job") or labels.get("service") or labels.get("instance") or "process"
