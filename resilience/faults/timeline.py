"""The fault timeline: applies and heals an experiment's faults on the experiment clock.

``FaultTimeline`` is driven by its caller: ``tick()`` performs every action that is due
(apply at ``at``, the time-driven changes of flap/ramp/flaky, heal at ``at + duration``),
``next_event_time()`` says when to call it next, and ``run()`` does both in a loop for
callers that have nothing else to do. Every action is stamped on the experiment clock and
in wall-clock UTC and reported through ``on_event``; the stamps are what phases are cut
from. Before any apply the action is written to the ledger (``resilience.faults.ledger``)
so a killed run can be swept. ``heal_all()`` undoes everything that may be in effect,
tolerating individual failures; it is idempotent and safe from a ``finally`` or a signal
path (after it, the timeline applies nothing more).

Overlapping faults on one proxy are allowed: each fault owns a toxic with its own name,
and outages (``outage``, the down half of ``flap``) are counted per proxy, so the proxy is
re-enabled only when no outage holds it any more.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from resilience.errors import FaultError
from resilience.faults.catalogue import FaultPlan, FaultSpec, PlanStep, plan_fault
from resilience.faults.ledger import FaultLedger, LedgerEntry
from resilience.faults.toxiproxy import ToxiproxyApi, ToxiproxyConflict
from resilience.vocabulary import Clock, iso_utc

logger = logging.getLogger(__name__)

Status = Literal["pending", "applying", "active", "healed", "failed", "cancelled"]
EventKind = Literal["applied", "changed", "healed", "failed"]


@dataclass
class FaultState:
    """Where one fault stands; ``record()`` is its entry in the journal's ``faults`` list."""

    spec: FaultSpec
    plan: FaultPlan
    status: Status = "pending"
    applied_at: float | None = None
    applied_wall: str | None = None
    healed_at: float | None = None
    healed_wall: str | None = None
    error: str | None = None
    next_step: int = 0
    toxic_live: bool = False
    """The toxic may exist in Toxiproxy (set before the add, cleared after the remove)."""
    holds_outage: bool = False
    changes: int = 0

    @property
    def needs_heal(self) -> bool:
        return self.toxic_live or self.holds_outage

    def pending_step(self) -> PlanStep | None:
        steps = self.plan.steps
        return steps[self.next_step] if self.next_step < len(steps) else None

    def record(self) -> dict[str, object]:
        spec = self.spec
        return {
            "index": spec.index,
            "proxy": spec.proxy,
            "type": spec.type,
            "attributes": dict(spec.attributes),
            "stream": spec.stream,
            "toxicity": spec.toxicity,
            "scheduled_at": spec.at,
            "scheduled_end": spec.end,
            "applied_at": _round(self.applied_at),
            "healed_at": _round(self.healed_at),
            "applied_wall": self.applied_wall,
            "healed_wall": self.healed_wall,
            "error": self.error,
            "toxic": spec.toxic_name if self.plan.toxic is not None else None,
            "status": self.status,
            "changes": self.changes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


EARLY_AFTER_S = 0.001
"""A heal more than this before its scheduled end was an early one, not clock jitter."""


@dataclass(frozen=True)
class FaultEvent:
    """One action of the timeline, stamped; ``record`` is the fault's journal entry after it."""

    kind: EventKind
    index: int
    proxy: str
    type: str
    scheduled_at: float
    t: float
    wall: str
    detail: Mapping[str, object] = field(default_factory=dict)
    record: Mapping[str, object] = field(default_factory=dict)

    @property
    def lateness(self) -> float:
        """Seconds between the schedule and the stamp (how late the action landed; negative
        for a heal that came before its scheduled end: the run stopped early)."""
        return self.t - self.scheduled_at

    @property
    def early(self) -> bool:
        """A heal stamped before the fault's scheduled end (guard trip, interrupt, early end)."""
        return self.kind == "healed" and self.lateness < -EARLY_AFTER_S

    def timing(self) -> str:
        """How the stamp relates to the schedule, in words: ``12 ms late``, ``on time``, or
        ``25.6 s before its scheduled end (the run stopped early)`` — never a signed number."""
        if self.early:
            ahead = -self.lateness
            amount = f"{ahead:.1f} s" if ahead >= 1 else f"{ahead * 1000:.0f} ms"
            return f"{amount} before its scheduled end (the run stopped early)"
        late_ms = max(self.lateness, 0.0) * 1000
        return "on time" if late_ms < 0.5 else f"{late_ms:.0f} ms late"


@dataclass(frozen=True)
class HealReport:
    """What ``heal_all`` did: faults healed, faults it could not heal (with why)."""

    healed: tuple[int, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()
    cancelled: tuple[int, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


OnEvent = Callable[[FaultEvent], None]


class FaultTimeline:
    """Executes fault plans against Toxiproxy on the experiment clock (see the module doc)."""

    def __init__(
        self,
        specs: Iterable[FaultSpec],
        api: ToxiproxyApi,
        clock: Clock,
        on_event: OnEvent | None = None,
        *,
        ledger: FaultLedger | Path | None = None,
        on_before_apply: Callable[[int], None] | None = None,
    ) -> None:
        self.api = api
        self.clock = clock
        self.on_event = on_event
        self.on_before_apply = on_before_apply
        """Called with a fault's index just before its first Toxiproxy call: the earliest
        moment it can act (the run's phase mark)."""
        self.ledger = FaultLedger(ledger) if isinstance(ledger, Path) else ledger
        ordered = sorted(specs, key=lambda s: s.index)
        indexes = [s.index for s in ordered]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"fault indexes must be unique, got {indexes}")
        self.states: dict[int, FaultState] = {
            s.index: FaultState(s, plan_fault(s)) for s in ordered
        }
        self._outages: dict[str, set[int]] = {}
        self._closed = False
        # Re-entrant: heal_all may run from a signal handler while tick is inside a call.
        self._lock = threading.RLock()

    # -- queries -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def records(self) -> list[dict[str, object]]:
        """The journal's ``faults`` list as it stands now, in fault order."""
        return [state.record() for state in self.states.values()]

    def active(self) -> list[FaultSpec]:
        return [s.spec for s in self.states.values() if s.status == "active"]

    def any_active(self) -> bool:
        return any(s.status in ("applying", "active") for s in self.states.values())

    def done(self) -> bool:
        return all(s.status in ("healed", "failed", "cancelled") for s in self.states.values())

    def next_event_time(self) -> float | None:
        """When the next action is due on the experiment clock; None when nothing is left."""
        with self._lock:
            if self._closed:
                return None
            times: list[float] = []
            for state in self.states.values():
                if state.status == "pending":
                    times.append(state.spec.at)
                elif state.status == "active":
                    step = state.pending_step()
                    times.append(state.spec.end if step is None else min(step.at, state.spec.end))
            return min(times) if times else None

    # -- driving -----------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[FaultEvent]:
        """Perform every action due at ``now`` (default: the clock's now), in time order.

        Raises FaultError when Toxiproxy refuses an action (after the client's retries):
        the fault is marked failed, and the caller is expected to ``heal_all`` and stop.
        """
        with self._lock:
            if self._closed:
                return []
            due_at = self.clock.now() if now is None else now
            events: list[FaultEvent] = []
            bound = sum(2 + len(s.plan.steps) for s in self.states.values()) + 1
            for _ in range(bound):
                action = self._next_due(due_at)
                if action is None or self._closed:
                    break
                _, _, index, what = action
                state = self.states[index]
                if what == "apply":
                    applied = self._apply(state)
                    if applied is not None:
                        events.append(applied)
                elif what == "step":
                    events.append(self._step(state))
                else:
                    events.append(self._heal(state))
            return events

    def run(
        self,
        until: float,
        *,
        should_stop: Callable[[], bool] | None = None,
        max_wait: float = 0.5,
    ) -> None:
        """Sleep to each action and tick, until ``until`` on the clock or ``should_stop()``.

        Waits at most ``max_wait`` at a time so that ``should_stop`` is honoured promptly.
        """
        remaining = max(0.0, until - self.clock.now())
        # Each action can cost a few iterations (a sleep may end a hair before it is due).
        bound = 3 * sum(2 + len(s.plan.steps) for s in self.states.values())
        bound += int(remaining / max_wait) + 50
        for _ in range(bound):
            if should_stop is not None and should_stop():
                return
            self.tick()
            now = self.clock.now()
            if now >= until or self._closed:
                return
            upcoming = self.next_event_time()
            wake = until if upcoming is None else min(upcoming, until)
            self.clock.sleep(min(max(0.0, wake - now), max_wait))
        logger.warning("fault timeline run loop hit its iteration bound before t=%.3f", until)

    def heal_all(self, *, budget: float = 5.0) -> HealReport:
        """Undo every fault that may be in effect; apply nothing afterwards. Idempotent.

        Tries every fault even when some fail, and reports those that could not be healed
        (they stay in the ledger for the sweeper). Stops trying after ``budget`` seconds
        of real time.
        """
        started = time.monotonic()
        with self._lock:
            self._closed = True
            healed: list[int] = []
            failed: list[tuple[int, str]] = []
            cancelled: list[int] = []
            interrupted_proxies: set[str] = set()
            for state in self.states.values():
                if state.status == "pending":
                    state.status = "cancelled"
                    cancelled.append(state.spec.index)
                    continue
                if not state.needs_heal:
                    continue
                if state.status == "applying":
                    interrupted_proxies.add(state.spec.proxy)
                if time.monotonic() - started > budget:
                    failed.append((state.spec.index, f"not attempted: heal budget {budget}s spent"))
                    continue
                try:
                    self._heal_quietly(state)
                except Exception as exc:  # every fault gets its try, whatever happens
                    reason = str(exc) or type(exc).__name__
                    logger.error("could not heal fault %d: %s", state.spec.index, reason)
                    failed.append((state.spec.index, reason))
                else:
                    healed.append(state.spec.index)
            self._sweep_interrupted(interrupted_proxies, failed)
            report = HealReport(
                tuple(healed), tuple(failed), tuple(cancelled), time.monotonic() - started
            )
            if healed or failed:
                logger.info(
                    "healed faults %s in %.3fs%s",
                    list(healed),
                    report.seconds,
                    f"; could not heal {[i for i, _ in failed]}" if failed else "",
                )
            return report

    # -- internals ---------------------------------------------------------------------

    def _next_due(self, now: float) -> tuple[float, int, int, str] | None:
        best: tuple[float, int, int, str] | None = None
        for index, state in self.states.items():
            candidate: tuple[float, int, int, str] | None = None
            if state.status == "pending" and state.spec.at <= now:
                candidate = (state.spec.at, 0, index, "apply")
            elif state.status == "active":
                step = state.pending_step()
                if step is not None and step.at <= now and step.at < state.spec.end:
                    candidate = (step.at, 1, index, "step")
                elif state.spec.end <= now:
                    candidate = (state.spec.end, 2, index, "heal")
            if candidate is not None and (best is None or candidate < best):
                best = candidate
        return best

    def _emit(
        self,
        kind: EventKind,
        state: FaultState,
        scheduled_at: float,
        t: float,
        detail: Mapping[str, object] | None = None,
    ) -> FaultEvent:
        event = FaultEvent(
            kind=kind,
            index=state.spec.index,
            proxy=state.spec.proxy,
            type=state.spec.type,
            scheduled_at=scheduled_at,
            t=t,
            wall=iso_utc(self.clock.epoch(t)),
            detail=dict(detail or {}),
            record=state.record(),
        )
        log = logger.warning if kind == "failed" else logger.info
        log(
            "fault %d %s %s on %s at t=%.3f (scheduled %.3f)",
            event.index,
            event.type,
            kind,
            event.proxy,
            t,
            scheduled_at,
        )
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _fail(self, state: FaultState, scheduled_at: float, action: str, exc: Exception) -> None:
        state.error = f"{action}: {exc}"
        if state.status in ("applying", "pending"):
            state.status = "failed"
        self._emit("failed", state, scheduled_at, self.clock.now(), {"action": action})

    def _apply(self, state: FaultState) -> FaultEvent | None:
        spec, plan = state.spec, state.plan
        state.status = "applying"
        try:
            if self.ledger is not None:
                self.ledger.record(
                    LedgerEntry(
                        key=spec.toxic_name,
                        proxy=spec.proxy,
                        fault_index=spec.index,
                        fault_type=spec.type,
                        toxic=plan.toxic.name if plan.toxic is not None else None,
                        disabled_proxy=plan.disables_proxy,
                        pid=os.getpid(),
                        recorded_at=iso_utc(time.time()),
                    )
                )
            if self.on_before_apply is not None:
                self.on_before_apply(spec.index)
            if plan.toxic is not None:
                state.toxic_live = True
                try:
                    self.api.add_toxic(spec.proxy, plan.toxic)
                except ToxiproxyConflict:
                    # A toxic of ours with this name survived an earlier run that was not
                    # swept: replace it rather than leave the stale one in charge.
                    logger.warning("replacing leftover toxic %s on %s", plan.toxic.name, spec.proxy)
                    self.api.remove_toxic(spec.proxy, plan.toxic.name)
                    self.api.add_toxic(spec.proxy, plan.toxic)
            if plan.disables_proxy:
                self._hold_outage(state)
        except FaultError as exc:
            self._fail(state, spec.at, "apply", exc)
            raise
        if self._closed:
            # heal_all ran (from a signal handler) while we were inside a call, and may have
            # undone things before our call landed: undo again what that call did.
            if plan.toxic is not None:
                self.api.remove_toxic(spec.proxy, plan.toxic.name)
                state.toxic_live = False
            if plan.disables_proxy:
                self._outages.get(spec.proxy, set()).discard(spec.index)
                state.holds_outage = False
                if not self._outages.get(spec.proxy):
                    self.api.set_enabled(spec.proxy, True)
            if self.ledger is not None:
                self.ledger.discard(spec.toxic_name)
            state.status = "cancelled"
            return None
        state.status = "active"
        state.applied_at = self.clock.now()
        state.applied_wall = iso_utc(self.clock.epoch(state.applied_at))
        return self._emit("applied", state, spec.at, state.applied_at)

    def _step(self, state: FaultState) -> FaultEvent:
        spec = state.spec
        step = state.pending_step()
        assert step is not None
        try:
            if step.action == "update":
                assert state.plan.toxic is not None
                self.api.update_toxic(
                    spec.proxy,
                    state.plan.toxic.name,
                    attributes=step.attributes or None,
                    toxicity=step.toxicity,
                    toxic_type=state.plan.toxic.type,
                )
            elif step.action == "disable":
                self._hold_outage(state)
            else:
                self._release_outage(state)
        except FaultError as exc:
            self._fail(state, step.at, step.action, exc)
            raise
        state.next_step += 1
        state.changes += 1
        return self._emit("changed", state, step.at, self.clock.now(), step.describe())

    def _undo(self, state: FaultState) -> None:
        """Remove the fault's toxic, release its outage, drop its ledger entry (may raise)."""
        spec = state.spec
        if state.toxic_live and state.plan.toxic is not None:
            self.api.remove_toxic(spec.proxy, state.plan.toxic.name)
            state.toxic_live = False
        if state.holds_outage:
            self._release_outage(state)
        if self.ledger is not None:
            self.ledger.discard(spec.toxic_name)

    def _stamp_healed(self, state: FaultState) -> float:
        if state.status in ("applying", "active"):
            state.status = "healed"
        state.healed_at = self.clock.now()
        state.healed_wall = iso_utc(self.clock.epoch(state.healed_at))
        return state.healed_at

    def _heal(self, state: FaultState) -> FaultEvent:
        try:
            self._undo(state)
        except FaultError as exc:
            self._fail(state, state.spec.end, "heal", exc)
            raise
        return self._emit("healed", state, state.spec.end, self._stamp_healed(state))

    def _heal_quietly(self, state: FaultState) -> None:
        """The heal-all path: undo (may raise), then report without letting a listener fail it.

        A fault whose apply never completed was never in effect as far as phases go: it is
        cleaned up but not stamped healed (``cancelled``, or ``failed`` if the apply failed).
        """
        try:
            self._undo(state)
        except Exception as exc:
            state.error = f"heal: {exc}"
            raise
        if state.applied_at is None:
            if state.status == "applying":
                state.status = "cancelled"
            return
        t = self._stamp_healed(state)
        try:
            self._emit("healed", state, state.spec.end, t)
        except Exception:
            logger.exception("on_event failed while healing fault %d", state.spec.index)

    def _hold_outage(self, state: FaultState) -> None:
        if state.holds_outage:
            return
        proxy = state.spec.proxy
        holders = self._outages.setdefault(proxy, set())
        first = not holders
        # Marked before the call: if it is interrupted, heal_all still re-enables the proxy.
        holders.add(state.spec.index)
        state.holds_outage = True
        if first:
            try:
                self.api.set_enabled(proxy, False)
            except FaultError:
                holders.discard(state.spec.index)
                state.holds_outage = False
                raise

    def _release_outage(self, state: FaultState) -> None:
        if not state.holds_outage:
            return
        proxy = state.spec.proxy
        holders = self._outages.setdefault(proxy, set())
        if holders == {state.spec.index} or not holders:
            self.api.set_enabled(proxy, True)  # on failure we still hold it: retried later
        holders.discard(state.spec.index)
        state.holds_outage = False

    def _sweep_interrupted(self, proxies: set[str], failed: list[tuple[int, str]]) -> None:
        """A call cut short by a signal may land after our remove: look once more."""
        for proxy in sorted(proxies):
            names = {
                s.plan.toxic.name
                for s in self.states.values()
                if s.spec.proxy == proxy and s.plan.toxic is not None
            }
            try:
                for toxic in self.api.toxics(proxy):
                    if toxic.name in names:
                        self.api.remove_toxic(proxy, toxic.name)
            except Exception as exc:
                failed.append((-1, f"could not re-check proxy {proxy!r}: {exc}"))
