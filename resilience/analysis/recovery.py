"""Recovery time: how long after the last heal the target is back inside its baseline band.

The band comes from the baseline's one-second samples: the median ± k·MAD of error rate,
p95 latency and throughput, with floors so that a perfectly flat baseline (MAD 0) does not
make one stray error a "not recovered". A second is *in band* when its error rate and p95
are not above the band and its throughput is not below it. Recovery time is the time from
the last heal to the start of the first run of ``stable_seconds`` consecutive in-band
seconds; if no such run exists before the end of the observation window the target did not
recover (``recovered: false`` — what a metastable failure looks like).

The degradation area is ∫(1 - Q(t)) dt over the fault and recovery phases, with Q(t) the
share of the baseline's typical throughput that was served well (OK and not slower than
the band) in that second: a number in "seconds of lost good service".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from resilience.analysis.data import second_series
from resilience.analysis.statistics import mad, median
from resilience.histogram import count_above
from resilience.rundir.load import LoadView
from resilience.vocabulary import Phase, phase_named

P95_FLOOR_MS = 50.0
"""A second's p95 may exceed the baseline median by this much and still be in band."""


@dataclass(frozen=True)
class Band:
    error_rate_max: float
    p95_max_ms: float | None
    rps_min: float
    baseline_error_rate: float
    baseline_p95_ms: float | None
    baseline_rps: float

    def holds(self, requests: int, errors: int, p95: float | None) -> tuple[bool, str]:
        if requests < self.rps_min:
            return False, f"throughput {requests}/s below {self.rps_min:.1f}/s"
        rate = errors / requests if requests else 0.0
        if rate > self.error_rate_max:
            return False, f"error rate {rate:.1%} above {self.error_rate_max:.1%}"
        if self.p95_max_ms is not None and p95 is not None and p95 > self.p95_max_ms:
            return False, f"p95 {p95:.0f} ms above {self.p95_max_ms:.0f} ms"
        return True, "in band"


@dataclass(frozen=True)
class RecoveryResult:
    seconds: float | None
    recovered: bool
    budget_seconds: float | None
    heal_time: float
    band: Band
    stable_seconds: int
    degradation_area: float
    first_stable_second: int | None
    out_of_band: list[tuple[int, str]] = field(default_factory=list)
    note: str = ""

    @property
    def within_budget(self) -> bool | None:
        if self.budget_seconds is None:
            return None
        return self.recovered and self.seconds is not None and self.seconds <= self.budget_seconds


def baseline_band(
    view: LoadView, baseline: Phase, *, endpoint: str | None = None, k: float = 3.0
) -> Band | None:
    series = second_series(view, endpoint, baseline.seconds())
    if not series.seconds:
        return None
    # Drop seconds before the load had ramped up: the first seconds of a run carry the spawn.
    reqs = series.requests
    peak = max(reqs) if reqs else 0
    keep = [i for i, r in enumerate(reqs) if r >= 0.5 * peak] or list(range(len(reqs)))
    rates = [series.errors[i] / reqs[i] for i in keep if reqs[i]]
    p95s = [v for i in keep if (v := series.p95[i]) is not None]
    rps = [float(reqs[i]) for i in keep]
    med_rate = median(rates) if rates else 0.0
    med_rps = median(rps) if rps else 0.0
    med_p95 = median(p95s) if p95s else None
    rate_max = max(med_rate + k * _finite(mad(rates)), med_rate + 0.02)
    if med_rps > 0:
        rate_max = max(rate_max, med_rate + 1.5 / med_rps)
    p95_max = None
    if med_p95 is not None:
        # Floors: a service with a 20 ms baseline p95 is "back" at 60 ms; one 65 ms second
        # on a busy machine must not read as "not recovered yet".
        p95_max = max(med_p95 + k * _finite(mad(p95s)), med_p95 * 1.5, med_p95 + P95_FLOOR_MS)
    rps_min = max(0.0, min(med_rps - k * _finite(mad(rps)), 0.5 * med_rps))
    return Band(rate_max, p95_max, rps_min, med_rate, med_p95, med_rps)


def _finite(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def measure_recovery(
    view: LoadView,
    phases: Sequence[Phase],
    *,
    endpoint: str | None = None,
    band_k: float = 3.0,
    stable_seconds: int = 5,
    budget_seconds: float | None = None,
) -> RecoveryResult | None:
    """None when the run has no recovery phase (no fault, or a fault never healed)."""
    baseline = phase_named(phases, "baseline")
    recovery = phase_named(phases, "recovery")
    if recovery is None or baseline is None:
        return None
    band = baseline_band(view, baseline, endpoint=endpoint, k=band_k)
    if band is None:
        return None
    heal = recovery.start
    seconds = list(recovery.seconds())
    series = second_series(view, endpoint, seconds)
    run = 0
    first_stable: int | None = None
    out: list[tuple[int, str]] = []
    for i, second in enumerate(series.seconds):
        ok, why = band.holds(series.requests[i], series.errors[i], series.p95[i])
        if ok:
            run += 1
            if run >= stable_seconds:
                first_stable = series.seconds[i - stable_seconds + 1]
                break
        else:
            run = 0
            out.append((second, why))
    note = ""
    if len(seconds) < stable_seconds:
        note = (
            f"the recovery window ({len(seconds)} s) is shorter than the "
            f"{stable_seconds} stable seconds needed"
        )
    fault = phase_named(phases, "fault")
    area = degradation_area(view, [p for p in (fault, recovery) if p], band, endpoint=endpoint)
    if first_stable is None:
        return RecoveryResult(
            None, False, budget_seconds, heal, band, stable_seconds, area, None, out, note
        )
    secs = max(0.0, first_stable - heal)
    return RecoveryResult(
        round(secs, 3), True, budget_seconds, heal, band, stable_seconds, area, first_stable, out
    )


def degradation_area(
    view: LoadView, phases: Sequence[Phase], band: Band, *, endpoint: str | None = None
) -> float:
    """Σ (1 - Q(s)) over the phases' seconds; Q(s) = good requests / baseline throughput."""
    if band.baseline_rps <= 0:
        return 0.0
    threshold_us = None if band.p95_max_ms is None else band.p95_max_ms * 1000.0
    area = 0.0
    for phase in phases:
        for second in phase.seconds():
            counts = view.counts(endpoint, second)
            ok = counts.get("ok", 0)
            slow = 0
            hist = view.histogram(endpoint, second)
            if hist is not None and threshold_us is not None:
                slow = count_above(hist, threshold_us)
            good = max(0, ok - slow)
            quality = min(1.0, good / band.baseline_rps)
            area += 1.0 - quality
    return round(area, 3)
