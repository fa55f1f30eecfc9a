"""SLOs per phase and per endpoint, computed from the merged per-second histograms.

Percentiles of a phase are read from the histogram merged over the phase's seconds (never
an average of per-second percentiles). Error rate counts every non-OK outcome (4xx, 5xx,
timeouts, connection errors). ``min_rps`` is requests sent per second of the phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from resilience.analysis.data import WindowStats, window_stats
from resilience.analysis.phases import PhasedLoad
from resilience.rundir.load import LoadView
from resilience.vocabulary import Phase, phase_key

LATENCY_METRICS = ("p50", "p95", "p99", "max")


class Thresholds(Protocol):
    """The shape of the experiment model's per-phase thresholds (latencies in seconds)."""

    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    error_rate: float | None
    min_rps: float | None


class PhaseThresholds(Thresholds, Protocol):
    @property
    def endpoints(self) -> Mapping[str, Thresholds]: ...


@dataclass(frozen=True)
class SloResult:
    phase: str
    endpoint: str | None
    metric: str
    threshold: float
    observed: float | None
    passed: bool | None
    unit: str

    @property
    def summary(self) -> str:
        where = self.endpoint or "all endpoints"
        if self.observed is None:
            return f"{self.phase} {where} {self.metric}: no data"
        op = ">=" if self.metric == "min_rps" else "<="
        return (
            f"{self.phase} {where} {self.metric} {_fmt(self.observed, self.unit)} "
            f"(must be {op} {_fmt(self.threshold, self.unit)})"
        )


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "ratio":
        return f"{value:.2%}"
    return f"{value:.1f}/s"


def _check(
    phase: str, endpoint: str | None, thresholds: Thresholds, stats: WindowStats
) -> list[SloResult]:
    results: list[SloResult] = []
    for metric in LATENCY_METRICS:
        limit = getattr(thresholds, metric)
        if limit is None:
            continue
        observed = getattr(stats, metric)
        limit_ms = float(limit) * 1000.0
        passed = None if observed is None else observed <= limit_ms
        results.append(SloResult(phase, endpoint, metric, limit_ms, observed, passed, "ms"))
    if thresholds.error_rate is not None:
        rate = stats.error_rate
        passed = None if rate is None else rate <= thresholds.error_rate
        results.append(
            SloResult(phase, endpoint, "error_rate", thresholds.error_rate, rate, passed, "ratio")
        )
    if thresholds.min_rps is not None:
        rps = stats.rps
        passed = None if rps is None else rps >= thresholds.min_rps
        results.append(
            SloResult(phase, endpoint, "min_rps", thresholds.min_rps, rps, passed, "rps")
        )
    return results


def evaluate_slos(
    load: LoadView | PhasedLoad,
    phases: Sequence[Phase],
    slo: Mapping[str, PhaseThresholds | None],
) -> list[SloResult]:
    """Evaluate ``slo[phase_name]`` (whole target, then each named endpoint) on each phase
    (a spike by ``slo["fault"]``, ``phase_key``):
    over the requests of the phase (by their [sent, ended] interval when ``load`` is a
    ``PhasedLoad`` of a run with phase marks, else by send time)."""
    phased = load if isinstance(load, PhasedLoad) else PhasedLoad(load, phases)
    results: list[SloResult] = []
    for phase in phases:
        thresholds = slo.get(phase_key(phase.name))
        if thresholds is None:
            continue
        view, seconds = phased.of(phase.name)
        results.extend(_check(phase.name, None, thresholds, window_stats(view, None, seconds)))
        for endpoint, per_endpoint in thresholds.endpoints.items():
            stats = window_stats(view, endpoint, seconds)
            results.extend(_check(phase.name, endpoint, per_endpoint, stats))
    return results


def missing_load_from(meta: Mapping[str, object]) -> int | None:
    """The first send second without the load of a worker a distributed run lost (None:
    no worker was lost): from it on, requests per second measure the rig, not the target."""
    lost = meta.get("lost_workers")
    if not isinstance(lost, list):
        return None
    seconds = [
        int(w["last_second"]) + 1 for w in lost if isinstance(w, dict) and "last_second" in w
    ]
    return min(seconds, default=None)


def without_missing_load(
    results: Sequence[SloResult], phases: Sequence[Phase], since: int | None
) -> list[SloResult]:
    """``min_rps`` is not judged in a phase that reaches past ``since`` (a load worker was
    lost: its missing requests are the rig's, not a failure of the target)."""
    if since is None:
        return list(results)
    ends = {phase.name: phase.end for phase in phases}
    return [
        replace(r, passed=None) if r.metric == "min_rps" and ends.get(r.phase, 0.0) > since else r
        for r in results
    ]
