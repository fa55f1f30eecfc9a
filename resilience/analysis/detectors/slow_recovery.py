"""Slow recovery: the target took longer than its budget to return to its baseline band
after the last heal, or never did (a metastable failure).

Reads ``ctx.recovery`` (``analysis/recovery.py``: first run of ``stable_seconds`` in-band
seconds after the heal) against the budget ``slo.recovery.within``. Over budget, or not
recovered at all, is a critical finding that fails the run, with the out-of-band seconds
and why each was out, and the degradation area. "Not recovered" is only claimed when the
run watched long enough to prove it: at least the budget plus ``stable_seconds`` after the
heal (without a budget, at least ``stable_seconds``); a shorter watch is ``inconclusive``.
A fault never healed before the load ended leaves no recovery phase: ``inconclusive``.
A load spike is judged alike, from the moment its load was back down ("after the spike").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import (
    BaseDetector,
    errors_of,
    example_ids,
    recovery_budget,
    rounded,
)
from resilience.analysis.detectors.base import Finding
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.analysis.recovery import RecoveryResult
    from resilience.vocabulary import Phase

MAX_LISTED = 30


class SlowRecoveryDetector(BaseDetector):
    kind: ClassVar[str] = "slow_recovery"
    default_severity: ClassVar[Severity] = "critical"
    default_fails_run: ClassVar[bool] = True

    def applies(self, ctx: AnalysisContext) -> bool:
        return ctx.phase("fault") is not None

    def budget(self, ctx: AnalysisContext) -> float | None:
        return recovery_budget(ctx)

    def detect(self, ctx: AnalysisContext) -> list[Finding]:  # noqa: PLR0911 (one return per recovery outcome)
        phase = ctx.phase("recovery")
        if phase is None:
            return [
                self.finding(
                    ctx,
                    f"Recovery not measured: {ctx.phase_words('fault')} was still active when "
                    "the load ended",
                    {"reason": "no recovery phase"},
                    status="inconclusive",
                )
            ]
        result = ctx.recovery
        if result is None:
            return [
                self.finding(
                    ctx,
                    "Recovery not measured: no baseline to compare the recovery phase with",
                    {"reason": "no recovery result (missing baseline band)"},
                    status="inconclusive",
                )
            ]
        budget = self.budget(ctx)
        evidence = self._evidence(ctx, result, phase, budget)
        if result.recovered is None:
            evidence["reason"] = result.note
            return [
                self.finding(
                    ctx,
                    f"Recovery undetermined: {result.note.removeprefix('inconclusive: ')}",
                    evidence,
                    status="inconclusive",
                )
            ]
        if result.recovered and result.seconds is not None:
            if budget is None or result.seconds <= budget:
                return []
            return [
                self.finding(
                    ctx,
                    f"Slow recovery: back in the baseline band {result.seconds:g} s after "
                    f"{ctx.ended}, over the {budget:g} s budget (degradation area "
                    f"{result.degradation_area:g} s of lost good service)"
                    + (
                        f"; last held back by {result.lagging[-1].describe()}"
                        if result.lagging
                        else ""
                    ),
                    evidence,
                )
            ]
        watched = phase.duration
        needed = (budget or 0.0) + result.stable_seconds
        if result.note or watched < needed:
            evidence["reason"] = result.note or (
                f"watched {watched:.0f} s after {ctx.ended}; proving 'not recovered within "
                f"{budget or 0:g} s' needs {needed:g} s"
            )
            return [
                self.finding(
                    ctx,
                    f"Recovery undetermined: not back in the baseline band in the {watched:.0f} s "
                    f"watched after {ctx.ended}, which is too short to judge",
                    evidence,
                    status="inconclusive",
                )
            ]
        over = f", budget {budget:g} s" if budget is not None else ""
        return [
            self.finding(
                ctx,
                f"No recovery (metastable failure?): still outside the baseline band "
                f"{watched:.0f} s after {ctx.ended}{over}; {len(result.out_of_band)} seconds out "
                f"of band, degradation area {result.degradation_area:g} s"
                + (f"; last {result.lagging[-1].describe()}" if result.lagging else ""),
                evidence,
            )
        ]

    def _evidence(
        self, ctx: AnalysisContext, result: RecoveryResult, phase: Phase, budget: float | None
    ) -> dict[str, Any]:
        out_seconds = [s for s, _ in result.out_of_band]
        after_heal = ctx.phase_load("recovery")
        endpoints = sorted(
            {
                e
                for e in ctx.load.endpoints
                for s in out_seconds
                if errors_of(after_heal.counts(e, s)) > 0
            }
            | {lag.endpoint for lag in result.lagging}
        )
        refs = [r for r in ctx.refs_in(phase) if r.reason != "sampled"]
        band = result.band
        return {
            "endpoints": endpoints,
            "seconds": out_seconds,
            "trace_ids": example_ids(refs),
            "out_of_band": [[s, why] for s, why in result.out_of_band[:MAX_LISTED]],
            # Stable runs of the whole load that one endpoint had not recovered in.
            "lagging": [lag.describe() for lag in result.lagging[:MAX_LISTED]],
            "recovered": result.recovered,
            "numbers": {
                "recovery seconds": result.seconds,
                "budget seconds": budget,
                "degradation area s": result.degradation_area,
                "stable seconds needed": result.stable_seconds,
                "seconds watched after heal": rounded(phase.duration, 1),
                "seconds out of band": len(out_seconds),
                "heal time s": rounded(result.heal_time, 3),
                "seconds judged after heal": result.judged_seconds,
                "band max error rate": rounded(band.error_rate_max, 4) if band else None,
                "band max p95 ms": rounded(band.p95_max_ms, 1) if band else None,
                "band min requests per second judged": band.min_requests if band else None,
                "baseline seconds in band": band.samples if band else None,
            },
        }
