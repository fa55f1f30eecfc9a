"""The resources behind the load, second by second, and when each one saturated.

Two sources, both read from the run directory:

- **the rig** (``rig.jsonl``, sampled from /proc by ``runner/rig.py``): per process tree of the
  target, of the built-in stack and of the load generator, its CPU against the cores it may
  use (one for a single event loop, its cgroup's quota, else the host's), CPU throttling by
  its cgroup, memory against its cgroup's limit, open descriptors against their limit, and
  PostgreSQL's client connections against ``max_connections``; and the host's CPU;
- **Prometheus** (the series the runner gathered, ``resource_promql``): pools as three gauges
  (in use, size, waiting: the shop's database pool and gateway upstream pools, or a family the
  experiment names for ``pool_exhaustion``), and the target's own process metrics
  (``process_cpu_seconds_total``, ``process_open_fds``/``process_max_fds``) for processes the
  rig does not know (a target other than the built-in shop, scraped through
  ``observe.scrape``); a job that exports ``python_info`` is a Python process, one core.

A resource is **saturated** in a second when: a process uses at least ``CPU_SATURATED`` (90 %)
of the cores it may use; its cgroup throttled it in at least ``THROTTLED`` (20 %) of the
second's CPU periods; a pool has every slot in use and callers waiting; PostgreSQL holds at
least ``NEAR_LIMIT`` (90 %) of ``max_connections``; descriptors or memory reach 90 % of
their limit; the host's CPU is at least ``HOST_BUSY`` (95 %) busy. Its **onset** is the first
second of the first run of ``min_seconds`` (2) saturated seconds (one unsaturated second
inside a run is forgiven). ``Resources.first_saturated`` names the resource that saturated
first up to a moment (the breaking point): the earliest onset, ties going to the most
specific resource (a throttled or saturated process, then a pool, connections, descriptors,
memory, the host's CPU; the load generator last — but named, so the rig is never mistaken
for the target).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from resilience.errors import ObserveError
from resilience.rundir.rig import ROLES, ProcColumns, ProcRole, RigSample, RigTable, as_table

if TYPE_CHECKING:
    from resilience.experiment.model import Experiment
    from resilience.observe.prometheus import PrometheusSource, Series

Kind = Literal["cpu", "throttling", "pool", "connections", "fds", "memory", "host_cpu"]

CPU_SATURATED = 0.90
THROTTLED = 0.20
NEAR_LIMIT = 0.90
HOST_BUSY = 0.95
MIN_SECONDS = 2
MAX_POINTS = 600
"""Points of a resource's series kept inline in a finding's evidence (longer runs thinned)."""

SHOP_JOBS = ("gateway", "orders", "catalog")
PRIORITY: dict[str, int] = {
    "throttling": 0,
    "cpu": 1,
    "pool": 2,
    "connections": 3,
    "fds": 4,
    "memory": 5,
    "host_cpu": 6,
}
ROLE_PRIORITY = {"target": 0, "stack": 1, "host": 2, "rig": 3, "generator": 4}


@dataclass(frozen=True)
class PoolGauges:
    """Three gauges describing pools: slots in use, slots in all, callers waiting."""

    name: str
    in_use: str
    size: str
    waiting: str
    label: str | None = None
    """The label naming the pool (None: the pool is named ``default_name``)."""
    default_name: str | None = None


SHOP_POOLS: tuple[PoolGauges, ...] = (
    PoolGauges(
        "db", "shop_db_pool_in_use", "shop_db_pool_size", "shop_db_pool_waiting",
        default_name="orders-db",
    ),
    PoolGauges(
        "upstream", "shop_upstream_pool_in_use", "shop_upstream_pool_size",
        "shop_upstream_pool_waiting", label="pool",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Resource:
    """One resource's series on the experiment clock (second -> value, and its limit)."""

    key: str
    kind: Kind
    owner: str
    """Whose resource: a process ("gateway"), a pool ("pool 'catalog'"), "the host"."""
    role: str
    """target, stack, generator, rig (the orchestrator) or host."""
    unit: str
    values: Mapping[int, float]
    limits: Mapping[int, float] = field(default_factory=dict)
    waiting: Mapping[int, float] = field(default_factory=dict)
    source: str = "rig"
    series: tuple[dict[str, Any], ...] = ()
    """Evidence pointers to gathered Prometheus files (``prometheus/``), when from there."""
    parts: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    """The host's CPU: who used it, per second in cores (the target, its stack, the load
    generator, other processes)."""

    def shares(self, seconds: Iterable[int]) -> dict[str, float]:
        """The mean of each part over ``seconds`` (cores), largest first."""
        wanted = list(seconds)
        out: dict[str, float] = {}
        for name, values in self.parts.items():
            got = [values[s] for s in wanted if s in values]
            if got:
                out[name] = sum(got) / len(got)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def own_share(self, second: int) -> float | None:
        """The host's CPU: the share the target and its stack used in ``second`` of all that
        was used (None when unknown)."""
        used = {name: values[second] for name, values in self.parts.items() if second in values}
        total = sum(used.values())
        if total <= 0:
            return None
        return (used.get("the target", 0.0) + used.get("its stack", 0.0)) / total

    def shares_text(self, seconds: Iterable[int]) -> str:
        """ "other processes 1.2, the target 0.5, the load generator 0.1 cores"."""
        shares = [(k, v) for k, v in self.shares(seconds).items() if v >= 0.005]
        if not shares:
            return ""
        return ", ".join(f"{name} {value:.2f}" for name, value in shares) + " cores"

    def limit(self, second: int) -> float | None:
        return self.limits.get(second)

    def saturated(self, second: int) -> bool:  # noqa: PLR0911 (one rule per kind)
        value = self.values.get(second)
        if value is None or not math.isfinite(value):
            return False
        limit = self.limits.get(second)
        if self.kind == "throttling":
            return value >= THROTTLED
        if self.kind == "host_cpu":
            return value >= HOST_BUSY
        if limit is None or limit <= 0:
            return False
        if self.kind == "cpu":
            return value >= CPU_SATURATED * limit
        if self.kind == "pool":
            return value >= limit and self.waiting.get(second, 0.0) > 0
        return value >= NEAR_LIMIT * limit

    def saturated_seconds(self, seconds: Iterable[int] | None = None) -> list[int]:
        wanted = sorted(self.values) if seconds is None else seconds
        return [s for s in wanted if self.saturated(s)]

    def level(self, second: int) -> str:
        """The resource's state in one second, in words ("98 % of one core")."""
        value = self.values.get(second, math.nan)
        limit = self.limits.get(second)
        if self.kind == "cpu":
            return f"{value / limit:.0%} of {_cores(limit)}" if limit else f"{value:.2f} cores"
        if self.kind == "throttling":
            quota = f" (quota {_cores(limit)})" if limit else ""
            return f"throttled in {value:.0%} of its CPU periods{quota}"
        if self.kind == "pool":
            size = f"{limit:g}" if limit is not None else "?"
            return f"{value:g}/{size} with {self.waiting.get(second, 0.0):g} waiters"
        if self.kind == "host_cpu":
            return f"{value:.0%} busy"
        if self.kind == "memory":
            limit_mb = f" of {limit / 2**20:.0f} MB" if limit else ""
            return f"{value / 2**20:.0f} MB{limit_mb}"
        size = f"{limit:g}" if limit is not None else "?"
        return f"{value:g} of {size} {self.unit}"

    @property
    def title(self) -> str:
        """ "gateway CPU", "pool 'catalog'", "postgres connections", "the host's CPU"."""
        if self.kind == "pool":
            return self.owner
        if self.kind == "host_cpu":
            return "the host's CPU"
        noun = {
            "cpu": "CPU",
            "throttling": "CPU",
            "connections": "connections",
            "fds": "open descriptors",
            "memory": "memory",
        }[self.kind]
        return f"{self.owner} {noun}"

    def points(self, seconds: Iterable[int] | None = None) -> list[list[float]]:
        """``[[second, value], ...]`` (thinned to ``MAX_POINTS``), for evidence."""
        wanted = sorted(self.values) if seconds is None else sorted(seconds)
        pts = [[float(s), round(self.values[s], 4)] for s in wanted if s in self.values]
        if len(pts) > MAX_POINTS:
            step = math.ceil(len(pts) / MAX_POINTS)
            pts = pts[::step]
        return pts

    def evidence(self, seconds: Iterable[int] | None = None) -> dict[str, Any]:
        """The series kept as evidence: inline points, the limit, and gathered files."""
        out: dict[str, Any] = {
            "resource": self.title,
            "kind": self.kind,
            "unit": self.unit,
            "source": "rig.jsonl" if self.source == "rig" else "prometheus",
            "points": self.points(seconds),
        }
        limits = {v for v in self.limits.values() if math.isfinite(v)}
        if len(limits) == 1:
            out["limit"] = limits.pop()
        if self.waiting:
            out["waiting"] = self.points_of(self.waiting, seconds)
        if self.series:
            out["files"] = list(self.series)
        return out

    @staticmethod
    def points_of(values: Mapping[int, float], seconds: Iterable[int] | None) -> list[list[float]]:
        wanted = sorted(values) if seconds is None else sorted(seconds)
        return [[float(s), round(values[s], 4)] for s in wanted if s in values][:MAX_POINTS]


def _cores(limit: float | None) -> str:
    if limit is None:
        return "its cores"
    if abs(limit - 1.0) < 1e-6:
        return "one core"
    if limit < 1.0:
        return f"{limit:.2g} core"
    return f"{limit:g} cores"


@dataclass(frozen=True)
class Saturation:
    """One resource's saturated seconds and the onset of its first sustained run."""

    resource: Resource
    seconds: list[int]
    start: int

    @property
    def peak_second(self) -> int:
        r = self.resource

        def load(s: int) -> float:
            value = r.values.get(s, 0.0)
            limit = r.limits.get(s)
            return value / limit if limit else value

        return max(self.seconds, key=load)

    def text(self) -> str:
        """ "gateway CPU at 98 % of one core from 12 s"."""
        r = self.resource
        level = r.level(self.peak_second)
        joiner = " " if r.kind in ("throttling", "pool") else " at "
        if r.kind == "host_cpu":
            return f"the host's CPU {level} from {self.start} s"
        return f"{r.title}{joiner}{level} from {self.start} s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource.title,
            "kind": self.resource.kind,
            "owner": self.resource.owner,
            "role": self.resource.role,
            "from": self.start,
            "seconds": len(self.seconds),
            "text": self.text(),
        }


def onset(seconds: Sequence[int], min_seconds: int = MIN_SECONDS) -> int | None:
    """The first second of the first run of ``min_seconds`` saturated seconds, one missing
    second inside a run forgiven; None when there is no such run."""
    ordered = sorted(seconds)
    for i, first in enumerate(ordered):
        count, last, gaps = 1, first, 0
        for second in ordered[i + 1 :]:
            if second == last + 1:
                count, last = count + 1, second
            elif second == last + 2 and gaps == 0:
                count, last, gaps = count + 1, second, 1
            else:
                break
            if count >= min_seconds:
                return first
        if count >= min_seconds:
            return first
    return None


@dataclass
class Resources:
    """Every resource of a run, and when each saturated."""

    items: list[Resource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Why some resources could not be read (a series not gathered, no rig samples)."""

    def __bool__(self) -> bool:
        return bool(self.items)

    def named(self, key: str) -> Resource | None:
        return next((r for r in self.items if r.key == key), None)

    def saturations(
        self,
        seconds: Iterable[int] | None = None,
        *,
        min_seconds: int = MIN_SECONDS,
        roles: Iterable[str] | None = None,
    ) -> list[Saturation]:
        """Resources with a sustained saturation within ``seconds``, earliest first."""
        wanted = None if seconds is None else sorted(set(seconds))
        allowed = None if roles is None else set(roles)
        out: list[Saturation] = []
        for resource in self.items:
            if allowed is not None and resource.role not in allowed:
                continue
            hot = resource.saturated_seconds(wanted)
            start = onset(hot, min_seconds)
            if start is not None:
                out.append(Saturation(resource, hot, start))
        out.sort(key=_order)
        return out

    def first_saturated(
        self, until: int, *, since: int = 0, grace: int = 1, min_seconds: int = MIN_SECONDS
    ) -> Saturation | None:
        """The resource whose saturation began first, no later than ``until + grace``
        (it may last past it): the resource behind a breaking point at ``until``."""
        candidates = [
            s
            for s in self.saturations(min_seconds=min_seconds)
            if since <= s.start <= until + grace
            or (s.start < since and any(x >= since for x in s.seconds))
        ]
        return min(candidates, key=_order, default=None)


def _order(s: Saturation) -> tuple[int, int, int, str]:
    r = s.resource
    return (s.start, ROLE_PRIORITY.get(r.role, 9), PRIORITY.get(r.kind, 9), r.key)


# -- building the table -------------------------------------------------------------------


KIND_ORDER: tuple[Kind, ...] = ("cpu", "throttling", "connections", "fds", "memory")
"""A process tree's resources in the order they are listed (after the host's CPU)."""
_ROLE_PART: dict[ProcRole, str] = {
    "target": "the target",
    "stack": "its stack",
    "generator": "the load generator",
}


def from_rig(samples: RigTable | Sequence[RigSample] | None) -> list[Resource]:
    """The rig's per-process figures and the host's CPU as resources, listed in the order
    they first appear in the samples (the host's CPU, then each process tree's CPU,
    throttling, connections, descriptors and memory, as its line lists them)."""
    table = as_table(samples)
    if not table:
        return []
    seconds = np.fromiter((s.second for s in table.seconds), np.int64, len(table))
    found: list[tuple[tuple[int, int, int], Resource]] = []
    busy = [(i, s.second, s.busy) for i, s in enumerate(table.seconds) if s.busy is not None]
    if busy:
        host = Resource(
            "host cpu", "host_cpu", "the host", "host", "share",
            {s: v for _, s, v in busy}, dict.fromkeys((s for _, s, _ in busy), 1.0),
            parts=_host_parts(table, seconds),
        )  # fmt: skip
        found.append(((busy[0][0], -1, 0), host))
    for columns in table.procs.values():
        for rank, kind in enumerate(KIND_ORDER):
            made = _proc_resource(kind, columns, seconds)
            if made is not None:
                first, position, resource = made
                found.append(((first, position, rank), resource))
    found.sort(key=lambda item: item[0])
    return [resource for _, resource in found]


_PROC_KINDS: dict[Kind, tuple[str, str, bool, str]] = {
    "cpu": ("cpu", "cores", False, "cores"),
    "throttling": ("throttled", "cores", False, "share"),
    "connections": ("backends", "max_connections", False, "connections"),
    "fds": ("fds", "fd_limit", True, "descriptors"),
    "memory": ("rss", "mem_limit", True, "bytes"),
}
"""Per kind: the figure, its limit's figure, whether a second counts only with a (nonzero)
limit, the unit."""


def _proc_resource(
    kind: Kind, columns: ProcColumns, seconds: np.ndarray[Any, Any]
) -> tuple[int, int, Resource] | None:
    """One kind of a process tree's resource from its columns, with the line and position
    it first appeared at; None when no line gave it."""
    figure, limit_figure, needs_limit, unit = _PROC_KINDS[kind]
    arrays = columns.arrays
    values, limits = arrays[figure], arrays[limit_figure]
    has_limit = ~np.isnan(limits)
    given = ~np.isnan(values)
    if needs_limit:
        given &= has_limit & (limits != 0)
    rows = np.flatnonzero(given)
    if rows.size == 0:
        return None
    first = int(rows[0])
    limited = rows[has_limit[rows]]
    at = seconds[arrays["index"]]
    resource = Resource(
        key=f"{columns.name} {kind}",
        kind=kind,
        owner=columns.name,
        role=ROLES[int(arrays["role"][first])],
        unit=unit,
        values=dict(zip(at[rows].tolist(), values[rows].tolist(), strict=True)),
        limits=dict(zip(at[limited].tolist(), limits[limited].tolist(), strict=True)),
    )
    return int(arrays["index"][first]), int(arrays["position"][first]), resource


def _host_parts(table: RigTable, seconds: np.ndarray[Any, Any]) -> dict[str, dict[int, float]]:
    """Who used the host's CPU, per second in cores: the target's, its stack's and the load
    generator's process trees, and other processes; listed in the order they first appear."""
    found: list[tuple[tuple[int, int], str, dict[int, float]]] = []
    for rank, (role, name) in enumerate(_ROLE_PART.items()):
        used = table.role_cpu[role]
        rows = np.flatnonzero(~np.isnan(used))
        if rows.size:
            values = dict(zip(seconds[rows].tolist(), used[rows].tolist(), strict=True))
            found.append(((int(rows[0]), rank), name, values))
    other = [
        (i, s.second, s.other_cpu) for i, s in enumerate(table.seconds) if s.other_cpu is not None
    ]
    if other:
        values = {second: cpu for _, second, cpu in other}
        found.append(((other[0][0], len(_ROLE_PART)), "other processes", values))
    found.sort(key=lambda item: item[0])
    return {name: values for _, name, values in found}


def _f(value: int | None) -> float | None:
    return None if value is None else float(value)


def pool_families(experiment: Experiment) -> list[PoolGauges]:
    """The shop's pool gauges, plus the family the experiment names for pool_exhaustion."""
    families = list(SHOP_POOLS)
    settings = experiment.detectors.get("pool_exhaustion")
    params = settings.params if settings is not None else {}
    in_use, size, waiting = (
        params.get(k) for k in ("in_use_metric", "size_metric", "waiting_metric")
    )
    if in_use and size and waiting:
        label = params.get("pool_label")
        families.append(
            PoolGauges(
                "custom", str(in_use), str(size), str(waiting), str(label) if label else None
            )
        )
    return families


def process_jobs(experiment: Experiment, builtin: bool) -> list[str]:
    """The scrape jobs whose process metrics are the target's."""
    if builtin:
        return list(SHOP_JOBS)
    return [job.job for job in experiment.scrape_jobs()]


def process_promql(jobs: Sequence[str]) -> dict[str, str]:
    if not jobs:
        return {}
    selector = '{job=~"' + "|".join(re.escape(j) for j in jobs) + '"}'
    return {
        "process CPU seconds": f"process_cpu_seconds_total{selector}",
        "process open descriptors": f"process_open_fds{selector}",
        "process descriptor limit": f"process_max_fds{selector}",
        "python processes": f"python_info{selector}",
    }


def resource_promql(experiment: Experiment, builtin: bool) -> dict[str, str]:
    """Name -> PromQL of every series the resource table reads (gathered by the runner)."""
    out: dict[str, str] = {}
    for family in pool_families(experiment):
        out[f"{family.name} pool in use"] = family.in_use
        out[f"{family.name} pool size"] = family.size
        out[f"{family.name} pool waiting"] = family.waiting
    out.update(process_promql(process_jobs(experiment, builtin)))
    return out


def _key(series: Series) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in series.labels.items() if k != "__name__"))


def _per_second(series: Series, t0: float) -> dict[int, float]:
    out: dict[int, float] = {}
    for t, v in series.points:
        if math.isfinite(v):
            out[math.floor(t - t0)] = v
    return out


def _refs(
    files: Mapping[str, str], promqls: Sequence[str], labels: Mapping[str, str]
) -> tuple[dict[str, Any], ...]:
    return tuple(
        {"file": files[p], "promql": p, "labels": dict(labels)} for p in promqls if p in files
    )


def from_pools(
    prometheus: PrometheusSource,
    families: Sequence[PoolGauges],
    *,
    t0: float,
    start: float,
    end: float,
    files: Mapping[str, str],
    notes: list[str],
) -> list[Resource]:
    out: list[Resource] = []
    for family in families:
        try:
            used = {_key(s): s for s in prometheus.query_range(family.in_use, start, end, 1.0)}
            size = {_key(s): s for s in prometheus.query_range(family.size, start, end, 1.0)}
            waiting = {_key(s): s for s in prometheus.query_range(family.waiting, start, end, 1.0)}
        except ObserveError as exc:
            notes.append(f"{family.name} pool gauges not read: {exc}")
            continue
        for key, series in used.items():
            if key not in size or key not in waiting:
                continue
            labels = dict(key)
            name = labels.get(family.label, "") if family.label else family.default_name
            name = name or labels.get("service") or labels.get("job") or family.name
            service = labels.get("service") or labels.get("job") or ""
            owner = f"pool {name!r}" + (f" of {service}" if service and service != name else "")
            out.append(
                Resource(
                    key=f"pool {family.name} {name} {service}".strip(),
                    kind="pool",
                    owner=owner,
                    role="target",
                    unit="slots",
                    values=_per_second(series, t0),
                    limits=_per_second(size[key], t0),
                    waiting=_per_second(waiting[key], t0),
                    source="prometheus",
                    series=_refs(files, [family.in_use, family.size, family.waiting], labels),
                )
            )
    return out


def from_process_metrics(
    prometheus: PrometheusSource,
    jobs: Sequence[str],
    *,
    known: set[str],
    t0: float,
    start: float,
    end: float,
    files: Mapping[str, str],
    notes: list[str],
) -> list[Resource]:
    """CPU (from the counter's rises) and descriptors of the target's scrape jobs that the
    rig did not sample itself."""
    wanted = process_promql(jobs)
    if not wanted:
        return []
    out: list[Resource] = []
    try:
        cpu = prometheus.query_range(wanted["process CPU seconds"], start, end, 1.0)
        python = {
            s.labels.get("job", "")
            for s in prometheus.query_range(wanted["python processes"], start, end, 1.0)
        }
    except ObserveError as exc:
        notes.append(f"process metrics not read: {exc}")
        return []
    for series in cpu:
        job = series.labels.get("job", "")
        if not job or job in known:
            continue
        rates: dict[int, float] = {}
        points = [(t, v) for t, v in series.points if math.isfinite(v)]
        for (t1, v1), (t2, v2) in itertools.pairwise(points):
            if t2 > t1 and v2 >= v1:  # a drop is a restart
                rates[math.floor(t2 - t0)] = (v2 - v1) / (t2 - t1)
        limit = 1.0 if job in python else None
        out.append(
            Resource(
                key=f"{job} cpu",
                kind="cpu",
                owner=job,
                role="target",
                unit="cores",
                values=rates,
                limits=dict.fromkeys(rates, limit) if limit is not None else {},
                source="prometheus",
                series=_refs(files, [wanted["process CPU seconds"]], series.labels),
            )
        )
    try:
        fds = {
            _key(s): s
            for s in prometheus.query_range(wanted["process open descriptors"], start, end, 1.0)
        }
        maxes = {
            _key(s): s
            for s in prometheus.query_range(wanted["process descriptor limit"], start, end, 1.0)
        }
    except ObserveError as exc:
        notes.append(f"descriptor metrics not read: {exc}")
        return out
    for key, series in fds.items():
        job = dict(key).get("job", "")
        if not job or job in known or key not in maxes:
            continue
        out.append(
            Resource(
                key=f"{job} fds",
                kind="fds",
                owner=job,
                role="target",
                unit="descriptors",
                values=_per_second(series, t0),
                limits=_per_second(maxes[key], t0),
                source="prometheus",
                series=_refs(
                    files,
                    [wanted["process open descriptors"], wanted["process descriptor limit"]],
                    series.labels,
                ),
            )
        )
    return out


def build_resources(
    samples: RigTable | Sequence[RigSample] | None,
    prometheus: PrometheusSource | None,
    experiment: Experiment,
    *,
    builtin: bool,
    t0: float,
    start: float,
    end: float,
    files: Mapping[str, str] | None = None,
) -> Resources:
    """The run's resources: the rig's, then pools and process metrics from Prometheus
    (``start``/``end`` on the experiment clock)."""
    resources = Resources(from_rig(samples))
    if not samples:
        resources.notes.append("no rig samples (rig.jsonl) in this run: process figures unknown")
    if prometheus is None:
        resources.notes.append("no Prometheus series: pools and process metrics unknown")
        return resources
    window = (t0 + start - 2.0, t0 + end + 2.0)
    known = {r.owner for r in resources.items if r.kind == "cpu"}
    resources.items += from_pools(
        prometheus,
        pool_families(experiment),
        t0=t0,
        start=window[0],
        end=window[1],
        files=files or {},
        notes=resources.notes,
    )
    resources.items += from_process_metrics(
        prometheus,
        process_jobs(experiment, builtin),
        known=known,
        t0=t0,
        start=window[0],
        end=window[1],
        files=files or {},
        notes=resources.notes,
    )
    return resources
