"""Latency trend (endurance runs): p95 latency creeping up over the run.

The window is the baseline phase (the whole run when there is no fault: a fault's own
effect is not a trend), without its first ``warmup_s`` (60) seconds, where users are still
being spawned and latency is low because load is. It must last at least ``min_seconds``
(300): shorter runs (smoke profiles) get no finding at all, not an "inconclusive" one,
because a trend test on a minute of data says nothing. The window is cut into
``bucket_s`` (10) second buckets; each bucket's p95 comes from its merged histograms (all
endpoints), buckets with fewer than ``min_bucket_requests`` (5) requests are skipped.

Mann-Kendall (``alpha`` 0.05) on the buckets' p95 with the Theil-Sen slope: a finding when
the trend is increasing and the Theil-Sen line grows by at least ``min_growth_ms`` (50)
and ``min_growth_ratio`` (0.2) of its starting level, so a statistically clear but tiny
drift on a long run is not reported.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import (
    BaseDetector,
    TrendJudgement,
    judge_trend,
    percentile_ms,
)
from resilience.analysis.detectors.base import Finding
from resilience.vocabulary import Phase, Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.rundir.load import LoadView


def bucket_p95(
    view: LoadView, window: Phase, bucket_s: int, min_requests: int
) -> tuple[list[float], list[float]]:
    """(bucket start second, p95 ms) for each bucket of ``window`` with enough requests."""
    seconds = list(window.seconds())
    xs: list[float] = []
    ys: list[float] = []
    for i in range(0, len(seconds), bucket_s):
        chunk = seconds[i : i + bucket_s]
        hist, _, _ = view.window(None, chunk)
        if hist.total >= min_requests:
            xs.append(float(chunk[0]))
            ys.append(percentile_ms(hist, 95))
    return xs, ys


class LatencyTrendDetector(BaseDetector):
    kind: ClassVar[str] = "latency_trend"
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def window(self, ctx: AnalysisContext) -> Phase | None:
        baseline = ctx.phase("baseline")
        if baseline is None:
            return None
        start = baseline.start + self.param(ctx, "warmup_s")
        if baseline.end - start < self.param(ctx, "min_seconds"):
            return None
        return Phase("trend window", start, baseline.end)

    def applies(self, ctx: AnalysisContext) -> bool:
        return self.window(ctx) is not None

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        window = self.window(ctx)
        if window is None:
            return []
        bucket_s = max(1, self.int_param(ctx, "bucket_s"))
        xs, ys = bucket_p95(ctx.load, window, bucket_s, self.int_param(ctx, "min_bucket_requests"))
        if len(xs) < 10:
            return []
        judged = judge_trend(xs, ys, alpha=self.param(ctx, "alpha"))
        if not judged.grows(
            min_ratio=self.param(ctx, "min_growth_ratio"),
            min_absolute=self.param(ctx, "min_growth_ms"),
        ):
            return [self._held(ctx, window, judged, bucket_s)]
        # The buckets whose p95 sits above the line's starting level plus half the growth.
        above = judged.start + judged.growth / 2
        seconds = [int(x) for x, y in zip(xs, ys, strict=True) if y > above]
        evidence: dict[str, Any] = {
            "endpoints": list(ctx.load.endpoints),
            "seconds": seconds,
            "numbers": {
                **judged.numbers("ms"),
                "bucket s": bucket_s,
                "window start s": window.start,
                "window end s": window.end,
            },
        }
        summary = (
            f"Latency trend: p95 rises from {judged.start:.0f} ms to {judged.end:.0f} ms over "
            f"{window.duration:.0f} s (Mann-Kendall p={judged.trend.p_value:.2g}, "
            f"{judged.trend.slope * 3600:.0f} ms/h)"
        )
        return [self.finding(ctx, summary, evidence)]

    def _held(
        self, ctx: AnalysisContext, window: Phase, judged: TrendJudgement, bucket_s: int
    ) -> Finding:
        """No drift, said with its numbers: an endurance run's question is answered either
        way, and silence would not tell "flat" from "not looked at"."""
        evidence: dict[str, Any] = {
            "endpoints": list(ctx.load.endpoints),
            "seconds": [],
            "numbers": {
                **judged.numbers("ms"),
                "bucket s": bucket_s,
                "window start s": window.start,
                "window end s": window.end,
            },
        }
        if math.isnan(judged.start):
            line = "no trend line could be drawn"
        else:
            line = (
                f"p95 {judged.start:.0f} ms at the start and {judged.end:.0f} ms at the end of "
                f"the Theil-Sen line ({judged.trend.slope * 3600:+.0f} ms/h, Mann-Kendall "
                f"p={judged.trend.p_value:.2g})"
            )
        summary = (
            f"No latency trend over {window.duration:.0f} s: {line}; a trend needs a "
            f"significant rise of at least {self.param(ctx, 'min_growth_ms'):g} ms and "
            f"{self.param(ctx, 'min_growth_ratio'):.0%}"
        )
        return self.finding(ctx, summary, evidence, severity="info", status="held")
