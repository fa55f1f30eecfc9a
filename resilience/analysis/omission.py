"""Coordinated omission in a closed-model run: how much its latency during stalls may hide.

A closed-model user sends its next request only after the answer to the last one: while the
target stalls, the users wait instead of sending, so the stall is measured once per user
instead of once per request an outside client would have sent meanwhile (Gil Tene's
"coordinated omission"). The open model (``arrival_rate``) measures every request from its
intended send time and hides nothing; a closed-model run says how much it may hide.

The estimate is "from users blocked": a user's usual interval between two sends is
``I = users / baseline rate`` (Little's law over the baseline, or the whole run without
faults). A request that took ``L > I`` kept its user from sending ``floor(L / I) - 1``
requests at that pace; had they been sent they would have measured ``L - I``, ``L - 2I``,
... (HdrHistogram's ``recordValueWithExpectedInterval``, applied to the recorded
histograms afterwards). ``not_sent`` counts them; each phase's p99 is given as recorded
and with them counted, which is what an open model at the baseline's rate would have come
close to. Pure: from the run directory's load data and the experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from resilience import histogram as hist
from resilience.experiment.model import Experiment
from resilience.rundir.load import LoadView
from resilience.vocabulary import Phase


@dataclass(frozen=True)
class PhaseOmission:
    phase: str
    p99_ms: float | None
    p99_corrected_ms: float | None
    not_sent: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "p99_ms": self.p99_ms,
            "p99_corrected_ms": self.p99_corrected_ms,
            "not_sent": self.not_sent,
        }


@dataclass(frozen=True)
class Omission:
    """A closed-model run's estimate (see the module doc)."""

    users: int
    baseline_rps: float
    interval: float
    phases: list[PhaseOmission]

    @property
    def not_sent(self) -> int:
        return sum(p.not_sent for p in self.phases)

    def worst(self) -> PhaseOmission | None:
        """The phase whose p99 grows the most when the omitted requests are counted."""
        grown = [p for p in self.phases if p.p99_ms is not None and p.p99_corrected_ms is not None]
        return max(grown, key=lambda p: (p.p99_corrected_ms or 0) - (p.p99_ms or 0), default=None)

    def statement(self) -> str:
        pace = (
            f"one request per user every {self.interval:.2f} s "
            f"({self.baseline_rps:.1f} req/s from {self.users} users)"
        )
        if self.not_sent == 0:
            return (
                f"Closed model: no request took longer than a user's usual interval ({pace}), "
                "so no latency hid behind waiting users (coordinated omission)."
            )
        worst = self.worst()
        where = "; counted with the latency they would have met, no phase's p99 would change"
        grows = worst is not None and (worst.p99_corrected_ms or 0) - (worst.p99_ms or 0) >= 1
        if worst is not None and grows:
            where = (
                f"; counting them with the latency they would have met, {worst.phase} p99 "
                f"could be {worst.p99_corrected_ms:,.0f} ms instead of the "
                f"{worst.p99_ms:,.0f} ms measured"
            )
        return (
            "Closed model: latency during stalls is understated (coordinated omission: a user "
            "waiting for an answer sends nothing meanwhile). At the baseline pace, "
            f"{pace}, the blocked users would have sent about {self.not_sent:,} more "
            f"requests{where}. The open model (arrival_rate) measures them."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "closed",
            "users": self.users,
            "baseline_rps": round(self.baseline_rps, 3),
            "interval_s": round(self.interval, 6),
            "not_sent": self.not_sent,
            "phases": [p.to_dict() for p in self.phases],
            "statement": self.statement(),
        }


class PhaseViews(Protocol):
    """The load split by phase (``analysis.phases.PhasedLoad``)."""

    def view(self, name: str) -> LoadView: ...

    def seconds(self, name: str) -> list[int]: ...


class _BySendTime:
    def __init__(self, view: LoadView, phases: Sequence[Phase]) -> None:
        self._view = view
        self._phases = {p.name: p for p in phases}

    def view(self, name: str) -> LoadView:
        return self._view

    def seconds(self, name: str) -> list[int]:
        phase = self._phases.get(name)
        return list(phase.seconds()) if phase is not None else []


def users_at(experiment: Experiment, t: float) -> int:
    """The closed model's users (all workers) planned at experiment time ``t``."""
    start = 0.0
    stages = experiment.load.resolve_stages()
    for stage in stages:
        if t < start + stage.duration:
            return stage.users
        start += stage.duration
    return stages[-1].users if stages else 0


def estimate_omission(
    view: LoadView,
    phases: Sequence[Phase],
    experiment: Experiment,
    phased: PhaseViews | None = None,
) -> Omission | None:
    """The estimate for a closed-model run (None for the open model, or without load).
    ``phased``: the requests of each phase as the analysis placed them (else by send time)."""
    if experiment.load.model != "closed" or not phases:
        return None
    split = phased or _BySendTime(view, phases)
    reference = next((p for p in phases if p.name == "baseline"), phases[0])
    seconds = split.seconds(reference.name)
    if not seconds:
        return None
    base = split.view(reference.name)
    sent = sum(sum(base.counts(None, s).values()) for s in seconds)
    users = max(users_at(experiment, s + 0.5) for s in seconds)
    if sent == 0 or users == 0:
        return None
    rps = sent / len(seconds)
    interval = users / rps
    interval_us = max(1, round(interval * 1_000_000))
    result: list[PhaseOmission] = []
    for phase in phases:
        part = split.view(phase.name)
        merged = hist.merge_all(part.histogram(None, s) for s in split.seconds(phase.name))
        corrected, added = hist.corrected_for_omission(merged, interval_us)
        [p99] = merged.percentiles_ms([99.0])
        [p99_corrected] = corrected.percentiles_ms([99.0])
        result.append(PhaseOmission(phase.name, p99, p99_corrected, added))
    return Omission(users=users, baseline_rps=rps, interval=interval, phases=result)
