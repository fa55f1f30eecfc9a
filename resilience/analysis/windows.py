"""A game day's fault windows, each judged as a run is judged.

A run has one fault window; a game-day session has as many as people injected, at times
nobody planned. Here each window of a session directory gets the run's judgement
(``analyse.judge``: SLOs, measured recovery, checks, every detector) over phases of its
own, from the same files:

- a **window** is a set of faults whose windows overlap, merged (applied .. last heal);
- its **baseline** is the clean stretch before it: from the moment the previous window had
  recovered (its heal, its measured recovery and the stable seconds that proved it), or
  from the end of the warm-up for the first window. When that stretch is shorter than
  ``MIN_BASELINE_S`` (or the previous window never recovered) the session's first baseline
  stands in: the target's normal behaviour, before anything was injected;
- its **fault** phase runs from the first apply to the last heal, its **recovery** phase
  from the last heal until the next window began (or the load ended);
- requests are placed by their [sent, ended] interval against the session's phase marks
  (``phases.WindowRule``): the baseline holds requests that ended before the window's first
  apply, the fault every request that touched it, recovery the requests sent after its
  last heal that ended before the next window. A session without marks is placed by send
  time. The load, kept trace ids and acknowledged writes outside the window's stretch are
  left out, so another window's requests are never this one's evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from resilience.analysis.analyse import Judged, RunEvidence, Verdict, judge, read_evidence
from resilience.analysis.data import window_stats
from resilience.analysis.phases import PhasedLoad, PhaseRule, marks_of, window_rule
from resilience.experiment.model import Experiment
from resilience.vocabulary import FaultWindow, Phase

MIN_BASELINE_S = 5.0
"""A window's own baseline shorter than this: the session's first baseline stands in."""


@dataclass(frozen=True)
class SessionWindow:
    """Faults whose windows overlap, judged as one window."""

    index: int
    faults: tuple[FaultWindow, ...]
    start: float
    end: float | None
    """The last heal; None: a fault of it was never healed."""
    until: float
    """Where its recovery phase ends: the next window's start, or the end of the load."""

    @property
    def label(self) -> str:
        return " + ".join(f"#{f.index} {f.type} on {f.proxy}" for f in self.faults)


def session_windows(faults: Sequence[FaultWindow], end: float) -> list[SessionWindow]:
    """The session's fault windows in time order (overlapping faults merged)."""
    groups: list[list[FaultWindow]] = []
    ends: list[float | None] = []
    for fault in sorted(faults, key=lambda f: (f.start, f.index)):
        last_end = ends[-1] if ends else 0.0
        if groups and (last_end is None or fault.start <= last_end):
            groups[-1].append(fault)
            ends[-1] = None if last_end is None or fault.end is None else max(last_end, fault.end)
        else:
            groups.append([fault])
            ends.append(fault.end)
    windows: list[SessionWindow] = []
    for i, (group, healed) in enumerate(zip(groups, ends, strict=True)):
        until = groups[i + 1][0].start if i + 1 < len(groups) else end
        start = group[0].start
        windows.append(SessionWindow(i, tuple(group), start, healed, max(until, healed or start)))
    return windows


@dataclass(frozen=True)
class EndpointShift:
    """One endpoint before and during a window: error rate and p95 (ms), over the
    requests of the window's baseline and fault phases."""

    endpoint: str
    baseline_error_rate: float | None
    fault_error_rate: float | None
    baseline_p95_ms: float | None
    fault_p95_ms: float | None
    fault_requests: int


@dataclass(frozen=True)
class WindowVerdict:
    """One window of a session and what the run's analysis found in it."""

    window: SessionWindow
    verdict: Verdict
    own_baseline: bool
    """False: the window's own clean stretch was too short, the session's first stood in."""
    endpoints: list[EndpointShift] = field(default_factory=list)

    @property
    def baseline(self) -> Phase:
        return self.verdict.phases[0]

    def to_record(self) -> dict[str, Any]:
        """The window as the session's journal keeps it (``windows[]``): the window, its
        phases, and the verdict's slo, recovery, checks and findings as a run records them."""
        w = self.window
        fields = self.verdict.journal_fields()
        return {
            "index": w.index,
            "label": w.label,
            "start": round(w.start, 4),
            "end": None if w.end is None else round(w.end, 4),
            "until": round(w.until, 4),
            "faults": [f.index for f in w.faults],
            "own_baseline": self.own_baseline,
            "status": self.verdict.status,
            "reason": self.verdict.reason,
            "phases": [r.model_dump() for r in fields["phases"]],
            "recovery": fields["recovery"].model_dump(),
            "slo": [r.model_dump() for r in fields["slo"]],
            "checks": [r.model_dump() for r in fields["checks"]],
            "findings": [r.model_dump() for r in fields["findings"]],
            "endpoints": [vars(e) for e in self.endpoints],
            "analysis": dict(self.verdict.analysis),
        }


def gather_phases(windows: Sequence[SessionWindow], warmup: float) -> list[Phase]:
    """The session's phases for gathering evidence (series, traces, read-back): the first
    baseline, then each window's fault and recovery phases."""
    if not windows:
        return []
    phases = [Phase("baseline", min(warmup, windows[0].start), windows[0].start)]
    for window in windows:
        phases.extend(window_phases(window, phases[0])[1:])
    return phases


def window_phases(window: SessionWindow, baseline: Phase) -> list[Phase]:
    """baseline, fault (to the last heal, or to the window's end if never healed), and
    recovery (from the last heal until the next window or the end), when it has a length."""
    if window.end is None:
        return [baseline, Phase("fault", window.start, window.until)]
    phases = [baseline, Phase("fault", window.start, window.end)]
    if window.until > window.end:
        phases.append(Phase("recovery", window.end, window.until))
    return phases


def judge_windows(
    run: RunEvidence, *, say: Callable[[str], None] = lambda _m: None
) -> list[WindowVerdict]:
    """Every fault window of the session in ``run``, judged in time order."""
    journal = run.journal
    end = run.load_end
    windows = session_windows(journal.fault_windows(), end)
    if not windows:
        return []
    warmup = min(run.experiment.load.warmup, windows[0].start)
    first_baseline = Phase("baseline", warmup, windows[0].start)
    marks = marks_of(journal)
    stable = run.experiment.recovery.stable_seconds
    clean_from: float | None = warmup
    out: list[WindowVerdict] = []
    for window in windows:
        own = Phase("baseline", clean_from if clean_from is not None else 0.0, window.start)
        use_own = clean_from is not None and (own.duration >= MIN_BASELINE_S or window.index == 0)
        baseline = own if use_own else first_baseline
        phases = window_phases(window, baseline)
        say(f"judging window {window.index + 1} of {len(windows)} ({window.label})")
        rule = window_rule(marks, (f.index for f in window.faults), baseline.start)
        verdict = judge(
            run,
            Judged(
                phases=phases,
                faults=list(window.faults),
                rule=rule,
                start=baseline.start,
                end=phases[-1].end,
                only_within=True,
            ),
        )
        verdict = replace(verdict, analysis={**verdict.analysis, "window": window.index})
        shifts = endpoint_shifts(run, phases, rule, baseline.start)
        out.append(WindowVerdict(window, verdict, use_own, shifts))
        recovery = verdict.recovery
        clean_from = None
        if window.end is not None and recovery is not None and recovery.recovered:
            clean_from = window.end + (recovery.seconds or 0.0) + stable
    return out


def endpoint_shifts(
    run: RunEvidence, phases: Sequence[Phase], rule: PhaseRule | None, start: float
) -> list[EndpointShift]:
    """Each endpoint's error rate and p95 over the window's baseline and fault requests."""
    phased = PhasedLoad(run.load, phases, rule, warmup=start)
    (base_view, base_seconds), (fault_view, fault_seconds) = (
        phased.of("baseline"),
        phased.of("fault"),
    )
    out: list[EndpointShift] = []
    for endpoint in run.load.endpoints:
        before = window_stats(base_view, endpoint, base_seconds)
        during = window_stats(fault_view, endpoint, fault_seconds)
        out.append(
            EndpointShift(
                endpoint,
                before.error_rate,
                during.error_rate,
                before.p95,
                during.p95,
                during.requests,
            )
        )
    return out


def analyse_windows(
    run_dir: Path,
    *,
    experiment: Experiment | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> list[WindowVerdict]:
    """Judge every fault window of the session directory ``run_dir`` (see the module doc);
    ``experiment`` replaces the one it recorded."""
    return judge_windows(read_evidence(run_dir, experiment=experiment), say=say)
