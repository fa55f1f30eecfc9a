"""Phase comparison: per endpoint, the fault and recovery phases against the baseline.

Each endpoint's one-second samples of p95 latency and error rate are compared with
``statistics.compare`` (Mann-Whitney U with the effect-size floor, Kayenta's judge):
``higher``, ``lower`` or ``same``. Fewer than ``min_samples`` (30) one-second samples on
either side of any comparison makes the whole detector ``inconclusive``: one info finding
that says how many samples each phase had, not one per endpoint. Otherwise one info
finding lists the endpoints and phases that differ (nothing when none does). Severity
info and never failing by default: the SLOs decide pass or fail; this says what moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import BaseDetector, phase_points, rounded
from resilience.analysis.detectors.base import Finding
from resilience.analysis.statistics import Comparison, compare
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.vocabulary import Phase

METRICS = ("p95", "error_rate")


class PhaseComparisonDetector(BaseDetector):
    kind: ClassVar[str] = "phase_comparison"
    default_severity: ClassVar[Severity] = "info"
    default_fails_run: ClassVar[bool] = False

    def applies(self, ctx: AnalysisContext) -> bool:
        return ctx.phase("baseline") is not None and (
            ctx.phase("fault") is not None or ctx.phase("recovery") is not None
        )

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        baseline = ctx.phase("baseline")
        if baseline is None:
            return []
        others = [p for p in (ctx.phase("fault"), ctx.phase("recovery")) if p is not None]
        min_samples = self.int_param(ctx, "min_samples")
        alpha = self.param(ctx, "alpha")
        min_effect = self.param(ctx, "min_effect")
        results: dict[str, dict[str, dict[str, Comparison]]] = {}
        short: dict[str, int] = {}
        for endpoint in ctx.load.endpoints:
            base = _samples(ctx, endpoint, baseline)
            short[f"{endpoint} baseline"] = len(base["p95"])
            for phase in others:
                other = _samples(ctx, endpoint, phase)
                short[f"{endpoint} {phase.name}"] = len(other["p95"])
                for metric in METRICS:
                    results.setdefault(endpoint, {}).setdefault(phase.name, {})[metric] = compare(
                        base[metric],
                        other[metric],
                        alpha=alpha,
                        min_effect=min_effect,
                        min_samples=min_samples,
                    )
        if not results:
            return []
        every = [c for by_phase in results.values() for r in by_phase.values() for c in r.values()]
        if any(c.verdict == "inconclusive" for c in every):
            fewest = min(short.values()) if short else 0
            evidence: dict[str, Any] = {
                "endpoints": sorted(results),
                "seconds": [],
                "numbers": {
                    "samples needed": min_samples,
                    **{f"{k} samples": v for k, v in short.items()},
                },
                "reason": f"needs at least {min_samples} one-second samples per phase; "
                f"the shortest has {fewest}",
            }
            return [
                self.finding(
                    ctx,
                    f"Phase comparison inconclusive: at least {min_samples} one-second samples "
                    f"per phase are needed (the shortest phase has {fewest})",
                    evidence,
                    status="inconclusive",
                )
            ]
        changed = {
            (endpoint, phase, metric): c
            for endpoint, by_phase in results.items()
            for phase, by_metric in by_phase.items()
            for metric, c in by_metric.items()
            if c.verdict in ("higher", "lower")
        }
        if not changed:
            return []
        numbers: dict[str, Any] = {}
        for (endpoint, name, metric), c in changed.items():
            numbers[f"{endpoint} {name} {metric} median ratio"] = rounded(c.ratio_of_medians)
            numbers[f"{endpoint} {name} {metric} p"] = rounded(c.p_value, 6)
        lines = [
            f"{endpoint} {metric} {c.verdict} in {name}"
            for (endpoint, name, metric), c in sorted(changed.items())
        ]
        evidence = {
            "endpoints": sorted({e for e, _, _ in changed}),
            "seconds": [],
            "numbers": numbers,
            "comparisons": {
                f"{endpoint} {name} {metric}": {
                    "verdict": c.verdict,
                    "p_value": rounded(c.p_value, 6),
                    "cliffs_delta": rounded(c.cliffs_delta),
                    "ratio_of_medians": rounded(c.ratio_of_medians),
                    "reason": c.reason,
                }
                for (endpoint, name, metric), c in changed.items()
            },
        }
        shown = "; ".join(lines[:6]) + (f"; and {len(lines) - 6} more" if len(lines) > 6 else "")
        return [self.finding(ctx, f"Phase comparison against the baseline: {shown}", evidence)]


def _samples(ctx: AnalysisContext, endpoint: str, phase: Phase) -> dict[str, list[float]]:
    points = phase_points(ctx, endpoint, phase)
    return {
        "p95": [p.p95 for p in points if p.p95 is not None],
        "error_rate": [p.error_rate for p in points if p.error_rate is not None],
    }
