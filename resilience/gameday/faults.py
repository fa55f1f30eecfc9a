"""Faults injected by hand: one fault timeline per injection, all on the session clock.

``FaultTimeline`` runs a fixed list of faults; a game day decides them as it goes. Each
injection therefore gets a timeline of its own holding one ``FaultSpec`` that starts now
and lasts its suggested duration (or until the session's maximum length): the timeline
writes the fault ledger before applying (so a killed session is swept like a killed run),
drives time-driven faults (flap, ramp, flaky), stamps applied/healed on the clock, and its
``heal_all`` is the heal of that one fault. Fault ids are the spec indexes, so toxic names
(``resilience-<id>-<type>``) never repeat within a session.

Two faults that disable the same proxy (``outage``, ``flap``) would each re-enable it when
healed; the board refuses the second while the first is active.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resilience.errors import FaultError
from resilience.faults.catalogue import FAULT_TYPES, FaultSpec
from resilience.faults.timeline import FaultEvent, FaultTimeline, HealReport
from resilience.faults.toxiproxy import Stream, ToxiproxyApi
from resilience.vocabulary import Clock

logger = logging.getLogger(__name__)


class FaultRefused(FaultError):
    """An injection the board will not make (bad attributes, a clashing outage)."""

    exit_code = 2


@dataclass(frozen=True)
class HealAllResult:
    healed: tuple[int, ...]
    failed: tuple[tuple[int, str], ...]
    seconds: float


class FaultBoard:
    """The session's faults: inject, heal one, heal all, tick the time-driven ones."""

    def __init__(
        self,
        api: ToxiproxyApi,
        clock: Clock,
        *,
        ledger: Path | None,
        on_event: Callable[[FaultEvent], None],
        end_of_session: Callable[[], float],
        on_before_apply: Callable[[int], None] | None = None,
    ) -> None:
        self.api = api
        self.clock = clock
        self.ledger = ledger
        self.on_event = on_event
        self.end_of_session = end_of_session
        self.on_before_apply = on_before_apply
        """Called with a fault's id just before its first Toxiproxy call (the phase mark)."""
        self._timelines: dict[int, FaultTimeline] = {}
        self._labels: dict[int, str] = {}
        self._next_id = 0
        self._lock = threading.RLock()

    def inject(
        self,
        *,
        proxy: str,
        type: str,
        attributes: Mapping[str, int | float | str] | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        duration: float | None = None,
        label: str = "",
    ) -> int:
        """Apply a fault now; its id. FaultRefused for a bad request, FaultError when
        Toxiproxy refuses (the fault is then healed and marked failed)."""
        if type not in FAULT_TYPES:
            raise FaultRefused(f"unknown fault type {type!r} (known: {', '.join(FAULT_TYPES)})")
        with self._lock:
            now = self.clock.now()
            if FAULT_TYPES[type].disables_proxy:
                for other in self.active():
                    if other["proxy"] == proxy and FAULT_TYPES[other["type"]].disables_proxy:
                        raise FaultRefused(
                            f"{proxy} is already disabled by fault {other['index']} "
                            f"({other['type']}): heal it first"
                        )
            fault_id = self._next_id
            remaining = self.end_of_session() - now
            length = min(duration, remaining) if duration is not None else remaining
            try:
                spec = FaultSpec(
                    index=fault_id,
                    at=max(0.0, now),
                    duration=max(length, 0.001),
                    proxy=proxy,
                    type=type,
                    stream=stream,
                    toxicity=toxicity,
                    attributes=dict(attributes or {}),
                )
            except ValueError as exc:
                raise FaultRefused(str(exc)) from None
            self._next_id += 1
            timeline = FaultTimeline(
                [spec],
                self.api,
                self.clock,
                self.on_event,
                ledger=self.ledger,
                on_before_apply=self.on_before_apply,
            )
            self._timelines[fault_id] = timeline
            self._labels[fault_id] = label
            try:
                timeline.tick(spec.at)
            except FaultError:
                timeline.heal_all(budget=2.0)
                raise
            return fault_id

    def tick(self) -> None:
        """Changes of time-driven faults and the heals of faults whose duration is over."""
        with self._lock:
            timelines = list(self._timelines.values())
        for timeline in timelines:
            if timeline.closed or timeline.done():
                continue
            try:
                timeline.tick()
            except FaultError as exc:
                logger.error("a fault's timeline failed: %s", exc)
                timeline.heal_all(budget=2.0)

    def heal(self, fault_id: int) -> HealReport:
        with self._lock:
            timeline = self._timelines.get(fault_id)
        if timeline is None:
            raise FaultRefused(f"no fault {fault_id} in this session")
        return timeline.heal_all(budget=2.0)

    def heal_all(self, budget: float = 0.9) -> HealAllResult:
        """Heal every fault that may be in effect (each gets its try), within ``budget``."""
        started = time.monotonic()
        healed: list[int] = []
        failed: list[tuple[int, str]] = []
        with self._lock:
            timelines = dict(self._timelines)
        for timeline in timelines.values():
            if timeline.closed and timeline.done():
                continue
            left = max(0.05, budget - (time.monotonic() - started))
            report = timeline.heal_all(budget=left)
            healed.extend(report.healed)
            failed.extend(report.failed)
        return HealAllResult(tuple(healed), tuple(failed), time.monotonic() - started)

    def records(self) -> list[dict[str, Any]]:
        """Every fault's journal record, in id order (with its label)."""
        with self._lock:
            items = sorted(self._timelines.items())
        out: list[dict[str, Any]] = []
        for fault_id, timeline in items:
            for record in timeline.records():
                out.append({**record, "label": self._labels.get(fault_id, "")})
        return out

    def active(self) -> list[dict[str, Any]]:
        """Records of the faults in effect now, with their age in seconds."""
        now = self.clock.now()
        active = [r for r in self.records() if r["status"] in ("applying", "active")]
        for record in active:
            applied = record["applied_at"]
            record["age"] = round(now - applied, 1) if applied is not None else 0.0
        return active

    def active_ids(self) -> list[int]:
        return [int(r["index"]) for r in self.active()]
