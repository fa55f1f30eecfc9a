"""The breaking point of a rising load: the highest load at which the SLOs still held.

For a load that only rises (the stress preset, rising stages, rising arrival-rate stages, a
``load.search``) and has no faults, the per-second load data (by send time) is judged second
by second against the baseline's SLOs, smoothed so that one slow request or one bad second
does not make the knee (docs/findings.md, "Breaking point"):

- each second ``s`` is judged on the **window** of the ``WINDOW`` (3) seconds ending at it,
  when that window holds at least ``MIN_REQUESTS`` (20) requests (an endpoint with fewer is
  not judged in it); a latency limit breaks when more than ``1 - q`` of the window's
  requests took longer than the limit (its percentile ``q`` is above it; ``max``: any
  request above it), ``error_rate`` when the window's error rate is above it;
- the SLOs **broke** at the first second of the first run of ``SUSTAIN`` (5) consecutive
  broken seconds: one bad second spoils at most ``WINDOW`` windows, fewer than ``SUSTAIN``;
- **throughput** broke when the load offered rose by at least ``GROWTH`` (25 %) above the
  load at which the served rate (OK answers per second over the window) last rose by
  ``GAIN`` (5 %), for ``SUSTAIN`` seconds in a row, with no such rise: more load, no more
  served; it broke the second after that last rise.

The **breaking point** is the earlier of the two; the load it held is the load offered in
the last second that held before it (users in flight for the closed model, from the rig's
samples or else the plan; requests per second planned for the open model) and the rate it
served there. What broke first is each limit broken in that second, the worst first. The
resource behind it is the first resource saturated up to that second
(``Resources.first_saturated``). Pure: from the run directory's load data, rig samples and
the experiment.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from resilience.analysis.data import window_stats
from resilience.analysis.resources import Resources
from resilience.analysis.slo import SloResult
from resilience.analysis.smoothing import GAIN, GROWTH, MIN_REQUESTS, SUSTAIN, WINDOW
from resilience.experiment.model import Capacity, Experiment, PhaseSlo, Thresholds
from resilience.rundir.load import LoadView
from resilience.rundir.rig import RigSample, RigTable, as_table

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "max": 1.0}

Unit = Literal["users", "rps"]


@dataclass(frozen=True)
class Breach:
    """One limit broken in the breaking second: a latency percentile, the error rate, or
    the throughput no longer rising with the load."""

    metric: str
    endpoint: str | None
    observed: float
    threshold: float
    unit: str
    """ms, ratio, or rps (throughput: observed is the served rate, threshold the rate it
    had reached before)."""

    @property
    def severity(self) -> float:
        """How far past its limit (observed / threshold)."""
        if self.metric == "throughput":
            return 1.0
        return self.observed / self.threshold if self.threshold > 0 else math.inf

    def text(self) -> str:
        """ "p95 of GET /catalog/items (612 ms > 500 ms)"."""
        where = self.endpoint or "all endpoints"
        if self.metric == "throughput":
            return (
                f"throughput no longer rising with the load ({self.observed:.1f} req/s "
                f"served, {self.threshold:.1f} req/s before)"
            )
        if self.unit == "ratio":
            return f"error rate of {where} ({self.observed:.2%} > {self.threshold:.2%})"
        return f"{self.metric} of {where} ({_ms(self.observed)} > {_ms(self.threshold)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "endpoint": self.endpoint,
            "observed": round(self.observed, 6),
            "threshold": round(self.threshold, 6),
            "unit": self.unit,
            "text": self.text(),
        }


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


@dataclass(frozen=True)
class CapacityResult:
    """The breaking point against the experiment's ``slo.capacity``."""

    target: Capacity
    rps: float | None
    users: float | None

    @property
    def met(self) -> bool:
        ok = True
        if self.target.rps is not None:
            ok = ok and self.rps is not None and self.rps >= self.target.rps
        if self.target.users is not None:
            ok = ok and self.users is not None and self.users >= self.target.users
        return ok

    def slo_results(self) -> list[SloResult]:
        out: list[SloResult] = []
        if self.target.rps is not None:
            passed = self.rps is not None and self.rps >= self.target.rps
            out.append(SloResult("capacity", None, "rps", self.target.rps, self.rps, passed, "rps"))
        if self.target.users is not None:
            passed = self.users is not None and self.users >= self.target.users
            out.append(
                SloResult(
                    "capacity", None, "users", float(self.target.users), self.users, passed,
                    "users",
                )
            )  # fmt: skip
        return out

    def text(self) -> str:
        wanted = []
        if self.target.rps is not None:
            wanted.append(f"{self.target.rps:g} req/s")
        if self.target.users is not None:
            wanted.append(f"{self.target.users} users")
        target = " and ".join(wanted)
        return f"capacity target {target} {'met' if self.met else 'not met'}"


@dataclass(frozen=True)
class BreakingPoint:
    """Where a rising load broke (or that it held to its top); see the module doc."""

    unit: Unit
    """What the load is counted in: users (closed model) or rps (open model)."""
    load_source: str
    """Where the offered load per second came from: "rig" (users the workers reported)
    or "plan"."""
    broke: bool
    second: int | None
    """The second the SLOs (or the throughput) first broke."""
    held_second: int | None
    """The last second that held before it (the top second when nothing broke)."""
    load: float | None
    """The load offered in ``held_second`` (users, or requests per second)."""
    served_rps: float | None
    """OK answers per second over the window ending at ``held_second``."""
    top_load: float
    top_second: int | None
    first_broke: list[Breach] = field(default_factory=list)
    saturated: dict[str, Any] | None = None
    """The first resource saturated up to the breaking second (``Saturation.to_dict``),
    with its series as evidence."""
    capacity: CapacityResult | None = None
    notes: list[str] = field(default_factory=list)

    def load_text(self, value: float | None) -> str:
        if value is None:
            return "no load"
        if self.unit == "users":
            return f"{value:.0f} users"
        return f"{value:.0f} req/s offered"

    def statement(self) -> str:
        """ "breaking point: 310 users, 412 req/s served, at 95 s; first broke: p95 of GET
        /catalog/items (612 ms > 500 ms); first saturated: gateway CPU at 98 % of one core
        from 90 s"."""
        served = "" if self.served_rps is None else f", {self.served_rps:.0f} req/s served"
        if not self.broke:
            top = f" (at {self.top_second} s)" if self.top_second is not None else ""
            text = (
                f"no breaking point: the SLOs held up to {self.load_text(self.load)}{served}, "
                f"the highest load reached{top}"
            )
        elif self.held_second is None:
            text = (
                f"breaking point: below {self.load_text(self.top_load_at_break)}, at "
                f"{self.second} s (the SLOs never held)"
            )
        else:
            text = f"breaking point: {self.load_text(self.load)}{served}, at {self.second} s"
        if self.first_broke:
            text += "; first broke: " + ", ".join(b.text() for b in self.first_broke[:3])
        if self.saturated is not None:
            when = " after it" if self.saturated.get("after_the_knee") else ""
            text += f"; first saturated{when}: {self.saturated['text']}"
        if self.capacity is not None:
            text += f"; {self.capacity.text()}"
        return text

    @property
    def top_load_at_break(self) -> float | None:
        return self.load if self.load is not None else self.top_load

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement(),
            "unit": self.unit,
            "load_source": self.load_source,
            "broke": self.broke,
            "second": self.second,
            "held_second": self.held_second,
            "load": None if self.load is None else round(self.load, 3),
            "served_rps": None if self.served_rps is None else round(self.served_rps, 3),
            "top_load": round(self.top_load, 3),
            "top_second": self.top_second,
            "first_broke": [b.to_dict() for b in self.first_broke],
            "saturated": self.saturated,
            "capacity": (
                None
                if self.capacity is None
                else {
                    "rps": self.capacity.target.rps,
                    "users": self.capacity.target.users,
                    "met": self.capacity.met,
                    "text": self.capacity.text(),
                }
            ),
            "rule": {
                "window_seconds": WINDOW,
                "min_requests": MIN_REQUESTS,
                "sustain_seconds": SUSTAIN,
                "plateau_growth": GROWTH,
                "plateau_gain": GAIN,
            },
            "notes": list(self.notes),
        }


# -- which loads rise ----------------------------------------------------------------------


def rising_load(experiment: Experiment) -> bool:
    """A load that only rises (never steps down) and has no faults: a ramp whose knee means
    something. A spike (it comes down again) and a fault experiment are judged otherwise."""
    if experiment.faults:
        return False
    load = experiment.load
    if load.search is not None:
        return True
    if load.model == "open":
        levels = [s.rps for s in load.resolve_arrival()]
    else:
        stages = load.resolve_stages()
        levels = [float(s.users) for s in stages]
        if len(stages) == 1:
            # One stage ramps from zero at its spawn rate: it rises for users / rate seconds.
            return stages[0].users / stages[0].spawn_rate > load.warmup + 1.0
    if len(levels) < 2 or levels[-1] <= levels[0]:
        return False
    return all(b >= a for a, b in itertools.pairwise(levels))


def planned_load(experiment: Experiment, seconds: Sequence[int]) -> dict[int, float]:
    """The load the plan offers in each second (at its middle): users (ramping at each
    stage's spawn rate) or requests per second."""
    load = experiment.load
    out: dict[int, float] = {}
    if load.model == "open":
        stages = [(s.duration, s.rps) for s in load.resolve_arrival()]
        for second in seconds:
            t, start = second + 0.5, 0.0
            for duration, rps in stages:
                if t < start + duration:
                    out[second] = rps
                    break
                start += duration
        return out
    users_stages = load.resolve_stages()
    for second in seconds:
        t, start, users = second + 0.5, 0.0, 0.0
        for stage in users_stages:
            end = start + stage.duration
            reached = min(t, end) - start
            step = stage.spawn_rate * max(0.0, reached)
            if stage.users >= users:
                users = min(float(stage.users), users + step)
            else:
                users = max(float(stage.users), users - step)
            if t < end:
                break
            start = end
        out[second] = users
    return out


def offered_load(
    experiment: Experiment,
    seconds: Sequence[int],
    rig: RigTable | Sequence[RigSample] | None,
) -> tuple[Unit, dict[int, float], str]:
    """The load offered per second: users the workers reported (the rig's samples, when
    they cover most seconds) or the plan's; requests per second planned (open model)."""
    planned = planned_load(experiment, seconds)
    if experiment.load.model == "open":
        return "rps", planned, "plan"
    lines = as_table(rig).seconds if rig is not None else []
    reported = {s.second: float(s.users) for s in lines if s.users is not None}
    covered = [s for s in seconds if s in reported]
    if seconds and len(covered) >= 0.8 * len(seconds):
        merged = {s: reported.get(s, planned.get(s, math.nan)) for s in seconds}
        return "users", merged, "rig"
    return "users", planned, "plan"


# -- judging the seconds -------------------------------------------------------------------


def _rolling(values: np.ndarray, width: int) -> np.ndarray:
    """Sums over the ``width`` values ending at each index (fewer at the start)."""
    sums = np.cumsum(values, dtype=np.float64)
    out = sums.copy()
    out[width:] = sums[width:] - sums[:-width]
    return out


@dataclass
class _Judged:
    """Per second (aligned on ``seconds``): judged, broken, and what broke."""

    seconds: list[int]
    judged: np.ndarray
    broken: np.ndarray
    served: np.ndarray
    breaches: dict[int, list[tuple[str, str | None, float]]]
    """index -> (metric, endpoint, threshold) broken in that second's window."""


def _limits(thresholds: Thresholds) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for metric in QUANTILES:
        value = getattr(thresholds, metric)
        if value is not None:
            out.append((metric, float(value) * 1000.0))
    if thresholds.error_rate is not None:
        out.append(("error_rate", float(thresholds.error_rate)))
    return out


def judge_seconds(view: LoadView, seconds: Sequence[int], slo: PhaseSlo | None) -> _Judged:
    """Each second's window against the limits of ``slo`` (the whole target and each
    endpoint it names); served rate over the window."""
    n = len(seconds)
    base = view.table(None, seconds, ())
    requests = base.requests.astype(np.float64)
    errors = base.errors.astype(np.float64)
    window_requests = _rolling(requests, WINDOW)
    judged = window_requests >= MIN_REQUESTS
    served = _rolling(requests - errors, WINDOW) / np.minimum(
        WINDOW, np.arange(1, n + 1, dtype=np.float64)
    )
    broken = np.zeros(n, dtype=bool)
    breaches: dict[int, list[tuple[str, str | None, float]]] = {}
    targets: list[tuple[str | None, Thresholds]] = []
    if slo is not None:
        targets.append((None, slo))
        targets.extend(slo.endpoints.items())
    for endpoint, thresholds in targets:
        limits = _limits(thresholds)
        if not limits:
            continue
        table = base if endpoint is None else view.table(endpoint, seconds, ())
        total = _rolling(table.requests.astype(np.float64), WINDOW)
        enough = total >= MIN_REQUESTS
        for metric, limit in limits:
            if metric == "error_rate":
                errs = _rolling(table.errors.astype(np.float64), WINDOW)
                hit = enough & (errs > limit * np.maximum(total, 1.0))
            else:
                above_table = view.table(endpoint, seconds, (), above_us=limit * 1000.0)
                above = above_table.above
                if above is None:
                    continue
                slow = _rolling(above.astype(np.float64), WINDOW)
                allowed = (1.0 - QUANTILES[metric]) * total
                hit = enough & (slow > allowed + 1e-9)
            for i in np.flatnonzero(hit).tolist():
                breaches.setdefault(i, []).append((metric, endpoint, limit))
            broken |= hit
    return _Judged(list(seconds), judged, broken, served, breaches)


def first_sustained(flags: np.ndarray, sustain: int = SUSTAIN) -> int | None:
    """The first index of the first run of ``sustain`` true values."""
    run = 0
    for i, flag in enumerate(flags.tolist()):
        run = run + 1 if flag else 0
        if run >= sustain:
            return i - sustain + 1
    return None


def plateau(
    offered: Sequence[float], served: np.ndarray, judged: np.ndarray
) -> tuple[int, int] | None:
    """(index of the last rise of the served rate, index where the plateau was sure) when
    the offered load rose ``GROWTH`` above the load at the last rise with no rise since, for
    ``SUSTAIN`` seconds in a row; None otherwise."""
    peak: int | None = None
    run = 0
    for i in range(len(offered)):
        if i < WINDOW - 1 or not judged[i] or math.isnan(offered[i]):
            run = 0
            continue
        if peak is None or served[i] >= served[peak] * (1.0 + GAIN):
            peak, run = i, 0
            continue
        if offered[peak] > 0 and offered[i] >= offered[peak] * (1.0 + GROWTH):
            run += 1
            if run >= SUSTAIN:
                return peak, i
        else:
            run = 0
    return None


# -- the breaking point ----------------------------------------------------------------


def breaking_point(
    view: LoadView,
    experiment: Experiment,
    *,
    start: float,
    end: float,
    rig: RigTable | Sequence[RigSample] | None = None,
    resources: Resources | None = None,
) -> BreakingPoint | None:
    """The breaking point of a rising load judged over [start, end) (None when the load
    does not only rise, or has no seconds to judge)."""
    if not rising_load(experiment):
        return None
    seconds = [s for s in range(math.floor(start), math.ceil(end) + 1) if start <= s + 0.5 < end]
    if len(seconds) < WINDOW:
        return None
    unit, offered_map, source = offered_load(experiment, seconds, rig)
    offered = [offered_map.get(s, math.nan) for s in seconds]
    slo = experiment.slo.baseline
    judged = judge_seconds(view, seconds, slo)
    notes: list[str] = []
    if slo is None or not (_limits(slo) or any(_limits(t) for t in slo.endpoints.values())):
        notes.append("no latency or error limits in slo.baseline: only the throughput was judged")
    slo_break = first_sustained(judged.broken & judged.judged)
    flat = plateau(offered, judged.served, judged.judged)
    flat_break = None if flat is None else min(flat[0] + 1, len(seconds) - 1)
    candidates = [i for i in (slo_break, flat_break) if i is not None]
    top_i = _top(offered)
    if not candidates:
        held = _last_held(judged, len(seconds))
        held = top_i if held is None else held
        return _finish(
            experiment, unit, source, False, None, held, seconds, offered, judged,
            [], resources, notes, top_i,
        )  # fmt: skip
    knee = min(candidates)
    breaches: list[Breach] = []
    if slo_break is not None and slo_break == knee:
        breaches.extend(_breaches_at(view, judged, knee))
    if flat is not None and flat_break == knee:
        peak = flat[0]
        breaches.append(
            Breach(
                "throughput", None, float(judged.served[flat[1]]), float(judged.served[peak]),
                "rps",
            )
        )  # fmt: skip
    held = _last_held(judged, knee)
    if flat is not None and flat_break == knee:
        held = flat[0] if held is None else min(held, flat[0])
    breaches.sort(key=lambda b: -b.severity)
    return _finish(
        experiment, unit, source, True, knee, held, seconds, offered, judged, breaches,
        resources, notes, top_i,
    )  # fmt: skip


def _top(offered: Sequence[float]) -> int | None:
    finite = [(v, i) for i, v in enumerate(offered) if not math.isnan(v)]
    if not finite:
        return None
    best = max(v for v, _ in finite)
    return next(i for v, i in finite if v == best)


def _last_held(judged: _Judged, before: int) -> int | None:
    """The last second before ``before`` whose window was judged and held."""
    for i in range(min(before, len(judged.seconds)) - 1, -1, -1):
        if judged.judged[i] and not judged.broken[i]:
            return i
    return None


def _breaches_at(view: LoadView, judged: _Judged, index: int) -> list[Breach]:
    """Each limit broken in the window ending at ``index``, with what was observed."""
    window = judged.seconds[max(0, index - WINDOW + 1) : index + 1]
    out: list[Breach] = []
    for metric, endpoint, limit in judged.breaches.get(index, []):
        stats = window_stats(view, endpoint, window)
        if metric == "error_rate":
            observed = stats.error_rate
            unit = "ratio"
        else:
            observed = getattr(stats, metric)
            unit = "ms"
        if observed is None:
            continue
        out.append(Breach(metric, endpoint, float(observed), limit, unit))
    return out


def _finish(  # noqa: PLR0917 (the judgement's parts, passed once)
    experiment: Experiment,
    unit: Unit,
    source: str,
    broke: bool,
    knee: int | None,
    held: int | None,
    seconds: Sequence[int],
    offered: Sequence[float],
    judged: _Judged,
    breaches: list[Breach],
    resources: Resources | None,
    notes: list[str],
    top_i: int | None,
) -> BreakingPoint:
    load = None if held is None or math.isnan(offered[held]) else float(offered[held])
    if broke and held is None and knee is not None and not math.isnan(offered[knee]):
        load = float(offered[knee])
    served = None if held is None else float(judged.served[held])
    saturated = None
    if broke and knee is not None and resources:
        found = resources.first_saturated(seconds[knee], since=seconds[0])
        after = False
        if found is None:
            # Nothing saturated by the knee: the first one after it is the nearest sign.
            later = [s for s in resources.saturations() if seconds[knee] < s.start]
            found, after = (later[0], True) if later else (None, False)
        if found is not None:
            around = range(max(seconds[0], found.start - 30), found.start + 31)
            saturated = {
                **found.to_dict(),
                "after_the_knee": after,
                "evidence": found.resource.evidence(around),
            }
    capacity_target = experiment.slo.capacity
    capacity = None
    if capacity_target is not None:
        capacity = CapacityResult(
            capacity_target,
            rps=served,
            users=load if unit == "users" and held is not None else None,
        )
    top = float(offered[top_i]) if top_i is not None else 0.0
    return BreakingPoint(
        unit=unit,
        load_source=source,
        broke=broke,
        second=None if knee is None else seconds[knee],
        held_second=None if held is None else seconds[held],
        load=load,
        served_rps=served,
        top_load=top,
        top_second=None if top_i is None else seconds[top_i],
        first_broke=breaches,
        saturated=saturated,
        capacity=capacity,
        notes=notes,
    )
