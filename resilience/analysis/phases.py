"""Which phase a request belongs to: by its interval [sent, ended], not by when it was sent.

A request whose interval overlaps a fault window belongs to the fault phase; the baseline
holds only requests that ended before the first fault began to act; recovery holds only
requests sent after the last heal (DESIGN.md's phases, made exact for requests in flight
at a boundary). The load workers place each request against the run's **phase marks** —
the moments a fault began to act (taken just before the Toxiproxy call) and was healed
(taken once the call returned) — as a segment ``i-j``: sent after ``i`` marks, ended after
``j`` (resilience/load/collector.py). Here a segment becomes a phase:

- ``j == 0``: ended before the first mark → baseline;
- sent at or after the mark that left no fault active to the end → recovery;
- anything else touched a fault window (or the gap between two faults) → fault.

Requests sent in the warm-up belong to no phase. A run without marks (no fault, or a run
directory from before marks existed) is placed by send time, as it always was: a second
belongs to the phase holding its midpoint. ``PhasedLoad`` gives each phase its own
``LoadView`` (only that phase's requests, per send second) and the seconds that hold them;
the per-second charts keep the whole view, by send time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from resilience import histogram as hist
from resilience.histogram import Histogram
from resilience.rundir.journal import JournalData
from resilience.rundir.load import LoadView, LoadViewBase, SecondTable, Segment
from resilience.vocabulary import OUTCOMES, Phase

MarkKind = Literal["apply", "heal"]
SEND_TIME: str = "send_time"
OVERLAP: str = "overlap"


@dataclass(frozen=True)
class Mark:
    """A moment a fault began to act (``apply``) or was healed (``heal``), experiment clock."""

    t: float
    kind: MarkKind
    fault: int = 0


def parse_segment(key: str) -> tuple[int, int]:
    """``"i-j"`` as ``(i, j)``; anything unreadable counts as before every mark."""
    first, _, second = key.partition("-")
    try:
        return int(first), int(second)
    except ValueError:
        return 0, 0


@dataclass(frozen=True)
class PhaseRule:
    """The overlap rule over a run's marks (see the module docstring)."""

    marks: tuple[Mark, ...]
    recovery_from: int | None = field(init=False)
    """Marks after which no fault was active to the end (None: a fault was never healed)."""

    def __post_init__(self) -> None:
        active, settled = 0, None
        for count, mark in enumerate(self.marks, start=1):
            active = active + 1 if mark.kind == "apply" else max(0, active - 1)
            settled = count if active == 0 else None
        object.__setattr__(self, "recovery_from", settled if self.marks else None)

    def phase(self, sent_after: int, ended_after: int) -> str:
        if ended_after == 0:
            return "baseline"
        if self.recovery_from is not None and sent_after >= self.recovery_from:
            return "recovery"
        return "fault"

    def phase_of(self, key: str) -> str:
        return self.phase(*parse_segment(key))

    def phase_of_interval(self, sent: float, ended: float) -> str:
        """The phase of one request known by its times (a kept trace id, for example)."""
        times = [m.t for m in self.marks]
        return self.phase(sum(1 for t in times if t <= sent), sum(1 for t in times if t <= ended))


OUTSIDE = "outside"
"""The phase of a request that belongs to none of a window's phases (another window's)."""


@dataclass(frozen=True)
class WindowRule(PhaseRule):
    """The overlap rule for one fault window of a game day, over the session's marks.

    A session has several windows (faults whose windows overlap, merged); its marks run
    over all of them, and a request's segment ``i-j`` counts every mark before it. For the
    window whose marks are ``first`` .. ``last`` (``last``: marks after its last heal; None
    when a fault of it was never healed), with ``before`` marks behind its baseline:

    - baseline: sent and ended with ``before`` marks behind them (``before == first``: after
      the previous window's last heal and before this window's first apply; 0: the
      session's first baseline);
    - fault: ended after the window's first apply and sent before its last heal;
    - recovery: sent after the last heal and ended before the next window began;
    - anything else (another window's requests): ``OUTSIDE``.

    With one window and ``before == first == 0`` this is ``PhaseRule`` exactly. The send
    second at which a window's baseline begins is ``PhasedLoad``'s ``warmup``.
    """

    before: int = 0
    first: int = 0
    last: int | None = None

    def phase(self, sent_after: int, ended_after: int) -> str:
        if sent_after == ended_after == self.before:
            return "baseline"
        if self.last is not None and sent_after == ended_after == self.last:
            return "recovery"
        if ended_after > self.first and (self.last is None or sent_after < self.last):
            return "fault"
        return OUTSIDE


def window_rule(
    marks: Sequence[Mark], faults: Iterable[int], baseline_start: float
) -> WindowRule | None:
    """The rule of the window made of ``faults`` (their indexes), whose baseline begins at
    ``baseline_start``; None when the session sent no marks for them (placed by send time)."""
    wanted = set(faults)
    applied = [i for i, m in enumerate(marks) if m.kind == "apply" and m.fault in wanted]
    if not applied:
        return None
    first = applied[0]
    healed = {m.fault: i for i, m in enumerate(marks) if m.kind == "heal" and m.fault in wanted}
    last = max(healed.values()) + 1 if wanted <= set(healed) else None
    before = min(first, sum(1 for m in marks if m.t <= baseline_start))
    return WindowRule(tuple(marks), before=before, first=first, last=last)


_EMPTY, _OTHER, _ALL, _PART = 0, 1, 2, 3
"""Where one endpoint's second stands against a phase: no requests; requests, none of the
phase's; every request the phase's; some."""


class _PhaseView(LoadViewBase):
    """The requests of one phase, per send second and endpoint (a ``LoadView``).

    Per endpoint it keeps one small array: whether each second's requests all belong to
    the phase (then the load's own numbers answer, in bulk), none, or some. Only a second
    split across phases (a request in flight at a mark) has its parts merged, and that
    merge is cached (a few seconds per mark)."""

    def __init__(self, load: LoadView, rule: PhaseRule, name: str, warmup: float) -> None:
        self._load = load
        self._rule = rule
        self._name = name
        self._first = int(warmup) if warmup == int(warmup) else int(warmup) + 1
        self._split: dict[tuple[str | None, int], tuple[Histogram, dict[str, int]]] = {}
        self._all_seconds = np.asarray(list(load.seconds), np.int64)
        self._states: dict[str | None, np.ndarray] = {}
        self._key_phase: dict[str, bool] = {}
        self._seconds: list[int] | None = None

    @property
    def endpoints(self) -> Sequence[str]:
        return self._load.endpoints

    @property
    def seconds(self) -> Sequence[int]:
        if self._seconds is None:
            mine = np.isin(self._state_array(None), (_ALL, _PART))
            self._seconds = self._all_seconds[mine].tolist()
        return self._seconds

    # -- where each second stands ---------------------------------------------------------

    def _is_mine(self, key: str) -> bool:
        mine = self._key_phase.get(key)
        if mine is None:
            mine = self._key_phase[key] = self._rule.phase_of(key) == self._name
        return mine

    def _state_array(self, endpoint: str | None) -> np.ndarray:
        states = self._states.get(endpoint)
        if states is not None:
            return states
        if endpoint is None:
            each = [self._state_array(e) for e in self._load.endpoints]
            if not each:
                states = np.zeros(len(self._all_seconds), np.int8)
            else:
                stacked = np.stack(each)
                has_mine = np.isin(stacked, (_ALL, _PART)).any(axis=0)
                whole = np.isin(stacked, (_EMPTY, _ALL)).all(axis=0)
                states = np.where(has_mine, np.where(whole, _ALL, _PART), _EMPTY).astype(np.int8)
        else:
            states = np.zeros(len(self._all_seconds), np.int8)
            table = self._load.segment_table(endpoint)
            per_key = np.zeros(len(table.keys), np.int8)
            for code, keys in enumerate(table.keys):
                mine = [self._is_mine(k) for k in keys]
                per_key[code] = _ALL if all(mine) else _PART if any(mine) else _OTHER
            found = table.seconds >= self._first
            at = np.searchsorted(self._all_seconds, table.seconds[found])
            states[at] = per_key[table.codes[found]]
        self._states[endpoint] = states
        return states

    def _state(self, endpoint: str | None, second: int) -> int:
        return int(self._states_of(endpoint, np.asarray([second], np.int64))[0])

    def _states_of(self, endpoint: str | None, seconds: np.ndarray) -> np.ndarray:
        states = self._state_array(endpoint)
        out = np.zeros(len(seconds), np.int8)
        if not len(self._all_seconds):
            return out
        at = np.clip(np.searchsorted(self._all_seconds, seconds), 0, len(self._all_seconds) - 1)
        known = self._all_seconds[at] == seconds
        out[known] = states[at[known]]
        return out

    # -- a second at a time -------------------------------------------------------------

    def _own(self, endpoint: str, second: int) -> list[Segment]:
        if second < self._first:
            return []
        return [
            part
            for key, part in self._load.segments(endpoint, second).items()
            if self._is_mine(key)
        ]

    def _entry(self, endpoint: str | None, second: int) -> tuple[Histogram | None, dict[str, int]]:
        state = self._state(endpoint, second)
        if state in (_EMPTY, _OTHER):
            return None, {}
        if state == _ALL:
            return self._load.histogram(endpoint, second), dict(self._load.counts(endpoint, second))
        split = self._split.get((endpoint, second))
        if split is not None:
            return split
        names = self._load.endpoints if endpoint is None else [endpoint]
        parts = [p for name in names for p in self._own(name, second)]
        counts = {k: sum(p.counts.get(k, 0) for p in parts) for k in OUTCOMES}
        merged = hist.merge_all(p.histogram for p in parts if p.histogram is not None)
        self._split[(endpoint, second)] = (merged, counts)
        return merged, counts

    def segments(self, endpoint: str, second: int) -> Mapping[str, Segment]:
        return {
            key: part
            for key, part in self._load.segments(endpoint, second).items()
            if second >= self._first and self._is_mine(key)
        }

    def segment_keys(self, endpoint: str, second: int) -> Sequence[str]:
        if second < self._first:
            return []
        return [k for k in self._load.segment_keys(endpoint, second) if self._is_mine(k)]

    def histogram(self, endpoint: str | None, second: int) -> Histogram | None:
        return self._entry(endpoint, second)[0]

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]:
        return self._entry(endpoint, second)[1]

    # -- many seconds at once -------------------------------------------------------------

    def window(
        self, endpoint: str | None, seconds: Iterable[int]
    ) -> tuple[Histogram, dict[str, int], int]:
        secs = np.fromiter((int(s) for s in seconds), np.int64)
        states = self._states_of(endpoint, secs)
        whole, counts, _ = self._load.window(endpoint, secs[states == _ALL].tolist())
        parts: list[Histogram | None] = [whole]
        for second in secs[states == _PART].tolist():
            merged, part_counts = self._entry(endpoint, second)
            parts.append(merged)
            for key, value in part_counts.items():
                counts[key] = counts.get(key, 0) + value
        return hist.merge_all(parts), counts, len(secs)

    def table(
        self,
        endpoint: str | None,
        seconds: Iterable[int],
        wanted: Sequence[float] = (50.0, 95.0, 99.0),
        above_us: float | None = None,
    ) -> SecondTable:
        secs = np.fromiter((int(s) for s in seconds), np.int64)
        states = self._states_of(endpoint, secs)
        counts = np.zeros((len(secs), len(OUTCOMES)), np.int64)
        values = {p: np.full(len(secs), np.nan) for p in wanted}
        above = None if above_us is None else np.zeros(len(secs), np.int64)
        whole = states == _ALL
        if whole.any():
            found = self._load.table(endpoint, secs[whole].tolist(), wanted, above_us)
            counts[whole] = found.counts
            for p in wanted:
                values[p][whole] = found.percentiles[p]
            if above is not None and found.above is not None:
                above[whole] = found.above
        split = np.flatnonzero(states == _PART)
        if len(split):
            found = super().table(endpoint, secs[split].tolist(), wanted, above_us)
            counts[split] = found.counts
            for p in wanted:
                values[p][split] = found.percentiles[p]
            if above is not None and found.above is not None:
                above[split] = found.above
        return SecondTable(secs, counts, values, above)


class PhasedLoad:
    """A run's load data split by phase: ``view(name)`` and ``seconds(name)``."""

    def __init__(
        self,
        load: LoadView,
        phases: Sequence[Phase],
        rule: PhaseRule | None = None,
        *,
        warmup: float = 0.0,
    ) -> None:
        self.load = load
        self.phases = list(phases)
        self.rule = rule
        self.warmup = warmup
        self._views: dict[str, LoadView] = {}

    @property
    def method(self) -> str:
        """``overlap`` (requests placed by their interval) or ``send_time``."""
        return OVERLAP if self.rule is not None else SEND_TIME

    def _phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def view(self, name: str) -> LoadView:
        """Only the requests of phase ``name``, per send second (the whole load by send
        time when the run has no marks)."""
        if self.rule is None:
            return self.load
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = _PhaseView(self.load, self.rule, name, self.warmup)
        return view

    def seconds(self, name: str) -> list[int]:
        """The send seconds that hold requests of phase ``name`` (by send time: the seconds
        whose midpoint lies in the phase)."""
        phase = self._phase(name)
        if phase is None:
            return []
        if self.rule is None:
            return list(phase.seconds())
        return list(self.view(name).seconds)

    def of(self, name: str) -> tuple[LoadView, list[int]]:
        return self.view(name), self.seconds(name)


def phased_of_run(journal: JournalData, load: LoadView, phases: Sequence[Phase]) -> PhasedLoad:
    """A recorded run's load split by its judged phases (which begin after the warm-up),
    by overlap when its journal has phase marks."""
    warmup = min((p.start for p in phases), default=0.0)
    return PhasedLoad(load, phases, run_rule(journal), warmup=warmup)


def marks_of(journal: JournalData) -> tuple[Mark, ...]:
    return tuple(Mark(m.t, m.kind, m.fault) for m in journal.marks)


def run_rule(journal: JournalData) -> PhaseRule | None:
    """The overlap rule over a run's phase marks (None: a run without marks, by send time)."""
    return PhaseRule(marks_of(journal)) if journal.marks else None
