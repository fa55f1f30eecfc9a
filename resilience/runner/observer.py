"""How a run reports progress to whoever watches it (the CLI's live console, a test).

Every hook has an empty body, so an observer overrides only what it needs (the shape of
Chaos Toolkit's ``RunEventHandler``). Hooks are called from the orchestrator's thread and
must return quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resilience.experiment.model import Experiment
    from resilience.faults.timeline import FaultEvent
    from resilience.observe.guards import GuardTrip
    from resilience.runner.orchestrator import RunResult


@dataclass(frozen=True)
class LiveStatus:
    """A snapshot for the live console: latencies in seconds, error rate 0..1."""

    t: float
    total: float
    phase: str
    rps: float
    p95: float | None
    error_rate: float | None
    in_flight: int
    users: int
    active_faults: list[str] = field(default_factory=list)
    oldest_in_flight: float | None = None


class RunObserver:
    """Base observer: every hook does nothing."""

    def message(self, text: str) -> None:
        """A line of progress before or after the live part (stack, sweep, analysis)."""

    def started(self, run_dir: Path, experiment: Experiment, total: float) -> None:
        """The load is about to start; ``total`` is its length in seconds."""

    def tick(self, status: LiveStatus) -> None:
        """About twice a second during the load."""

    def fault_event(self, event: FaultEvent) -> None:
        """A fault was applied, changed, healed or failed."""

    def guard_tripped(self, trip: GuardTrip) -> None:
        """A guard tripped; the run is being aborted (faults heal first)."""

    def rig_event(self, text: str, *, severe: bool) -> None:
        """The rig changed: a source lost or back, a stack process gone, the generator
        saturated or the host overloaded (``severe``: the measurement is in doubt)."""

    def load_finished(self) -> None:
        """The load ended (or was stopped); analysis follows."""

    def finished(self, result: RunResult) -> None:
        """The run is over; the result carries the verdict."""
