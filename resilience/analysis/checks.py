"""PromQL checks per phase, judged from the series gathered into the run directory.

A check holds for a phase when its expectation holds at **every** point of **every** series
the PromQL returned over the phase window (gathered every ``step`` seconds, default 1 s).
NaN points mean "no data at that instant" (e.g. a rate over no requests, ``0/0``) and are
left out; ±Inf points are real values and are judged. A check whose query returns no point
at all is *not evaluated* (reason "no data"), never passed by default. Results also carry
min/max/last and the worst point, so a report can say how far off a check was.

The source is normally ``resilience.rundir.series.RecordedPrometheus`` (what the runner
gathered after the run); series that could not be gathered make the check ``not_evaluated``
with the reason, never a failure. Phases are on the experiment clock; ``t0`` turns them
into the wall-clock windows the series are stamped in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from resilience.errors import ObserveError
from resilience.experiment.expectation import Expectation
from resilience.observe.prometheus import PrometheusSource, Series
from resilience.vocabulary import CheckStatus, Phase, Severity, phase_key

logger = logging.getLogger(__name__)

CheckPhase = Literal["baseline", "fault", "recovery", "run"]
CHECK_PHASES: tuple[CheckPhase, ...] = ("baseline", "fault", "recovery", "run")


@dataclass(frozen=True)
class Check:
    """A PromQL expression judged over one phase."""

    name: str
    promql: str
    phase: CheckPhase
    expect: Expectation
    severity: Severity = "critical"
    description: str = ""

    def __post_init__(self) -> None:
        if self.phase not in CHECK_PHASES:
            raise ValueError(
                f"check {self.name!r}: phase must be one of {CHECK_PHASES}, got {self.phase!r}"
            )


@dataclass(frozen=True)
class SeriesPoint:
    """One point of one series, with the series' labels (for "worst point" reporting)."""

    labels: Mapping[str, str]
    t: float
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "t": self.t, "value": _json_float(self.value)}


@dataclass(frozen=True)
class CheckResult:
    """What a check found. ``reason`` says why it is not evaluated, or summarises the outcome."""

    check: Check
    status: CheckStatus
    reason: str
    windows: tuple[Phase, ...] = ()
    points: int = 0
    failing_points: int = 0
    min: float | None = None
    max: float | None = None
    last: float | None = None
    worst: SeriesPoint | None = None
    first_failure: SeriesPoint | None = None
    series_file: str | None = None
    series: tuple[Series, ...] = field(default=(), repr=False, compare=False)

    @property
    def fails_run(self) -> bool:
        """A critical check that was evaluated and did not hold."""
        return self.status == "failed" and self.check.severity == "critical"

    def to_dict(self) -> dict[str, Any]:
        """The journal's ``checks`` entry."""
        return {
            "name": self.check.name,
            "promql": self.check.promql,
            "phase": self.check.phase,
            "expect": str(self.check.expect),
            "severity": self.check.severity,
            "status": self.status,
            "passed": None if self.status == "not_evaluated" else self.status == "passed",
            "reason": self.reason,
            "windows": [{"name": w.name, "start": w.start, "end": w.end} for w in self.windows],
            "points": self.points,
            "failing_points": self.failing_points,
            "min": _json_float(self.min),
            "max": _json_float(self.max),
            "last": _json_float(self.last),
            "worst": self.worst.to_dict() if self.worst else None,
            "first_failure": self.first_failure.to_dict() if self.first_failure else None,
            "series_file": self.series_file,
        }


def phase_windows(phases: Iterable[Phase]) -> dict[str, list[Phase]]:
    """Group phases by the checks' word for them (``phase_key``: a spike is a check's
    ``fault``) and add ``run`` (first start to last end) if absent."""
    grouped: dict[str, list[Phase]] = {}
    for phase in phases:
        if phase.duration > 0:
            grouped.setdefault(phase_key(phase.name), []).append(phase)
    if "run" not in grouped and grouped:
        everything = [w for ws in grouped.values() for w in ws]
        grouped["run"] = [
            Phase("run", min(w.start for w in everything), max(w.end for w in everything))
        ]
    return grouped


def judge(check: Check, series: Sequence[Series], windows: Sequence[Phase] = ()) -> CheckResult:
    """Apply the every-point rule to series already fetched (no I/O)."""
    points = [SeriesPoint(s.labels, t, v) for s in series for t, v in s.points if not math.isnan(v)]
    if not points:
        return CheckResult(
            check,
            "not_evaluated",
            "no data: the query returned no point in the phase window",
            windows=tuple(windows),
            series=tuple(series),
        )
    expect = check.expect
    failing = [p for p in points if not expect.holds(p.value)]
    values = [p.value for p in points]
    latest_t = max(p.t for p in points)
    at_latest = [p for p in points if p.t == latest_t]
    last = _worst(at_latest, expect) or at_latest[0]
    worst = _worst(points, expect)
    first_failure = min(failing, key=lambda p: p.t) if failing else None
    status: CheckStatus = "failed" if failing else "passed"
    if failing:
        reason = (
            f"{len(failing)} of {len(points)} points break '{expect}'"
            f" (worst {_fmt(worst.value if worst else failing[0].value)}"
            f" at {_fmt_labels(worst.labels if worst else failing[0].labels)})"
        )
    else:
        reason = f"all {len(points)} points hold '{expect}' (min {_fmt(min(values))}, max {_fmt(max(values))})"
    return CheckResult(
        check,
        status,
        reason,
        windows=tuple(windows),
        points=len(points),
        failing_points=len(failing),
        min=min(values),
        max=max(values),
        last=last.value,
        worst=worst,
        first_failure=first_failure,
        series=tuple(series),
    )


def evaluate_checks(
    checks: Sequence[Check],
    source: PrometheusSource,
    phases: Iterable[Phase],
    *,
    t0: float,
    files: Mapping[str, str] | None = None,
    step: float = 1.0,
) -> list[CheckResult]:
    """Judge every check over its phase (experiment-clock phases, ``t0`` their wall-clock
    origin); one result per check, in order; never raises for a missing series (those
    results are ``not_evaluated`` with the reason). ``files`` maps an expression to the
    file its series are in, which the result names as its evidence."""
    windows_by_phase = phase_windows(phases)
    results: list[CheckResult] = []
    for check in checks:
        windows = windows_by_phase.get(check.phase, [])
        if not windows:
            results.append(
                CheckResult(check, "not_evaluated", f"the run has no {check.phase} phase")
            )
            continue
        try:
            series: list[Series] = []
            for window in windows:
                series.extend(
                    source.query_range(check.promql, t0 + window.start, t0 + window.end, step)
                )
        except ObserveError as exc:
            logger.info("check %r not evaluated: %s", check.name, exc)
            results.append(CheckResult(check, "not_evaluated", str(exc), windows=tuple(windows)))
            continue
        result = judge(check, series, windows)
        file = (files or {}).get(check.promql)
        if file is not None:
            result = replace(result, series_file=file)
        results.append(result)
    return results


@dataclass(frozen=True)
class ShopMetrics:
    """The reference shop's metric and label names (one place, to match resilience/shop)."""

    pool_waiting: str = "shop_db_pool_waiting"
    pool_in_use: str = "shop_db_pool_in_use"
    pool_size: str = "shop_db_pool_size"
    http_errors: str = "shop_http_errors_total"
    http_duration: str = "shop_http_request_duration_seconds"
    upstream_requests: str = "shop_upstream_requests_total"
    upstream_pool_waiting: str = "shop_upstream_pool_waiting"
    breaker_state: str = "shop_breaker_state"
    """0 closed, 1 open, 2 half-open."""
    rate_window: str = "5s"


def builtin_shop_checks(
    metrics: ShopMetrics | None = None, *, baseline_p95_s: float = 0.5
) -> list[Check]:
    """Checks over the shop's own metrics.

    Baseline checks are ``warning``: whatever the mode, the shop is healthy before any fault
    (ground truth), so a failure there means the baseline, and every comparison against
    it, is suspect. Fault and recovery checks are ``info``: they describe what happened
    (fragile and hardened are expected to differ) and leave the verdict to the detectors.
    """
    m = metrics or ShopMetrics()
    w = m.rate_window
    waiting = f"max({m.pool_waiting})"
    saturation = f"max({m.pool_in_use} / {m.pool_size})"
    # A counter that never moved has no series at all: "or on() vector(0)" turns "no
    # errors yet" into 0 instead of "no data".
    errors = f"sum by (service) (rate({m.http_errors}[{w}])) or on() vector(0)"
    p95 = f"histogram_quantile(0.95, sum by (service, le) (rate({m.http_duration}_bucket[{w}])))"
    timeouts = (
        f'sum by (service, upstream) (rate({m.upstream_requests}{{outcome="timeout"}}[{w}]))'
        " or on() vector(0)"
    )
    upstream_waiting = f"max by (service, pool) ({m.upstream_pool_waiting})"
    breaker = f"max by (service, upstream) ({m.breaker_state})"
    zero = Expectation("==", 0)
    return [
        Check("db pool has no waiters", waiting, "baseline", zero, "warning",
              "Requests waiting for a database connection before any fault."),
        Check("db pool has no waiters", waiting, "fault", zero, "info",
              "Waiters during the fault: the pool is exhausted (pool_exhaustion evidence)."),
        Check("db pool below its size", saturation, "baseline", Expectation("<", 1), "warning",
              "Connections in use reach the pool size before any fault."),
        Check("db pool below its size", saturation, "fault", Expectation("<", 1), "info",
              "Every connection in use during the fault."),
        Check("upstream pools have no waiters", upstream_waiting, "baseline", zero, "warning",
              "Gateway calls waiting for an upstream connection slot before any fault."),
        Check("upstream pools have no waiters", upstream_waiting, "fault", zero, "info",
              "Waiters on a gateway upstream pool during the fault: with one shared pool "
              "(fragile), calls to a healthy upstream queue behind the hung one."),
        Check("no http errors", errors, "baseline", zero, "warning",
              "Per-service error rate (errors/s) before any fault."),
        Check("no http errors", errors, "fault", zero, "info",
              "Per-service error rate during the fault: which services shed or fail."),
        Check("no http errors", errors, "recovery", zero, "info",
              "Errors after the heal: how long failure outlives the fault."),
        Check(f"p95 latency under {baseline_p95_s:g}s", p95, "baseline",
              Expectation("<", baseline_p95_s), "warning",
              "Server-side p95 per service before any fault (client-side is the ground truth)."),
        Check(f"p95 latency under {baseline_p95_s:g}s", p95, "fault",
              Expectation("<", baseline_p95_s), "info",
              "Server-side p95 per service during the fault; blocked workers can hide latency."),
        Check("no upstream timeouts", timeouts, "baseline", zero, "warning",
              "Upstream calls ending in a timeout (per service and upstream) before any fault."),
        Check("no upstream timeouts", timeouts, "fault", zero, "info",
              "Upstream timeouts during the fault: client deadlines firing."),
        Check("breakers closed", breaker, "baseline", zero, "warning",
              "Circuit breakers (hardened mode) closed before any fault; no data in fragile."),
        Check("breakers closed", breaker, "recovery", zero, "info",
              "Breakers after the heal: open time adds to recovery."),
    ]  # fmt: skip


def _worst(points: Sequence[SeriesPoint], expect: Expectation) -> SeriesPoint | None:
    index = expect.worst_index([p.value for p in points])
    return None if index is None else points[index]


def _json_float(v: float | None) -> float | str | None:
    if v is None:
        return None
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _fmt_labels(labels: Mapping[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return "{" + inner + "}"
