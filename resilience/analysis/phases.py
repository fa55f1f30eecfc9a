"""Phases from the journal's applied/healed stamps — never from the schedule.

baseline: from the start of load to the first fault applied; fault: from the first
application to the last heal (one window, overlaps merged, gaps between faults included:
the system has not had a clean stretch); recovery: from the last heal to the end of load.
A run without faults is all baseline. A fault that was never healed (aborted run) ends the
fault phase at the end of the run and leaves no recovery phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resilience.analysis.data import Phase


@dataclass(frozen=True)
class FaultWindow:
    applied_at: float
    healed_at: float | None


def compute_phases(faults: Sequence[FaultWindow], *, start: float, end: float) -> list[Phase]:
    applied = [f for f in faults if f.applied_at is not None]
    if not applied:
        return [Phase("baseline", start, end)]
    first = min(f.applied_at for f in applied)
    healed = [f.healed_at for f in applied]
    phases = [Phase("baseline", start, max(start, first))] if first > start else []
    if any(h is None for h in healed):
        phases.append(Phase("fault", first, end))
        return phases
    last = max(h for h in healed if h is not None)
    phases.append(Phase("fault", first, min(last, end)))
    if last < end:
        phases.append(Phase("recovery", last, end))
    return phases


def phase_named(phases: Sequence[Phase], name: str) -> Phase | None:
    return next((p for p in phases if p.name == name), None)
