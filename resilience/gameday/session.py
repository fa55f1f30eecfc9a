"""One game-day session: the target, a steady load, faults by hand, halts, notes, the end.

``Session.open()`` does what ``resilience run`` does before its load starts — it prepares
the target with the runner's ``prepare_target`` (stack up, sweep a killed run's or
session's leftovers, refuse while another run is active), makes the session directory and
starts the load workers — then journals the session as the active run, so a session killed
with SIGKILL is swept and marked aborted by the next ``stack status``, ``run`` or
``gameday start``, exactly like a run. One thread (``_loop``) feeds the load events to the
recorder, ticks the faults and the halt conditions (a trip heals everything at once) and
samples the live numbers once a second; the console's requests call the methods below
from the server's threads.

The session is built from the run's parts (resilience/runner): the user's own parts or the
stack's (``resolve_parts``), the run directory's layout (``RunDir``), the phase marks
(``PhaseMarker``: an ``apply`` mark just before each Toxiproxy call, a ``heal`` mark once
it returned, ``upto`` a few times a second, final at the end; ``FaultMoments`` journals
them with the faults), the load's end (``stop_engine``) and the evidence
(``gather_from_parts``). ``close()`` heals every fault first, then stops the load, gathers
the evidence (Prometheus series of the checks and detectors, traces of the kept ids, the
read-back of acknowledged writes) into the session directory, judges each fault window as
a run is judged (``resilience.analysis.windows``), writes the journal's last state and the
reports. Every path ends in ``close()``; a second signal (``hurry``) skips the evidence,
never the healing, the journal or the reports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from resilience.analysis.windows import gather_phases, session_windows
from resilience.errors import FaultError, LoadError, ResilienceError, StackError
from resilience.experiment.model import FaultAction, Guard
from resilience.faults.timeline import FaultEvent
from resilience.gameday.faults import FaultBoard, FaultRefused
from resilience.gameday.halts import HaltBoard
from resilience.gameday.live import LiveMetrics
from resilience.gameday.plan import ResolvedPlan
from resilience.gameday.report import judge_session, write_session_reports
from resilience.gameday.state import SessionState, StateError, TimelineEntry
from resilience.load.commands import SetRate, SetUsers
from resilience.load.engine import LoadEngine
from resilience.load.plan import plan_from_experiment
from resilience.load.recorder import LoadRecorder
from resilience.load.samples import CommandAck, LoadEvent
from resilience.observe.guards import GuardTrip
from resilience.rundir.journal import Journal, PhaseRecord, Status
from resilience.rundir.layout import write_json
from resilience.runner.evidence import gather_from_parts
from resilience.runner.files import RunFiles
from resilience.runner.live import stop_engine
from resilience.runner.live_export import LiveExport, record_faults, record_phase, start_export
from resilience.runner.marks import FaultMoments, PhaseMarker
from resilience.runner.orchestrator import RunOptions, default_run_dir, prepare_with_parts
from resilience.runner.parts import Parts
from resilience.runner.target import (
    PreparedTarget,
    clear_active,
    dependencies,
    mark_active,
    release_target,
)
from resilience.stack import StackConfig
from resilience.vocabulary import JSONValue, MonotonicClock, phases_from_faults

logger = logging.getLogger(__name__)

LOCK_FILE = "gameday.lock"
SESSION_FILE = "gameday.json"
PLAN_FILE = "plan.json"
START_LEAD = 0.5
TICK = 0.25
HEAL_BUDGET = 0.9
END_MARGIN = 1.0
"""The session ends this long before its load plan does (the load must outlive it)."""


@dataclass(frozen=True)
class SessionOptions(RunOptions):
    """How to run a session (the plan says what): a run's options, checked the same way;
    session directories go under ``gamedays/`` by default."""

    runs_root: Path = Path("gamedays")


@dataclass
class SessionResult:
    session_dir: Path
    status: Status
    reason: str
    report_files: list[Path] = field(default_factory=list)
    heal_failures: list[str] = field(default_factory=list)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600), atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.chmod(0o600)
    tmp.replace(path)


class SessionLock:
    """One session per state directory: an exclusive lock held for the session's life."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            info = read_session_file(self.path.parent)
            where = f" at {info.get('url_base', '?')} (pid {info.get('pid', '?')})" if info else ""
            raise StackError(
                f"a game-day session is already running on this state directory{where}; "
                "end it with `resilience gameday end`",
                component="gameday",
            ) from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def read_session_file(state_dir: Path) -> dict[str, JSONValue] | None:
    try:
        data = json.loads((state_dir / SESSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Session:
    """A live game day (see the module doc). Methods are safe from any thread."""

    def __init__(
        self,
        resolved: ResolvedPlan,
        options: SessionOptions | None = None,
        say: Callable[[str], None] = lambda _m: None,
        hurry: threading.Event | None = None,
    ) -> None:
        self.resolved = resolved
        self.plan = resolved.plan
        self.experiment = resolved.experiment
        self.files = RunFiles(self.experiment)
        """The session directory's redactor, log and file modes, as a run's (runner/files.py)."""
        self.redactor = self.files.redactor
        self.options = options or SessionOptions()
        self.config = self.options.config or StackConfig.from_env()
        self.say = say
        self.lock = SessionLock(self.config.paths.state)
        self.hurry = hurry or threading.Event()
        """Set by a second signal: the end skips the evidence (never healing or reports)."""
        self.parts: Parts | None = None
        self.prepared: PreparedTarget | None = None
        self.dir: Path | None = None
        self.engine: LoadEngine | None = None
        self.recorder: LoadRecorder | None = None
        self.export: LiveExport | None = None
        self.clock: MonotonicClock | None = None
        self.journal: Journal | None = None
        self.marker: PhaseMarker | None = None
        self.moments: FaultMoments | None = None
        self.faults: FaultBoard | None = None
        self.halts: HaltBoard | None = None
        self.metrics: LiveMetrics | None = None
        self.state: SessionState | None = None
        self.level: dict[str, float] = resolved.level()
        self.end_reason: str | None = None
        self.end_requested = threading.Event()
        self.finished = threading.Event()
        self.result: SessionResult | None = None
        self.load_error: str | None = None
        self.halted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._close_lock = threading.Lock()
        self._closed = False
        self._locked = False
        self._load_started = False
        self._load_end: float | None = None

    # -- opening ----------------------------------------------------------------------

    def open(self) -> None:
        """Prepare the target, start the load and the loop. On failure, undo and raise."""
        self.lock.acquire()
        self._locked = True
        try:
            self._open()
        except BaseException:
            self.close("could not start")
            raise

    def _open(self) -> None:
        options = self.options
        self.parts = options.parts_for(self.experiment, self.config)
        self.prepared = prepare_with_parts(
            self.experiment, options, self.parts, self.config, say=self.say
        )
        # The process's files private from here on, as a run's (not before: the stack
        # writes files that PostgreSQL, another user, must read).
        self.files.private()
        self.dir = options.out or default_run_dir(options.runs_root, self.plan.name)
        layout = self.files.create(self.dir)
        write_json(
            layout.path / PLAN_FILE,
            json.loads(self.plan.model_dump_json(by_alias=True)),
            self.redactor,
            indent=2,
        )
        load_plan = plan_from_experiment(
            self.experiment, self.prepared.url, workers=options.workers, phase_marks=True
        )
        self.engine = LoadEngine(load_plan, workers=options.workers, log_dir=layout.logs)
        self.say(f"starting {self.engine.workers} load worker(s)")
        self.engine.prepare()
        t0 = time.time() + START_LEAD
        clock = self.clock = MonotonicClock(origin_epoch=t0)
        journal = self.journal = Journal.start(
            layout.journal,
            experiment=self.plan.name,
            profile=None,
            t0=t0,
            redactor=self.redactor,
            kind="gameday",
            target=self.prepared.url,
            shop_mode=self.prepared.shop_mode,
            builtin=self.prepared.builtin,
            dependencies=dependencies(self.experiment, self.prepared.builtin, self.config),
            max_duration=self.plan.max_duration,
            workers=self.engine.workers,
            sweep=self.prepared.sweep.summary() if self.prepared.sweep else None,
            parts=self.parts.to_journal(),
            load_level=dict(self.level),
            warmup=self.experiment.load.warmup,
            recovery_settings=self.plan.recovery.model_dump(),
        )
        mark_active(self.config, journal.path)
        self.state = SessionState(clock, [s.name for s in self.resolved.steps])
        self.state.listeners.append(self._journal_entry)
        self.marker = PhaseMarker(
            clock, self.engine.send, lambda marks: journal.update(marks=marks)
        )
        moments = self.moments = FaultMoments(journal, self.marker, then=self._on_fault_event)
        self.faults = FaultBoard(
            self.prepared.toxiproxy,
            clock,
            ledger=self.config.paths.fault_ledger,
            on_event=moments.event,
            end_of_session=lambda: self.plan.max_duration,
            on_before_apply=moments.before_apply,
        )
        moments.records = self.faults.records
        self.recorder = LoadRecorder(
            self.dir,
            t0=t0,
            workers=self.engine.workers,
            endpoints=load_plan.endpoints(),
            redactor=self.redactor,
        )
        recorder = self.recorder
        board = self.faults
        self.export = start_export(
            self.config.ports.load_metrics,
            self.dir.name,
            experiment=self.plan.name,
            profile=None,
            faults=lambda: record_faults(board.records()),
            phase=lambda: record_phase(board.records()),
            recorder=recorder,
            names=self.redactor.redact_text,
        )
        self.metrics = LiveMetrics(
            lambda window, endpoint: recorder.live(window_s=window, endpoint=endpoint),
            load_plan.endpoints(),
        )
        parts = self.parts
        self.halts = HaltBoard(
            clock,
            lambda endpoint: recorder.live(window_s=5, endpoint=endpoint),
            lambda: parts.prometheus_source(timeout=2.0),
        )
        for guard in self.plan.halt:
            self.halts.add(guard, "plan")
        self.engine.start(t0)
        self._load_started = True
        self.state.log("session", f"session started: {self._level_text(self.level)}", t=0.0)
        self._publish()
        self._thread = threading.Thread(target=self._loop, name="gameday-loop", daemon=True)
        self._thread.start()

    # -- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        assert self.clock and self.engine and self.recorder and self.faults and self.halts
        clock, engine, recorder = self.clock, self.engine, self.recorder
        next_sample = 1.0
        bound = int(self.plan.max_duration / TICK) + 1000
        for _ in range(bound):
            if self._stop.is_set():
                return
            try:
                events = engine.poll(timeout=TICK)
            except LoadError as exc:
                self.load_error = str(exc)
                self.request_end(f"the load stopped: {str(exc).splitlines()[0]}")
                return
            self._consume(events)
            self.faults.tick()
            now = clock.now()
            if self.marker is not None:
                self.marker.tick(now)
            for trip in self.halts.tick(now):
                self._halt(trip)
            if now >= next_sample:
                assert self.metrics is not None
                self.metrics.sample(now)
                next_sample = float(int(now)) + 1.0
                self._publish()
            if now >= self.plan.max_duration - END_MARGIN:
                self.request_end("the session reached its maximum length")
                return
        _ = recorder  # the loop's bound is the session's length

    def _consume(self, events: list[LoadEvent]) -> None:
        assert self.recorder is not None and self.state is not None
        for event in events:
            if isinstance(event, CommandAck) and not event.ok:
                self.state.log("load", f"worker {event.worker} refused: {event.detail}")
        self.recorder.consume(events)

    def _halt(self, trip: GuardTrip) -> None:
        """Heal everything at once, then say why on the timeline."""
        assert self.faults is not None and self.state is not None and self.clock is not None
        healed = self.faults.heal_all(budget=HEAL_BUDGET)
        self.halted += 1
        self.state.log(
            "halt",
            f"halt condition {trip.guard!r} tripped: {trip.message}; "
            f"healed {len(healed.healed)} fault(s) in {healed.seconds * 1000:.0f} ms",
            t=trip.tripped_at,
            halt=trip.to_dict(),
            healed=list(healed.healed),
            heal_seconds=round(healed.seconds, 4),
            healed_at=round(self.clock.now(), 4),
            failed=[f"{i}: {why}" for i, why in healed.failed],
        )
        self._publish()

    # -- what the console and the terminal can do --------------------------------------

    def _live(self) -> tuple[SessionState, FaultBoard]:
        if self.state is None or self.faults is None or self._closed:
            raise StateError("the session is not running")
        return self.state, self.faults

    def join(self, name: str, role: str) -> dict[str, object]:
        state, _ = self._live()
        return state.join(name, role).__dict__

    def note(self, kind: str, text: str, author: str = "") -> dict[str, object]:
        state, faults = self._live()
        note = state.add_note(kind, text, author, active_faults=faults.active_ids())
        return note.__dict__

    def inject(
        self, name: str | None = None, action: FaultAction | None = None, by: str = ""
    ) -> list[int]:
        """Inject a named fault (plan, catalogue) or one action; the new fault ids."""
        state, faults = self._live()
        if name is not None:
            actions = self.resolved.named_faults.get(name)
            if actions is None:
                known = ", ".join(sorted(self.resolved.named_faults)) or "none"
                raise FaultRefused(f"no named fault {name!r} (known: {known})")
        elif action is not None:
            actions = (action,)
        else:
            raise FaultRefused("give a fault name or a proxy and a type")
        ids: list[int] = []
        for a in actions:
            if a.proxy not in self._proxies():
                raise FaultRefused(
                    f"proxy {a.proxy!r} is not one of this target's: {', '.join(self._proxies())}"
                )
            ids.append(
                faults.inject(
                    proxy=a.proxy,
                    type=a.type,
                    attributes=dict(a.attributes),
                    stream=a.stream,
                    toxicity=a.toxicity,
                    duration=a.duration,
                    label=name or a.describe(),
                )
            )
        if by:
            state.log("fault", f"{by} injected {name or actions[0].describe()}", ids=ids)
        self._publish()
        return ids

    def heal(self, fault_id: int | None = None) -> dict[str, object]:
        """Heal one fault, or every fault (``None``): the 'heal everything' button."""
        state, faults = self._live()
        if fault_id is None:
            result = faults.heal_all(budget=HEAL_BUDGET)
            state.log(
                "fault",
                f"heal everything: {len(result.healed)} fault(s) healed in "
                f"{result.seconds * 1000:.0f} ms",
                healed=list(result.healed),
            )
            self._publish()
            return {
                "healed": list(result.healed),
                "failed": [f"{i}: {why}" for i, why in result.failed],
                "seconds": round(result.seconds, 4),
            }
        report = faults.heal(fault_id)
        self._publish()
        return {
            "healed": list(report.healed),
            "failed": [f"{i}: {why}" for i, why in report.failed],
            "seconds": round(report.seconds, 4),
        }

    def set_load(
        self, users: int | None = None, spawn_rate: float | None = None, rps: float | None = None
    ) -> dict[str, float]:
        state, _ = self._live()
        assert self.engine is not None
        before = dict(self.level)
        try:
            if self.resolved.model == "open":
                if rps is None or users is not None:
                    raise StateError("this session's load is an arrival rate: give rps")
                command: SetUsers | SetRate = SetRate(float(rps))
                level = {"rps": float(rps)}
            else:
                if users is None or rps is not None:
                    raise StateError("this session's load is users: give users (and spawn_rate)")
                rate = float(spawn_rate or self.level.get("spawn_rate") or 10.0)
                command = SetUsers(int(users), rate)
                level = {"users": int(users), "spawn_rate": rate}
        except ValueError as exc:
            raise StateError(str(exc)) from None
        self.engine.send(command)
        self.level = level
        state.log(
            "load",
            f"load changed: {self._level_text(before)} -> {self._level_text(level)}",
            before=before,
            after=level,
        )
        if self.journal is not None:
            self.journal.update(load_level=dict(level))
        self._publish()
        return level

    def add_halt(self, raw: Mapping[str, object]) -> dict[str, object]:
        state, _ = self._live()
        assert self.halts is not None
        try:
            guard = Guard.model_validate(raw)
        except ValueError as exc:
            raise StateError(f"invalid halt condition: {exc}") from None
        try:
            self.halts.add(guard, "live")
        except ValueError as exc:
            raise StateError(str(exc)) from None
        state.log("halt", f"halt condition armed: {guard.name} ({guard.expect})", name=guard.name)
        self._publish()
        return {"name": guard.name}

    def step(self, action: str, index: int | None = None) -> dict[str, object]:
        state, _ = self._live()
        if action == "next":
            record = state.next_step()
        elif action == "start" and index is not None:
            record = state.start_step(index)
        elif action == "skip" and index is not None:
            record = state.skip_step(index)
        elif action == "done":
            done = state.finish_step()
            if done is None:
                raise StateError("no step is running")
            record = done
        else:
            raise StateError("step actions: next, start INDEX, skip INDEX, done")
        return {"index": record.index, "name": record.name, "status": record.status}

    def request_end(self, reason: str) -> None:
        if not self.end_requested.is_set():
            self.end_reason = reason
            self.end_requested.set()

    # -- views -------------------------------------------------------------------------

    def _proxies(self) -> list[str]:
        return self.prepared.proxies if self.prepared is not None else []

    @staticmethod
    def _level_text(level: dict[str, float]) -> str:
        if "rps" in level:
            return f"{level['rps']:g} requests/s"
        return f"{int(level.get('users', 0))} users"

    def catalogue(self) -> dict[str, object]:
        """What can be injected: named faults, and every fault type on every proxy."""
        from resilience.faults.catalogue import FAULT_TYPES

        return {
            "named": {
                name: [a.describe() for a in actions]
                for name, actions in sorted(self.resolved.named_faults.items())
                if all(a.proxy in self._proxies() for a in actions)
            },
            "proxies": self._proxies(),
            "types": {
                name: {
                    "description": t.description,
                    "attributes": [
                        {
                            "name": a.name,
                            "unit": a.unit,
                            "default": a.default,
                            "required": a.required,
                            "description": a.description,
                        }
                        for a in t.attributes
                    ],
                }
                for name, t in FAULT_TYPES.items()
            },
        }

    def fault_windows(self) -> list[tuple[float, float | None, str]]:
        assert self.faults is not None
        return [
            (r["applied_at"], r["healed_at"], f"{r['id_label']}")
            for r in (
                {**rec, "id_label": f"#{rec['index']} {rec['type']} on {rec['proxy']}"}
                for rec in self.faults.records()
            )
            if r["applied_at"] is not None
        ]

    def _publish(self) -> None:
        if self.state is None or self.faults is None or self.halts is None:
            return
        steps = [
            {
                "index": s.index,
                "name": s.name,
                "hypothesis": s.hypothesis,
                "faults": [a.describe() for a in s.faults],
                "duration": s.duration,
                "watch": list(s.watch),
            }
            for s in self.resolved.steps
        ]
        self.state.publish("faults", self.faults.records())
        self.state.publish("active_faults", self.faults.active())
        self.state.publish("halts", self.halts.status())
        self.state.publish("load", {**self.level, "model": self.resolved.model})
        self.state.publish(
            "plan", {"name": self.plan.name, "steps": steps, "max_duration": self.plan.max_duration}
        )

    def live_view(self) -> dict[str, object]:
        """Numbers and charts for the console (sent every second)."""
        if self.metrics is None or self.clock is None:
            return {}
        now = self.clock.now()
        active = self.faults.active() if self.faults is not None else []
        return {
            "t": round(now, 2),
            "table": self.metrics.table(),
            "charts": self.metrics.charts(now, self.fault_windows()),
            "active_faults": [
                {"index": a["index"], "type": a["type"], "proxy": a["proxy"], "age": a["age"]}
                for a in active
            ],
        }

    def status(self) -> dict[str, object]:
        snapshot = self.state.snapshot() if self.state is not None else {}
        return {
            "name": self.plan.name,
            "dir": str(self.dir) if self.dir else None,
            "t": round(self.clock.now(), 2) if self.clock else 0.0,
            "max_duration": self.plan.max_duration,
            "live": self.metrics.table() if self.metrics is not None else [],
            **snapshot,
        }

    # -- journal ------------------------------------------------------------------------

    def _on_fault_event(self, event: FaultEvent) -> None:
        """After FaultMoments journaled the event (and its mark): the session's timeline."""
        if self.state is not None and event.kind in ("applied", "healed", "failed"):
            attrs = event.record.get("attributes") or {}
            pairs = attrs.items() if isinstance(attrs, Mapping) else ()
            text = ", ".join(f"{k}={v}" for k, v in pairs)
            self.state.log(
                "fault",
                f"fault #{event.index} {event.type} on {event.proxy} {event.kind}"
                + (f" ({text})" if text and event.kind == "applied" else ""),
                t=event.t,
                fault=event.index,
                action=event.kind,
            )

    def _journal_entry(self, entry: TimelineEntry) -> None:
        if self.journal is None or self.state is None:
            return
        if entry.kind != "fault" or "action" not in entry.detail:  # fault events are journaled
            self.journal.event(entry.kind, entry.t, text=entry.text, **entry.detail)
        self.journal.update(**self.state.journal_fields())

    # -- closing ----------------------------------------------------------------------

    def close(self, reason: str | None = None) -> SessionResult | None:
        """Heal everything, stop the load, write the journal and reports. Idempotent."""
        with self._close_lock:
            if self._closed:
                return self.result
            self._closed = True
        reason = reason or self.end_reason or "ended"
        failures = self._heal_for_end(reason)
        self._stop.set()
        if self.halts is not None:
            self.halts.stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self.clock is not None:
            self._load_end = self.clock.now()
        self._stop_load()
        if self.export is not None:
            self.export.close()
        result: SessionResult | None = None
        if self.journal is not None and self.dir is not None:
            result = self._finish_journal(reason, failures)
        if self.state is not None:
            self.state.end()
        if self.prepared is not None:
            try:
                release_target(self.prepared)
            except ResilienceError as exc:
                logger.warning("could not take down what the session started: %s", exc)
        self.files.close()  # modes narrowed, the umask back, the session's log detached
        if self._locked:  # a session refused by the lock must not touch the running one's file
            (self.config.paths.state / SESSION_FILE).unlink(missing_ok=True)
            self.lock.release()
        self.result = result
        self.finished.set()
        return result

    def _heal_for_end(self, reason: str) -> list[str]:
        """Every fault healed, first thing; no phase mark will come any more."""
        if self.faults is None:
            return []
        healed = self.faults.heal_all(budget=HEAL_BUDGET)
        failures = [f"fault {i}: {why}" for i, why in healed.failed]
        if self.marker is not None:
            self.marker.finish()
        if self.state is not None:
            self.state.log(
                "session",
                f"ending ({reason}): every fault healed"
                + (f", {len(failures)} could not be" if failures else ""),
                healed=list(healed.healed),
            )
        return failures

    def _stop_load(self) -> None:
        if self.engine is not None:
            stop_engine(
                self.engine,
                self.recorder,
                grace=0.5 if self.hurry.is_set() else 2.0,
                files=self.files,
            )

    def _finish_journal(self, reason: str, failures: list[str]) -> SessionResult:
        assert self.journal is not None and self.dir is not None and self.clock is not None
        journal = self.journal
        end = self._load_end if self._load_end is not None else self.clock.now()
        journal.update(load_end=round(end, 4))
        if self.moments is not None:
            self.moments.sync()
            windows = journal.data.fault_windows()
            phases = phases_from_faults(windows, start=0.0, end=end)
            journal.update(
                phases=[PhaseRecord(name=p.name, start=p.start, end=p.end) for p in phases]
            )
        if self.state is not None:
            journal.update(**self.state.journal_fields())
        journal.update(halts_tripped=self.halted)
        if self._load_started:
            self._judge_windows(end)
        bad = failures or ([self.load_error] if self.load_error else [])
        status: Status = "error" if bad else "passed"
        if failures:
            reason += f"; could not heal: {'; '.join(failures)}"
        reason = self.redactor.redact_text(reason)
        journal.finish(status, ended=time.time(), exit_code=0 if not bad else 3, reason=reason)
        clear_active(self.config)
        files: list[Path] = []
        try:
            files = write_session_reports(self.dir, redactor=self.redactor)
        except Exception as exc:  # a report bug must not lose the session's record
            logger.exception("could not write the session reports: %s", exc)
        return SessionResult(self.dir, status, reason, files, failures)

    def _judge_windows(self, end: float) -> None:
        """Gather the evidence (unless hurried) and judge each fault window into the
        journal's ``windows``; a failure here is logged and said, never the session's end."""
        assert self.journal is not None and self.dir is not None
        journal = self.journal
        windows = session_windows(journal.data.fault_windows(), end)
        if not windows:
            journal.update(windows=[])
            return
        if self.hurry.is_set():
            journal.event("evidence_skipped", end, reason="a second signal hurried the end")
        elif self.parts is not None and self.prepared is not None:
            self.say("gathering the evidence")
            try:
                gather_from_parts(
                    self.dir,
                    self.experiment,
                    journal,
                    gather_phases(windows, self.experiment.load.warmup),
                    self.parts,
                    config=self.config,
                    target_url=self.prepared.url,
                    say=self.say,
                    redactor=self.redactor,
                )
            except Exception as exc:  # evidence lost must not lose the session's record
                logger.warning("could not gather the session's evidence: %s", exc, exc_info=True)
                journal.event("evidence_failed", end, reason=str(exc))
        self.say(f"judging {len(windows)} fault window(s)")
        try:
            judge_session(self.dir, journal=journal, experiment=self.files.judged)
        except Exception as exc:  # nor a judgement that failed
            logger.warning("could not judge the session's fault windows: %s", exc, exc_info=True)
            journal.event("analysis_failed", end, reason=str(exc))


__all__ = [
    "FaultError",
    "Session",
    "SessionLock",
    "SessionOptions",
    "SessionResult",
    "read_session_file",
    "write_private",
]
