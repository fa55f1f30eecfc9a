"""Running the detectors over one analysis context: the registry and the loop.

``DETECTORS`` maps each finding kind to its detector class. ``run_detectors`` runs every
enabled one (``detectors: {kind: {enabled: false}}`` turns one off) and never lets one
detector take the others down: a detector that does not apply to the run (no fault, a
run too short for a trend, no writes) is skipped silently; one whose ``needs`` are missing
(``prometheus``, ``traces``, ``readback``) yields a single ``not_evaluated`` finding with the
reason from the context; one that raises is logged and yields a ``not_evaluated`` finding
naming the error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.base import Detector, Finding
from resilience.analysis.detectors.cascading_failure import CascadingFailureDetector
from resilience.analysis.detectors.data_loss import DataLossDetector
from resilience.analysis.detectors.latency_trend import LatencyTrendDetector
from resilience.analysis.detectors.memory_growth import MemoryGrowthDetector
from resilience.analysis.detectors.phase_comparison import PhaseComparisonDetector
from resilience.analysis.detectors.pool_exhaustion import PoolExhaustionDetector
from resilience.analysis.detectors.retry_amplification import RetryAmplificationDetector
from resilience.analysis.detectors.saturation import (
    ConnectionLimitDetector,
    CpuSaturationDetector,
)
from resilience.analysis.detectors.slow_recovery import SlowRecoveryDetector
from resilience.analysis.detectors.timeout import TimeoutDetector

logger = logging.getLogger(__name__)

DETECTORS: dict[str, type[Detector]] = {
    cls.kind: cls
    for cls in (
        CascadingFailureDetector,
        TimeoutDetector,
        SlowRecoveryDetector,
        PoolExhaustionDetector,
        RetryAmplificationDetector,
        LatencyTrendDetector,
        MemoryGrowthDetector,
        CpuSaturationDetector,
        ConnectionLimitDetector,
        DataLossDetector,
        PhaseComparisonDetector,
    )
}
"""Finding kind → detector class, in the order findings are reported."""


def missing_need(ctx: AnalysisContext, need: str) -> str | None:
    """Why ``need`` is not available in ``ctx`` (``None`` when it is)."""
    if need == "prometheus" and ctx.prometheus is None:
        return f"Prometheus unavailable: {ctx.prometheus_unavailable or 'not configured'}"
    if need == "traces" and (ctx.traces_unavailable is not None or not ctx.traces):
        return f"traces unavailable: {ctx.traces_unavailable or 'none collected'}"
    if need == "readback" and ctx.readback is None:
        return f"no read-back: {ctx.readback_unavailable or 'the writes were not read back'}"
    return None


def _applies(detector: Detector, ctx: AnalysisContext) -> bool:
    applies = getattr(detector, "applies", None)
    return True if applies is None else bool(applies(ctx))


def run_detector(detector: Detector, ctx: AnalysisContext) -> list[Finding]:
    """One detector, guarded: skipped, not evaluated, its findings, or its error."""
    kind = detector.kind
    try:
        if not _applies(detector, ctx):
            logger.debug("detector %s does not apply to this run", kind)
            return []
        reasons = [r for need in sorted(detector.needs) if (r := missing_need(ctx, need))]
        if reasons:
            return [
                detector.finding(
                    ctx,
                    f"{kind} not evaluated: {'; '.join(reasons)}",
                    {"reason": "; ".join(reasons), "needs": sorted(detector.needs)},
                    status="not_evaluated",
                )
            ]
        return list(detector.detect(ctx))
    except Exception as exc:
        # A bug in one detector must not cost the run its other findings.
        logger.exception("detector %s failed", kind)
        return [
            Finding(
                kind,
                "warning",
                f"{kind} not evaluated: the detector failed ({type(exc).__name__}: {exc})",
                {"reason": "detector error", "error": f"{type(exc).__name__}: {exc}"},
                fails_run=False,
                status="not_evaluated",
            )
        ]


def cite_saved_traces(finding: Finding, ctx: AnalysisContext) -> Finding:
    """Evidence cites only traces saved under the run's ``traces/``: a trace id the backend
    never returned is evidence of nothing (the reader could not open it). The ids left out
    are counted, and why there are no traces is said."""
    evidence = finding.evidence
    saved = {t.lower() for t in ctx.traces}
    dropped = 0
    ids = evidence.get("trace_ids")
    if isinstance(ids, list):
        kept = [t for t in ids if isinstance(t, str) and t.lower() in saved]
        dropped += len(ids) - len(kept)
        if kept:
            evidence["trace_ids"] = kept
        else:
            del evidence["trace_ids"]
    single = evidence.get("trace_id")
    if isinstance(single, str) and single.lower() not in saved:
        del evidence["trace_id"]
        evidence.pop("span", None)
        dropped += 1
    if dropped:
        evidence["uncited_trace_ids"] = dropped
        if ctx.traces_unavailable:
            evidence.setdefault("traces_unavailable", ctx.traces_unavailable)
    return finding


def run_detectors(
    ctx: AnalysisContext, detectors: Mapping[str, type[Detector]] | None = None
) -> list[Finding]:
    """Every enabled detector's findings, in registry order; never raises for a detector.
    Their evidence cites only the traces saved with the run (``cite_saved_traces``)."""
    findings: list[Finding] = []
    for kind, cls in (DETECTORS if detectors is None else detectors).items():
        settings = ctx.settings(kind)
        if settings is not None and not settings.enabled:
            continue
        findings.extend(cite_saved_traces(f, ctx) for f in run_detector(cls(), ctx))
    return findings
