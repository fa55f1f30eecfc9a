"""Warning signs under load: a process out of CPU, a cgroup throttling it, connections near
their limit — each with its seconds and its series, reported by the phase it happened in.

Both detectors read ``ctx.resources`` (analysis/resources.py: the rig's per-process figures
from /proc, the gathered process metrics for processes the rig does not know) and declare
the Prometheus series that table reads (``resource_promql``), so the runner gathers them.

- ``cpu_saturation``: a process of the target or of the built-in stack at or above
  ``share`` (0.9) of the cores it may use (one for a single event loop, its cgroup quota,
  else the host's), or throttled by its cgroup in at least ``throttled`` (0.2) of a
  second's CPU periods, for at least ``min_seconds`` (3) seconds of a phase; and the host's
  CPU at least 95 % busy as long, with the target and its stack at least half of what was
  used (said with who used it). The load generator's own saturation, and a host filled by
  neighbours, are facts about the rig (analysis/rig.py), not findings.
- ``connection_limit``: PostgreSQL's client connections, or a process's open descriptors, at
  or above ``share`` (0.8) of their limit for at least ``min_seconds`` (3) seconds.

One finding per resource, severity warning, never failing a run: its ``phases`` say how
many seconds of each phase it lasted, ``seconds`` are the saturated seconds (experiment
clock), ``resource_series`` the per-second values (inline, ``[second, value]``, with the
limit), and ``series`` the gathered Prometheus files when it came from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.analysis.detectors._common import BaseDetector
from resilience.analysis.detectors.base import Finding
from resilience.analysis.resources import HOST_BUSY, Resource, onset, resource_promql
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.experiment.model import Experiment

CPU_KINDS = ("cpu", "throttling", "host_cpu")
OWN_SHARE = 0.5
"""The host's CPU is the target's warning sign when the target and its stack used at least
this share of it; otherwise the neighbours filled it (a fact about the rig)."""
LIMIT_KINDS = ("connections", "fds")


def phase_seconds(ctx: AnalysisContext, seconds: list[int]) -> dict[str, int]:
    """Per phase, how many of ``seconds`` fall in it (by the second's midpoint)."""
    out: dict[str, int] = {}
    for phase in ctx.phases:
        n = sum(1 for s in seconds if phase.holds_second(s))
        if n:
            out[phase.name] = n
    return out


def where(ctx: AnalysisContext, per_phase: dict[str, int]) -> str:
    """ "34 s of the baseline and 12 s of the fault"."""
    return " and ".join(f"{n} s of {ctx.phase_words(name)}" for name, n in per_phase.items())


def judged_seconds(ctx: AnalysisContext) -> set[int]:
    return {s for phase in ctx.phases for s in phase.seconds()}


@dataclass(frozen=True)
class Hot:
    """One resource's sustained stretch above its threshold."""

    resource: Resource
    seconds: list[int]
    start: int
    peak: int
    per_phase: dict[str, int]


class _ResourceDetector(BaseDetector):
    kinds: ClassVar[tuple[str, ...]] = ()

    def promql(self, experiment: Experiment, builtin_shop: bool) -> dict[str, str]:
        return resource_promql(experiment, builtin_shop)

    def applies(self, ctx: AnalysisContext) -> bool:
        return ctx.resources is not None and any(r.kind in self.kinds for r in ctx.resources.items)

    def above(self, ctx: AnalysisContext, resource: Resource) -> list[int]:
        raise NotImplementedError

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        if ctx.resources is None:
            return []
        min_seconds = self.int_param(ctx, "min_seconds")
        judged = judged_seconds(ctx)
        findings: list[Finding] = []
        for resource in ctx.resources.items:
            if resource.kind not in self.kinds or resource.role in ("generator", "rig"):
                continue
            seconds = [s for s in self.above(ctx, resource) if s in judged]
            start = onset(seconds, min_seconds)
            if start is None or len(seconds) < min_seconds:
                continue
            findings.append(self.report(ctx, resource, seconds, start))
        return findings

    def report(
        self, ctx: AnalysisContext, resource: Resource, seconds: list[int], start: int
    ) -> Finding:
        per_phase = phase_seconds(ctx, seconds)
        peak = max(seconds, key=lambda s: _load(resource, s))
        evidence: dict[str, Any] = {
            "endpoints": [],
            "seconds": seconds,
            "phases": per_phase,
            "resource": resource.title,
            "process": resource.owner,
            "role": resource.role,
            "resource_series": resource.evidence(),
            "numbers": self.numbers(resource, seconds, peak),
        }
        if resource.series:
            evidence["series"] = list(resource.series)
        if resource.parts:
            evidence["cpu_by_role"] = {k: round(v, 3) for k, v in resource.shares(seconds).items()}
        summary = self.summary(ctx, Hot(resource, seconds, start, peak, per_phase))
        return self.finding(ctx, summary, evidence)

    def numbers(self, resource: Resource, seconds: list[int], peak: int) -> dict[str, Any]:
        values = [resource.values[s] for s in seconds]
        limit = resource.limit(peak)
        numbers: dict[str, Any] = {
            "seconds": len(seconds),
            "from s": seconds[0],
            "to s": seconds[-1],
            f"peak {resource.unit}": round(max(values), 3),
            f"mean {resource.unit}": round(sum(values) / len(values), 3),
        }
        if limit is not None:
            numbers[f"limit {resource.unit}"] = round(limit, 3)
        return numbers

    def summary(self, ctx: AnalysisContext, hot: Hot) -> str:
        raise NotImplementedError


def _load(resource: Resource, second: int) -> float:
    value = resource.values.get(second, 0.0)
    limit = resource.limits.get(second)
    return value / limit if limit and resource.kind != "throttling" else value


class CpuSaturationDetector(_ResourceDetector):
    kind: ClassVar[str] = "cpu_saturation"
    kinds: ClassVar[tuple[str, ...]] = CPU_KINDS
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def above(self, ctx: AnalysisContext, resource: Resource) -> list[int]:
        share = self.param(ctx, "share")
        throttled = self.param(ctx, "throttled")
        out: list[int] = []
        for second, value in sorted(resource.values.items()):
            limit = resource.limits.get(second)
            if resource.kind == "throttling":
                hot = value >= throttled
            elif resource.kind == "host_cpu":
                # A host filled by neighbours is the rig's fact (analysis/rig.py), not a
                # warning sign of the target: the target and its stack must be most of it.
                own = resource.own_share(second)
                hot = value >= HOST_BUSY and (own is None or own >= OWN_SHARE)
            else:
                hot = limit is not None and limit > 0 and value >= share * limit
            if hot:
                out.append(second)
        return out

    def summary(self, ctx: AnalysisContext, hot: Hot) -> str:
        resource, start, peak = hot.resource, hot.start, hot.peak
        span = where(ctx, hot.per_phase)
        if resource.kind == "throttling":
            return (
                f"CPU throttling: {resource.owner} {resource.level(peak)} at worst, "
                f"throttled for {span} (from {start} s)"
            )
        if resource.kind == "host_cpu":
            who = resource.shares_text(hot.seconds)
            return (
                f"CPU saturation of the host: {resource.level(peak)} at worst, for {span} "
                f"(from {start} s): every process competes for the same cores"
                + (f" (on average {who})" if who else "")
            )
        who = "the stack's " if resource.role == "stack" else ""
        return (
            f"CPU saturation: {who}{resource.owner} at {resource.level(peak)} at worst, "
            f"for {span} (from {start} s)"
        )


class ConnectionLimitDetector(_ResourceDetector):
    kind: ClassVar[str] = "connection_limit"
    kinds: ClassVar[tuple[str, ...]] = LIMIT_KINDS
    default_severity: ClassVar[Severity] = "warning"
    default_fails_run: ClassVar[bool] = False

    def above(self, ctx: AnalysisContext, resource: Resource) -> list[int]:
        share = self.param(ctx, "share")
        return [
            s
            for s, v in sorted(resource.values.items())
            if (limit := resource.limits.get(s)) and v >= share * limit
        ]

    def summary(self, ctx: AnalysisContext, hot: Hot) -> str:
        resource, start, peak = hot.resource, hot.start, hot.peak
        what = (
            "database connections near their limit"
            if resource.kind == "connections"
            else "open descriptors near their limit"
        )
        return (
            f"{what[0].upper()}{what[1:]}: {resource.owner} held {resource.level(peak)} at "
            f"worst, for {where(ctx, hot.per_phase)} (from {start} s)"
        )
