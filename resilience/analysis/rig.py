"""The rig's own health as facts: was the load generator or the host overloaded, which
source stopped answering when, and when did the target itself stop answering.

Read from ``rig.jsonl`` (``resilience/rundir/rig.py``, one sample per second) and the load
data. Nothing here judges the target; it says when the measurement itself cannot be
trusted, so the verdict can say so instead of blaming the target:

- **generator saturated**: a load worker used at least ``GENERATOR_SATURATED`` (90 %) of
  a core in a second (Locust warns at 90 % too; a saturated generator sends late and
  measures its own queueing as latency);
- **host overloaded**: CPU steal at least ``STEAL`` (10 %), or — with the host's CPU all
  taken (idle at most ``HOST_IDLE``, 5 %) — processes that are not the experiment's using at
  least ``OTHER_SHARE`` (50 %) of the host (a CI neighbour, a stray build: the target's
  latency is then partly theirs). The experiment's own processes are the orchestrator, its
  load workers, the local stack with its children and whatever listens on the target's and
  its declared dependencies' ports (resilience/runner/rig.py). The load average is recorded
  but decides nothing: it counts the experiment's own runnable processes too, so a target
  saturating the CPU under a stress test would read as an overloaded rig;
- a phase is **overloaded** when at least ``PHASE_SHARE`` (20 %, and 2 s) of its seconds are;
- a source is **lost** from the first second a poll found it down (refused, reset, an
  error) until one found it up again; the **target is unreachable** in a second when every
  request ended in a connection error (refused or reset on every endpoint) or, with no
  request answered, the health poll was refused; two such seconds in a row make an outage.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from resilience.analysis.detectors.base import Finding
from resilience.errors import EXIT_UNAVAILABLE
from resilience.histogram import Histogram
from resilience.rundir.load import (
    LoadView,
    LoadViewBase,
    SecondTable,
    Segment,
    SegmentTable,
)
from resilience.rundir.rig import (
    SOURCES,
    HostFigures,
    RigSample,
    RigSecond,
    RigTable,
    as_table,
)
from resilience.vocabulary import Phase

GENERATOR_SATURATED = 0.90
STEAL = 0.10
OTHER_SHARE = 0.50
HOST_IDLE = 0.05
PHASE_SHARE = 0.20
MIN_BUSY_SECONDS = 2
MIN_OUTAGE_SECONDS = 2
SOURCE_NAMES = {
    "prometheus": "Prometheus",
    "traces": "the trace backend",
    "toxiproxy": "Toxiproxy",
    "target": "the target",
}


def generator_reasons(sample: HostFigures) -> list[str]:
    """Why the load generator was saturated in this second (empty: it was not)."""
    return [
        f"load worker {i} at {cpu:.0%} of a core"
        for i, cpu in enumerate(sample.workers)
        if cpu is not None and cpu >= GENERATOR_SATURATED
    ]


def host_reasons(sample: HostFigures) -> list[str]:
    """Why the host was overloaded in this second (empty: it was not)."""
    return steal_reasons(sample) + other_reasons(sample)


def steal_reasons(sample: HostFigures) -> list[str]:
    """The hypervisor running another guest on our CPUs (steal at least ``STEAL``)."""
    if sample.steal is not None and sample.steal >= STEAL:
        return [f"CPU steal {sample.steal:.0%}"]
    return []


def other_reasons(sample: HostFigures) -> list[str]:
    """Processes that are not the experiment's taking the host's CPU while it has none idle."""
    cores = max(1, sample.cores)
    saturated = sample.idle is not None and sample.idle <= HOST_IDLE
    if saturated and sample.other_cpu is not None and sample.other_cpu >= OTHER_SHARE * cores:
        return [
            f"other processes using {sample.other_cpu:.1f} of {cores} cores "
            "(not the experiment's: neither the target, its stack nor the load generator)"
        ]
    return []


@dataclass(frozen=True)
class Outage:
    """A stretch when a source (or the target) did not answer, on the experiment clock;
    ``end`` None: until the end of the run."""

    source: str
    start: float
    end: float | None
    why: str = ""

    def text(self) -> str:
        name = SOURCE_NAMES.get(self.source, self.source)
        until = "the end" if self.end is None else f"{self.end:.1f} s"
        why = f" ({self.why})" if self.why else ""
        return f"{name} unreachable from {self.start:.1f} s to {until}{why}"

    def covers(self, start: float, end: float) -> bool:
        """Whether the outage overlaps ``[start, end)``."""
        return self.start < end and (self.end is None or self.end > start)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "start": self.start, "end": self.end, "why": self.why}


@dataclass(frozen=True)
class PhaseRig:
    """How the rig fared in one phase."""

    phase: str
    seconds: int
    generator_seconds: int
    host_seconds: int
    reasons: list[str]
    other_seconds: int = 0
    """Host seconds overloaded by other processes (the rest were CPU steal alone)."""

    @property
    def overloaded(self) -> bool:
        return self._busy(max(self.generator_seconds, self.host_seconds))

    @property
    def steal_only(self) -> bool:
        """Overloaded by the hypervisor's CPU steal alone: neither the load generator nor
        other processes would have made the phase overloaded. Steal slows every process of
        the host alike, so a baseline that met its SLOs under it is a control for it."""
        return (
            self.overloaded
            and not self._busy(self.generator_seconds)
            and not self._busy(self.other_seconds)
        )

    def _busy(self, count: int) -> bool:
        return count >= MIN_BUSY_SECONDS and count >= PHASE_SHARE * max(1, self.seconds)

    def text(self) -> str:
        what = []
        if self.generator_seconds:
            what.append(f"the load generator was saturated {self.generator_seconds} s")
        if self.host_seconds:
            what.append(f"the host was overloaded {self.host_seconds} s")
        detail = "; ".join(self.reasons[:3])
        return f"{self.phase}: {' and '.join(what)} of {self.seconds} s ({detail})"


@dataclass
class RigReport:
    """Everything the verdict and the reports say about the rig."""

    sampled: bool
    phases: list[PhaseRig] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    target_down: list[Outage] = field(default_factory=list)
    died: list[str] = field(default_factory=list)
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def overloaded(self) -> list[PhaseRig]:
        return [p for p in self.phases if p.overloaded]

    def lost(self, source: str) -> list[Outage]:
        return [o for o in self.outages if o.source == source]

    def lost_text(self, source: str) -> str | None:
        """ "Prometheus unreachable from 12.0 s to the end" (joined), or None."""
        lost = self.lost(source)
        return "; ".join(o.text() for o in lost) if lost else None

    def down_seconds(self) -> set[int]:
        """The one-second buckets the target was unreachable in (left out of cascade and
        recovery judgements)."""
        seconds: set[int] = set()
        for outage in self.target_down:
            end = outage.end if outage.end is not None else outage.start + 10**6
            seconds.update(range(int(outage.start), int(end + 0.999)))
        return seconds

    def statements(self) -> list[str]:
        """One sentence per fact, for the console and every report."""
        lines = [o.text() for o in self.target_down]
        lines += self.died
        lines += [o.text() for o in self.outages if o.source != "target"]
        lines += [f"rig overloaded in {p.text()}" for p in self.overloaded]
        lines += [
            f"rig busy (too briefly to doubt the verdict) in {p.text()}"
            for p in self.phases
            if not p.overloaded and (p.generator_seconds or p.host_seconds)
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "sampled": self.sampled,
            "statements": self.statements(),
            "overloaded_phases": [p.phase for p in self.overloaded],
            "phases": [
                {
                    "phase": p.phase,
                    "seconds": p.seconds,
                    "generator_saturated_seconds": p.generator_seconds,
                    "host_overloaded_seconds": p.host_seconds,
                    "other_processes_seconds": p.other_seconds,
                    "overloaded": p.overloaded,
                    "steal_only": p.steal_only,
                    "reasons": p.reasons[:5],
                }
                for p in self.phases
            ],
            "outages": [o.to_dict() for o in self.outages],
            "target_unreachable": [o.to_dict() for o in self.target_down],
            "died": self.died,
            "peaks": self.peaks,
        }


def rig_report(
    rig: RigTable | Sequence[RigSample] | None,
    phases: Sequence[Phase],
    load: LoadView | None,
    *,
    end: float,
) -> RigReport:
    """The rig's facts for a run (``rig`` None: the run did not sample its rig)."""
    report = RigReport(sampled=rig is not None)
    samples = as_table(rig).seconds
    report.phases = [_phase_rig(p, samples) for p in phases if p.duration > 0]
    for source in SOURCES:
        if source != "target":
            report.outages += source_outages(source, samples, end=end)
    report.target_down = target_outages(samples, load, end=end)
    report.died = list(dict.fromkeys(d for s in samples for d in s.died))
    report.peaks = _peaks(samples)
    return report


def _phase_rig(phase: Phase, samples: Sequence[RigSecond]) -> PhaseRig:
    generator = host = other = 0
    # Each kind of reason once (its worst second's wording), the generator's first.
    worst: dict[str, tuple[float, str]] = {}
    for s in samples:
        if not phase.holds_second(s.second):
            continue
        saturated, stolen, others = generator_reasons(s), steal_reasons(s), other_reasons(s)
        generator += bool(saturated)
        host += bool(stolen or others)
        other += bool(others)
        for why in saturated + stolen + others:
            kind = " ".join(why.split()[:3] if why.startswith("load worker") else why.split()[:2])
            value = _number(why)
            if kind not in worst or value > worst[kind][0]:
                worst[kind] = (value, why)
    reasons = [text for _, text in worst.values()]
    return PhaseRig(phase.name, len(phase.seconds()), generator, host, reasons, other)


def _number(why: str) -> float:
    for word in why.rsplit(" at ", maxsplit=1)[-1].split():
        try:
            return float(word.rstrip("%"))
        except ValueError:
            continue
    return 0.0


def source_outages(source: str, samples: Sequence[RigSecond], *, end: float) -> list[Outage]:
    """Stretches where ``source`` was polled ``down``; an outage still open at the last
    sample lasts to the end."""
    outages: list[Outage] = []
    start: float | None = None
    why = ""
    for s in samples:
        state = s.sources.get(source)
        if state == "down" and start is None:
            start, why = s.t, s.why.get(source, "")
        elif state == "up" and start is not None:
            outages.append(Outage(source, round(start, 1), round(s.t, 1), why))
            start = None
    if start is not None:
        outages.append(Outage(source, round(start, 1), None, why))
    del end
    return outages


def target_outages(
    samples: Sequence[RigSecond], load: LoadView | None, *, end: float
) -> list[Outage]:
    """Where the target did not answer at all (see the module doc)."""
    down: dict[int, tuple[float, str]] = {}
    polled = {s.second: s for s in samples}
    seconds = sorted(set(load.seconds if load is not None else []) | set(polled))
    for second in seconds:
        counts: Mapping[str, int] = load.counts(None, second) if load is not None else {}
        n = sum(counts.values())
        refused = counts.get("connection_error", 0)
        poll = polled.get(second)
        poll_down = poll is not None and poll.sources.get("target") == "down"
        if n and refused == n:
            why = "connection refused or reset on every endpoint"
            t = poll.t if poll_down and poll is not None else float(second)
            down[second] = (t, why)
        elif poll_down and poll is not None and counts.get("ok", 0) == 0:
            down[second] = (poll.t, poll.why.get("target", "health poll refused"))
    outages: list[Outage] = []
    for run in _runs(sorted(down)):
        if len(run) < MIN_OUTAGE_SECONDS:
            continue
        first_t, why = down[run[0]]
        before: Mapping[str, int] = load.counts(None, run[0] - 1) if load is not None else {}
        if before.get("connection_error", 0) > 0:
            # The second it went down in was partly refused already: it starts there.
            first_t = min(first_t, float(run[0] - 1))
        last = run[-1]
        to_end = last + 1 >= int(end) or last == seconds[-1]
        outages.append(Outage("target", round(first_t, 1), None if to_end else last + 1.0, why))
    return outages


def _runs(seconds: Iterable[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for s in seconds:
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def _peaks(samples: Sequence[RigSecond]) -> dict[str, float]:
    workers = [c for s in samples for c in s.workers if c is not None]
    peaks = {
        "worker_cpu": max(workers, default=0.0),
        "load1": max((s.load1 for s in samples if s.load1 is not None), default=0.0),
        "steal": max((s.steal for s in samples if s.steal is not None), default=0.0),
        "other_cpu": max((s.other_cpu for s in samples if s.other_cpu is not None), default=0.0),
    }
    return {k: round(v, 3) for k, v in peaks.items()}


class WithoutSeconds(LoadViewBase):
    """A ``LoadView`` with some seconds left out (the target's outage): cascade and
    recovery judge what the target did while it answered, not that it was gone."""

    def __init__(self, view: LoadView, seconds: set[int]) -> None:
        self._view = view
        self._hidden = seconds

    @property
    def endpoints(self) -> Sequence[str]:
        return self._view.endpoints

    @property
    def seconds(self) -> Sequence[int]:
        return [s for s in self._view.seconds if s not in self._hidden]

    def segments(self, endpoint: str, second: int) -> Mapping[str, Segment]:
        return {} if second in self._hidden else self._view.segments(endpoint, second)

    def histogram(self, endpoint: str | None, second: int) -> Histogram | None:
        return None if second in self._hidden else self._view.histogram(endpoint, second)

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]:
        return {} if second in self._hidden else self._view.counts(endpoint, second)

    def segment_keys(self, endpoint: str, second: int) -> Sequence[str]:
        return [] if second in self._hidden else self._view.segment_keys(endpoint, second)

    def segment_table(self, endpoint: str) -> SegmentTable:
        found = self._view.segment_table(endpoint)
        hidden = np.fromiter(self._hidden, np.int64, len(self._hidden))
        shown = ~np.isin(found.seconds, hidden)
        return SegmentTable(found.seconds[shown], found.codes[shown], found.keys)

    def window(
        self, endpoint: str | None, seconds: Iterable[int]
    ) -> tuple[Histogram, dict[str, int], int]:
        secs = list(seconds)
        shown = [s for s in secs if s not in self._hidden]
        merged, counts, _ = self._view.window(endpoint, shown)
        return merged, counts, len(secs)

    def table(
        self,
        endpoint: str | None,
        seconds: Iterable[int],
        wanted: Sequence[float] = (50.0, 95.0, 99.0),
        above_us: float | None = None,
    ) -> SecondTable:
        found = self._view.table(endpoint, seconds, wanted, above_us)
        hidden = np.isin(found.seconds, np.fromiter(self._hidden, np.int64, len(self._hidden)))
        if not hidden.any():
            return found
        counts = found.counts.copy()
        counts[hidden] = 0
        values = {p: np.where(hidden, np.nan, v) for p, v in found.percentiles.items()}
        above = None if found.above is None else np.where(hidden, 0, found.above)
        return SecondTable(found.seconds, counts, values, above)


def without_outage(view: LoadView, report: RigReport) -> LoadView:
    hidden = report.down_seconds()
    return WithoutSeconds(view, hidden) if hidden else view


def outage_finding(report: RigReport) -> Finding | None:
    """The target's outage named as what it is (critical, fails the run): the target
    stopped answering, whatever was faulted."""
    if not report.target_down:
        return None
    texts = [o.text() for o in report.target_down]
    summary = "The target stopped answering: " + "; ".join(texts)
    if report.died:
        summary += ". " + " ".join(report.died)
    first = report.target_down[0]
    return Finding(
        kind="target_unreachable",
        severity="critical",
        summary=summary,
        evidence={
            "seconds": sorted(report.down_seconds())[:600],
            "outages": [o.to_dict() for o in report.target_down],
            "died": report.died,
            "numbers": {"unreachable from s": first.start},
        },
        fails_run=True,
    )


def lost_reason(report: RigReport, source: str, fallback: str | None) -> str | None:
    """ "not evaluated: Prometheus unreachable from 12.0 s to the end" when the rig saw the
    source go, else the gathering's own reason."""
    lost = report.lost_text(source)
    if lost is not None:
        return f"not evaluated: {lost}"
    return fallback


Judged = Literal["passed", "failed", "inconclusive"]

UNDOUBTED_FINDINGS = frozenset({"data_loss", "target_unreachable"})
"""Failing findings no overload of the rig can produce: an acknowledged write read back
missing (or duplicated) is the target's, however late the load generator sent; a target
refusing every connection stopped answering. A failed run with one of them stays failed on
an overloaded rig."""


def rig_verdict(
    status: Judged,
    exit_code: int,
    reason: str,
    *,
    report: RigReport,
    baseline_breaches: int,
    critical_unevaluated: Sequence[str],
    facts: Sequence[str] = (),
    failing_phases: Collection[str] | None = None,
) -> tuple[Judged, int, str]:
    """The verdict once the rig is known (docs/findings.md, "The rig"):

    - a failure while the rig was overloaded in a phase is ``inconclusive`` (exit 3): the
      measurement cannot tell the target's failure from the rig's — unless the target
      stopped answering or one of ``facts`` failed it (failing findings of
      ``UNDOUBTED_FINDINGS``: lost writes), which are facts whatever the rig did; or unless
      something failed in a phase the rig can be trusted in (``failing_phases``: the
      phases of the failing SLOs, checks and findings; None: unknown, every phase): one
      that was not overloaded, or one overloaded by CPU steal alone when the baseline was
      too and met its SLOs (steal slows every process alike; the baseline measured under
      it is the control);
    - a pass whose configured critical checks could not be evaluated is ``inconclusive``
      (exit 3): no evidence is not a pass;
    - a baseline that missed its own SLOs is said first: the comparison is unreliable;
    - an overloaded rig under a pass is said beside it.
    """
    overloaded = report.overloaded
    worst = next((p.reasons[0] for p in overloaded if p.reasons), "")
    rig_text = (
        f"in the {', '.join(p.phase for p in overloaded)} phase"
        f"{'s' if len(overloaded) > 1 else ''}{f': {worst}' if worst else ''}"
    )
    if baseline_breaches and status == "failed":
        reason = (
            f"the baseline did not meet its SLOs ({baseline_breaches} breached): "
            f"the comparison is unreliable; {reason}"
        )
    if status == "failed" and overloaded and (report.target_down or facts):
        kinds = ", ".join(dict.fromkeys(facts)) or "target_unreachable"
        return (
            status,
            exit_code,
            f"{reason} (though the rig was overloaded {rig_text}: {kinds} does not depend "
            "on the measurement)",
        )
    trusted = _trusted_failures(report, baseline_breaches, failing_phases)
    if status == "failed" and overloaded and trusted:
        return status, exit_code, f"{reason} (though the rig was overloaded {rig_text}; {trusted})"
    if status == "failed" and overloaded:
        return (
            "inconclusive",
            EXIT_UNAVAILABLE,
            f"the rig was overloaded {rig_text}: not reported as the target's failure "
            f"(it would have been: {reason})",
        )
    if status == "passed" and critical_unevaluated:
        return (
            "inconclusive",
            EXIT_UNAVAILABLE,
            "critical checks could not be evaluated: " + "; ".join(critical_unevaluated[:3]),
        )
    if status == "passed" and overloaded:
        reason = f"{reason} (though the rig was overloaded {rig_text})"
    return status, exit_code, reason


def _trusted_failures(
    report: RigReport, baseline_breaches: int, failing_phases: Collection[str] | None
) -> str:
    """Why a failure stands on an overloaded rig ("": it does not); see ``rig_verdict``."""
    if not failing_phases:
        return ""
    phases = {p.phase: p for p in report.phases}
    calm = [name for name in failing_phases if name in phases and not phases[name].overloaded]
    if calm:
        return f"the failures in the {', '.join(sorted(calm))} phase do not depend on it"
    base = phases.get("baseline")
    if base is None or not base.steal_only or baseline_breaches or "baseline" in failing_phases:
        return ""
    if not all(name in phases and phases[name].steal_only for name in failing_phases):
        return ""
    return (
        "CPU steal alone, and the baseline measured under it met its SLOs: the failures in "
        f"the {', '.join(sorted(failing_phases))} phase are the target's"
    )
