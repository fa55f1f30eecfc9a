"""Recovery time: how long after the last heal requests are served as in the baseline again.

A load spike's recovery is measured the same way, from the moment its load was back down
(the start of the recovery phase: ``phases_from_spike``); "the heal" below reads "the end
of the spike" there.

Only requests **sent after the heal** count (analysis/phases.py): a request sent before the
heal that ended after it belongs to the fault, and closed-model users still waiting out
the client timeout of such a request send nothing new meanwhile — that silence is not the
target's recovery. The band comes from the baseline's one-second samples: the median ±
k·MAD of error rate and p95 latency, with floors so that a flat baseline (MAD 0) does not
make one stray error or one slow second a "not recovered". A second after the heal is
judged only when it holds at least ``min_requests`` requests (a tenth of the baseline's
typical second, at most five); it is *in band* when its errors (one is always tolerated) and its p95 are
within the band. Recovery time is the time from the heal to the start of the first run of
``stable_seconds`` judged in-band seconds, where a single out-of-band second inside such a
run is forgiven (two in a row restart the count). The run is judged over the whole load,
so it must also hold for each endpoint on its own: over the run's seconds (the forgiven
one left out) an endpoint's errors stay within what its baseline error rate makes likely
— the expected count plus three binomial standard deviations, plus one (a breaker
half-open on a light endpoint fails most of its few requests, one or two a second, which
the whole load's per-second tolerance would hide); a run that does not hold is set aside
(``RecoveryResult.lagging``) and the search goes on from its next second. No such run before the end of the window:
not recovered (a metastable failure looks like that). A baseline of fewer than
``min_baseline_seconds`` judged seconds makes the result inconclusive ("baseline too
short"), never a failure.

The degradation area is ∫(1 - Q(t)) dt over the fault (or spike) and recovery phases, with Q(t) the
share of the baseline's typical throughput that was served well (OK and not slower than
the band) in that second: a number in "seconds of lost good service".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from resilience.analysis.data import SecondSeries, second_series, window_stats
from resilience.analysis.phases import PhasedLoad
from resilience.analysis.statistics import mad, median
from resilience.rundir.load import LoadView
from resilience.vocabulary import STRESS_PHASES, Phase, phase_named

P95_FLOOR_MS = 50.0
"""A second's p95 may exceed the baseline median by this much and still be in band."""
MIN_BASELINE_SECONDS = 5
"""Fewer steady baseline seconds than this: no band worth judging recovery against."""


@dataclass(frozen=True)
class Band:
    error_rate_max: float
    p95_max_ms: float | None
    min_requests: int
    """Fewer requests than this in a second: the second is not judged."""
    baseline_error_rate: float
    baseline_p95_ms: float | None
    baseline_rps: float
    samples: int
    """Baseline seconds the band was built from."""

    def judged(self, requests: int) -> bool:
        return requests >= self.min_requests

    def holds(self, requests: int, errors: int, p95: float | None) -> tuple[bool, str]:
        allowed = max(self.error_rate_max * requests, 1.0)
        if errors > allowed:
            return False, f"error rate {errors / requests:.1%} above {self.error_rate_max:.1%}"
        if self.p95_max_ms is not None and p95 is not None and p95 > self.p95_max_ms:
            return False, f"p95 {p95:.0f} ms above {self.p95_max_ms:.0f} ms"
        return True, "in band"


@dataclass(frozen=True)
class Lagging:
    """A stable run of the whole load that did not hold for one endpoint."""

    first: int
    last: int
    endpoint: str
    errors: int
    requests: int
    allowed: float

    def describe(self) -> str:
        return (
            f"{self.endpoint}: {self.errors} of {self.requests} requests failed in seconds "
            f"{self.first}-{self.last} (its baseline allows {self.allowed:.1f})"
        )


LAGGING_Z = 3.0
"""How many standard deviations above its baseline's error count an endpoint may be."""


@dataclass(frozen=True)
class RecoveryResult:
    seconds: float | None
    recovered: bool | None
    """None: inconclusive (see ``note``)."""
    budget_seconds: float | None
    heal_time: float
    band: Band | None
    stable_seconds: int
    degradation_area: float
    first_stable_second: int | None
    out_of_band: list[tuple[int, str]] = field(default_factory=list)
    note: str = ""
    judged_seconds: int = 0
    lagging: list[Lagging] = field(default_factory=list)
    """Stable runs of the whole load set aside because one endpoint had not recovered."""

    @property
    def within_budget(self) -> bool | None:
        if self.budget_seconds is None or self.recovered is None:
            return None
        return self.recovered and self.seconds is not None and self.seconds <= self.budget_seconds


def baseline_band(
    view: LoadView, seconds: Sequence[int], *, endpoint: str | None = None, k: float = 3.0
) -> Band | None:
    series = second_series(view, endpoint, seconds)
    if not series.seconds:
        return None
    # Drop seconds before the load had ramped up: the first seconds of a run carry the spawn.
    reqs = series.requests
    peak = max(reqs) if reqs else 0
    keep = [i for i, r in enumerate(reqs) if r >= 0.5 * peak and r > 0]
    if not keep:
        return None
    rates = [series.errors[i] / reqs[i] for i in keep]
    p95s = [v for i in keep if (v := series.p95[i]) is not None]
    rps = [float(reqs[i]) for i in keep]
    med_rate = median(rates)
    med_rps = median(rps)
    med_p95 = median(p95s) if p95s else None
    rate_max = max(med_rate + k * _finite(mad(rates)), med_rate + 0.02)
    p95_max = None
    if med_p95 is not None:
        # Floors: a service with a 20 ms baseline p95 is "back" at 70 ms; one 65 ms second
        # on a busy machine must not read as "not recovered yet".
        p95_max = max(med_p95 + k * _finite(mad(p95s)), med_p95 * 1.5, med_p95 + P95_FLOOR_MS)
    min_requests = max(1, min(5, math.ceil(0.1 * med_rps)))
    return Band(rate_max, p95_max, min_requests, med_rate, med_p95, med_rps, len(keep))


def _finite(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def measure_recovery(
    load: LoadView | PhasedLoad,
    phases: Sequence[Phase],
    *,
    endpoint: str | None = None,
    band_k: float = 3.0,
    stable_seconds: int = 5,
    budget_seconds: float | None = None,
    min_baseline_seconds: int = MIN_BASELINE_SECONDS,
) -> RecoveryResult | None:
    """None when the run has no recovery phase (no fault, or a fault never healed)."""
    phased = load if isinstance(load, PhasedLoad) else PhasedLoad(load, phases)
    baseline = phase_named(phases, "baseline")
    recovery = phase_named(phases, "recovery")
    if recovery is None or baseline is None:
        return None
    heal = recovery.start
    band = baseline_band(*phased.of("baseline"), endpoint=endpoint, k=band_k)
    if band is None or band.samples < min_baseline_seconds:
        have = 0 if band is None else band.samples
        return RecoveryResult(
            None, None, budget_seconds, heal, band, stable_seconds, 0.0, None,
            note=f"inconclusive: the baseline is too short to judge recovery ({have} s of "
            f"steady load, {min_baseline_seconds} s needed)",
        )  # fmt: skip
    view, seconds = phased.of("recovery")
    series = second_series(view, endpoint, seconds)
    baseline_view, baseline_seconds = phased.of("baseline")
    rates = _endpoint_error_rates(baseline_view, baseline_seconds, view, endpoint=endpoint)
    first_stable: int | None = None
    out: list[tuple[int, str]] = []
    lagging: list[Lagging] = []
    looked_upto = len(series.seconds)
    begin = 0
    while (run := _stable_run(series, band, stable_seconds, begin, out)) is not None:
        first, last, blips = run
        # The forgiven second is forgiven for every endpoint: its errors are not counted.
        kept = [series.seconds[i] for i in range(first, last + 1) if i not in blips]
        behind = _lagging_endpoint(view, rates, kept)
        if behind is None:
            first_stable, looked_upto = series.seconds[first], last + 1
            break
        lagging.append(behind)
        begin = first + 1  # that run does not hold: look for one starting later
    out = sorted(set(out))
    judged = sum(1 for r in series.requests[:looked_upto] if band.judged(r))
    note = ""
    if judged < stable_seconds and first_stable is None:
        note = (
            f"only {judged} second(s) after the heal held enough requests to judge "
            f"({stable_seconds} stable seconds are needed)"
        )
    impaired = [p for p in phases if p.name in (*STRESS_PHASES, "recovery")]
    area = degradation_area(phased, impaired, band, endpoint=endpoint)
    if first_stable is None:
        return RecoveryResult(
            None, False, budget_seconds, heal, band, stable_seconds, area, None, out, note,
            judged, lagging,
        )  # fmt: skip
    secs = max(0.0, first_stable - heal)
    return RecoveryResult(
        round(secs, 3), True, budget_seconds, heal, band, stable_seconds, area, first_stable,
        out, note, judged, lagging,
    )  # fmt: skip


def _stable_run(
    series: SecondSeries,
    band: Band,
    stable_seconds: int,
    begin: int,
    out: list[tuple[int, str]],
) -> tuple[int, int, set[int]] | None:
    """From index ``begin`` of ``series``: the first run of ``stable_seconds`` judged
    in-band seconds (one out-of-band second inside it forgiven) as its first and last index
    and the indexes forgiven, or None; the out-of-band seconds are added to ``out``."""
    start: int | None = None
    stable = 0
    blip: int | None = None
    forgiven: set[int] = set()
    for i in range(begin, len(series.seconds)):
        if not band.judged(series.requests[i]):
            continue
        ok, why = band.holds(series.requests[i], series.errors[i], series.p95[i])
        if ok:
            if start is None:
                start = i
            stable += 1
            if blip is not None:
                forgiven.add(blip)
                blip = None
            if stable >= stable_seconds:
                return start, i, forgiven
            continue
        out.append((series.seconds[i], why))
        if start is not None and blip is None:
            blip = i  # one out-of-band second inside a stable run is forgiven
            continue
        start, stable, blip, forgiven = None, 0, None, set()
    return None


def _endpoint_error_rates(
    baseline: LoadView,
    baseline_seconds: Sequence[int],
    recovery: LoadView,
    *,
    endpoint: str | None,
) -> dict[str, float]:
    """The baseline's error rate of each endpoint, pooled over its requests (an endpoint
    quiet in the baseline: the whole load's); empty when one endpoint is judged."""
    if endpoint is not None:
        return {}
    names = sorted(set(baseline.endpoints) | set(recovery.endpoints))
    if len(names) < 2:
        return {}
    overall = window_stats(baseline, None, baseline_seconds)
    whole = overall.errors / overall.requests if overall.requests else 0.0
    rates: dict[str, float] = {}
    for name in names:
        stats = window_stats(baseline, name, baseline_seconds)
        rates[name] = stats.errors / stats.requests if stats.requests else whole
    return rates


def allowed_errors(requests: int, rate: float) -> float:
    """Errors ``requests`` may hold at a baseline error rate of ``rate``: the expected
    count plus ``LAGGING_Z`` standard deviations (binomial), plus one always."""
    expected = requests * rate
    return expected + LAGGING_Z * math.sqrt(expected * (1.0 - rate)) + 1.0


def _lagging_endpoint(
    view: LoadView, rates: dict[str, float], seconds: Sequence[int]
) -> Lagging | None:
    """The first endpoint a stable run does not hold for, or None.

    The run is judged second by second over all endpoints together, where one error a
    second is tolerated; an endpoint with little traffic (a breaker half-open, letting
    only its probe through) can fail most of its few requests and hide in that
    tolerance. Over the whole run, each endpoint's errors must stay within what its own
    baseline makes likely (``allowed_errors``)."""
    if not seconds:
        return None
    for name, rate in rates.items():
        stats = window_stats(view, name, seconds)
        allowed = allowed_errors(stats.requests, rate)
        if stats.errors > allowed:
            return Lagging(seconds[0], seconds[-1], name, stats.errors, stats.requests, allowed)
    return None


def degradation_area(
    load: LoadView | PhasedLoad,
    phases: Sequence[Phase],
    band: Band,
    *,
    endpoint: str | None = None,
) -> float:
    """Σ (1 - Q(s)) over the phases' seconds; Q(s) = good requests / baseline throughput."""
    if band.baseline_rps <= 0:
        return 0.0
    phased = load if isinstance(load, PhasedLoad) else PhasedLoad(load, phases)
    threshold_us = None if band.p95_max_ms is None else band.p95_max_ms * 1000.0
    area = 0.0
    for phase in phases:
        view, seconds = phased.of(phase.name)
        table = view.table(endpoint, seconds, (), threshold_us)
        ok = table.counts[:, 0]
        slow = table.above if table.above is not None else np.zeros_like(ok)
        for good in np.maximum(0, ok - slow).tolist():
            quality = min(1.0, good / band.baseline_rps)
            area += 1.0 - quality
    return round(area, 3)
