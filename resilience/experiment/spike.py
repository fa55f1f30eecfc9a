"""Which stage of a load shape is a spike, and when the spike lasts on the experiment clock.

A load spike is a phase like a fault (docs/load.md, "Spikes"): before it the baseline,
during it the spike, after it the recovery, measured as after a heal. ``load.spike`` says
which stage is the spike: ``auto`` (the default) finds it by the rule below, ``none`` makes
no spike phase, a number names the stage (1 for the first).

The rule (``auto``): stage k — neither the first nor the last — is a spike when the load
of the stage before it is above zero, its own load is at least ``SPIKE_FACTOR`` (2) times
that, and the stage after it comes back down to at most 1/``SPIKE_FACTOR`` of the spike's
load while staying above zero (something has to be left to measure the recovery with).
The load of a stage is its users (closed model) or its requests per second (open model).
A shape with exactly one such stage has a spike; none or several: no spike phase (name the
stage with ``load.spike``). The preset ``spike`` (100 → 1000 → 100 users) is one; a ramp
that only rises (stress), or ends by dropping to zero, is not.

The window runs from the spike stage's start (the load begins to rise) to the moment the
load is back down: the stage's end in the open model; in the closed model the stage's end
plus the time the next stage's spawn rate takes to stop the extra users (Locust stops users
at the spawn rate, as it starts them), never past the next stage's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

SPIKE_FACTOR: Final = 2.0


@dataclass(frozen=True)
class StageLevel:
    """One stage of a shape as the spike rule sees it: its length, its load (users or
    requests per second) and how fast users are started or stopped (None: open model)."""

    duration: float
    level: float
    spawn_rate: float | None = None


@dataclass(frozen=True)
class Spike:
    """A shape's spike: its stage (0-based) and its window on the experiment clock."""

    stage: int
    start: float
    end: float
    before: float
    """The load before the spike (users or requests per second)."""
    peak: float
    after: float

    @property
    def window(self) -> tuple[float, float]:
        return self.start, self.end


def spike_stages(levels: Sequence[StageLevel]) -> list[int]:
    """The stages (0-based) that are spikes by the rule of the module docstring."""
    found: list[int] = []
    for k in range(1, len(levels) - 1):
        before, peak, after = levels[k - 1].level, levels[k].level, levels[k + 1].level
        if before > 0 and peak >= SPIKE_FACTOR * before and 0 < after <= peak / SPIKE_FACTOR:
            found.append(k)
    return found


def spike_of(levels: Sequence[StageLevel], stage: int) -> Spike:
    """The window of stage ``stage`` (0-based, neither the first nor the last) as a spike."""
    if not 0 < stage < len(levels) - 1:
        raise ValueError(f"stage {stage + 1} of {len(levels)} has no stage before and after it")
    start = sum(s.duration for s in levels[:stage])
    end = start + levels[stage].duration
    peak, following = levels[stage], levels[stage + 1]
    if following.spawn_rate is not None and peak.level > following.level:
        end += min((peak.level - following.level) / following.spawn_rate, following.duration)
    return Spike(stage, start, end, levels[stage - 1].level, peak.level, following.level)


def find_spike(levels: Sequence[StageLevel], setting: str | int) -> Spike | None:
    """The shape's spike for ``load.spike`` = ``setting`` (``auto``, ``none`` or a stage
    number counted from 1); None when it has none."""
    if setting == "none":
        return None
    if isinstance(setting, int):
        return spike_of(levels, setting - 1)
    found = spike_stages(levels)
    return spike_of(levels, found[0]) if len(found) == 1 else None
