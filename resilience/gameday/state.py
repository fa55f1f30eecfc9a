"""What a game-day session knows besides load and faults: people, notes, steps, the timeline.

``SessionState`` is plain data behind one lock, with a version number that grows at every
change; ``wait_change(version, timeout)`` blocks until the state moves past a version, which
is how every open console (one Server-Sent-Events stream each) sees a change within a
moment of it. Times are seconds on the session clock (0 = the load's t0), as everywhere
in the toolkit; ``snapshot()`` is the JSON every console and ``gameday status`` show, and
``journal_fields()`` what the session's journal keeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from resilience.vocabulary import Clock, iso_utc

Role = Literal["facilitator", "observer", "scribe"]
ROLES: tuple[Role, ...] = get_args(Role)
NoteKind = Literal["hypothesis", "observation", "decision", "action", "note"]
NOTE_KINDS: tuple[NoteKind, ...] = get_args(NoteKind)
StepStatus = Literal["pending", "running", "done", "skipped"]

MAX_TEXT = 4000
MAX_NAME = 80
MAX_NOTES = 5000
MAX_PEOPLE = 200


class StateError(ValueError):
    """A request the session refuses (bad role, empty note, unknown step): the API's 400."""


@dataclass
class Person:
    id: int
    name: str
    role: Role
    joined_at: float


@dataclass
class Note:
    id: int
    kind: NoteKind
    text: str
    author: str
    t: float
    wall: str
    step: int | None = None
    faults: list[int] = field(default_factory=list)
    """Faults active when it was written (an observation during a fault names it)."""


@dataclass
class TimelineEntry:
    t: float
    wall: str
    kind: str
    text: str
    detail: dict[str, object] = field(default_factory=dict)


@dataclass
class StepRecord:
    index: int
    name: str
    status: StepStatus = "pending"
    runs: list[dict[str, float | None]] = field(default_factory=list)
    """Each time the step was started: {"start": t, "end": t | None}."""


def _clean(text: str, what: str, limit: int) -> str:
    value = " ".join(text.split()) if what == "name" else text.strip()
    if not value:
        raise StateError(f"{what} must not be empty")
    if len(value) > limit:
        raise StateError(f"{what} is too long ({len(value)} characters, at most {limit})")
    return value


class SessionState:
    """People, notes, steps and the timeline of one session; thread-safe and versioned."""

    def __init__(self, clock: Clock, steps: list[str] | None = None) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self.version = 0
        self.people: list[Person] = []
        self.notes: list[Note] = []
        self.timeline: list[TimelineEntry] = []
        self.steps = [StepRecord(i, name) for i, name in enumerate(steps or [])]
        self.current_step: int | None = None
        self.ended = False
        self.extra: dict[str, object] = {}
        """Live parts owned by others (faults, load, halts), set with ``publish``."""
        self.listeners: list[Callable[[TimelineEntry], None]] = []

    # -- versions ---------------------------------------------------------------------

    def _changed(self) -> None:
        # Called with the condition held.
        self.version += 1
        self._cond.notify_all()

    def wait_change(self, version: int, timeout: float) -> int:
        """Block until the version is past ``version`` (or ``timeout``); the version now."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > version or self.ended, timeout)
            return self.version

    def publish(self, key: str, value: object) -> None:
        """Replace a live part (faults, load, halts) if it changed; consoles then update."""
        with self._cond:
            if self.extra.get(key) != value:
                self.extra[key] = value
                self._changed()

    # -- timeline ---------------------------------------------------------------------

    def log(self, kind: str, text: str, t: float | None = None, **detail: object) -> TimelineEntry:
        """Add a timeline entry (fault applied, load changed, halt tripped, ...)."""
        when = self.clock.now() if t is None else t
        entry = TimelineEntry(round(when, 3), iso_utc(self.clock.epoch(when)), kind, text, detail)
        with self._cond:
            self.timeline.append(entry)
            self._changed()
        for listener in list(self.listeners):
            listener(entry)
        return entry

    # -- people and notes -------------------------------------------------------------

    def join(self, name: str, role: str) -> Person:
        name = _clean(name, "name", MAX_NAME)
        if role not in ROLES:
            raise StateError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        with self._cond:
            existing = next((p for p in self.people if p.name == name), None)
            if existing is not None:
                if existing.role == role:
                    return existing
                existing.role = role
                person = existing
            else:
                if len(self.people) >= MAX_PEOPLE:
                    raise StateError(f"at most {MAX_PEOPLE} people per session")
                person = Person(len(self.people) + 1, name, role, round(self.clock.now(), 3))
                self.people.append(person)
        self.log("person", f"{name} joined as {role}", name=name, role=role)
        return person

    def add_note(
        self,
        kind: str,
        text: str,
        author: str = "",
        *,
        active_faults: list[int] | None = None,
    ) -> Note:
        if kind not in NOTE_KINDS:
            raise StateError(f"kind must be one of {', '.join(NOTE_KINDS)}, got {kind!r}")
        text = _clean(text, "text", MAX_TEXT)
        author = " ".join(author.split())[:MAX_NAME] or "anonymous"
        now = self.clock.now()
        with self._cond:
            if len(self.notes) >= MAX_NOTES:
                raise StateError(f"at most {MAX_NOTES} notes per session")
            note = Note(
                id=len(self.notes) + 1,
                kind=kind,
                text=text,
                author=author,
                t=round(now, 3),
                wall=iso_utc(self.clock.epoch(now)),
                step=self.current_step,
                faults=list(active_faults or []),
            )
            self.notes.append(note)
        self.log("note", f"{kind} by {author}: {text}", t=now, note=note.id, note_kind=kind)
        return note

    # -- steps ------------------------------------------------------------------------

    def _step(self, index: int) -> StepRecord:
        if not 0 <= index < len(self.steps):
            raise StateError(f"no step {index} (the plan has {len(self.steps)})")
        return self.steps[index]

    def start_step(self, index: int) -> StepRecord:
        """Start (or repeat) a step; the one running before is done."""
        step = self._step(index)
        now = round(self.clock.now(), 3)
        with self._cond:
            self._close_current(now)
            step.status = "running"
            step.runs.append({"start": now, "end": None})
            self.current_step = index
        again = f" (run {len(step.runs)})" if len(step.runs) > 1 else ""
        self.log("step", f"step {index + 1} started: {step.name}{again}", t=now, step=index)
        return step

    def finish_step(self) -> StepRecord | None:
        now = round(self.clock.now(), 3)
        with self._cond:
            index = self.current_step
            self._close_current(now)
        if index is None:
            return None
        self.log("step", f"step {index + 1} done: {self.steps[index].name}", t=now, step=index)
        return self.steps[index]

    def skip_step(self, index: int) -> StepRecord:
        step = self._step(index)
        now = round(self.clock.now(), 3)
        with self._cond:
            if self.current_step == index:
                self._close_current(now)
            step.status = "skipped"
        self.log("step", f"step {index + 1} skipped: {step.name}", t=now, step=index)
        return step

    def next_step(self) -> StepRecord:
        """Start the first pending step after the current one (or the first pending)."""
        start = -1 if self.current_step is None else self.current_step
        order = [*range(start + 1, len(self.steps)), *range(start + 1)]
        for index in order:
            if self.steps[index].status == "pending":
                return self.start_step(index)
        raise StateError("no pending step left (start one again to repeat it)")

    def _close_current(self, now: float) -> None:
        if self.current_step is None:
            return
        step = self.steps[self.current_step]
        if step.runs and step.runs[-1]["end"] is None:
            step.runs[-1]["end"] = now
        if step.status == "running":
            step.status = "done"
        self.current_step = None
        self._changed()

    # -- views ------------------------------------------------------------------------

    def end(self) -> None:
        with self._cond:
            now = round(self.clock.now(), 3)
            self._close_current(now)
            self.ended = True
            self._changed()

    def snapshot(self) -> dict[str, object]:
        """Everything a console shows, as JSON-able data."""
        with self._cond:
            return {
                "version": self.version,
                "t": round(self.clock.now(), 3),
                "ended": self.ended,
                "people": [asdict(p) for p in self.people],
                "notes": [asdict(n) for n in self.notes],
                "timeline": [asdict(e) for e in self.timeline],
                "steps": [asdict(s) for s in self.steps],
                "current_step": self.current_step,
                **self.extra,
            }

    def journal_fields(self) -> dict[str, object]:
        """What the journal keeps: people, notes (all kinds and each kind apart), steps."""
        with self._cond:
            notes = [asdict(n) for n in self.notes]
            return {
                "people": [asdict(p) for p in self.people],
                "notes": notes,
                "hypotheses": [n for n in notes if n["kind"] == "hypothesis"],
                "observations": [n for n in notes if n["kind"] == "observation"],
                "decisions": [n for n in notes if n["kind"] == "decision"],
                "action_items": [n for n in notes if n["kind"] == "action"],
                "steps": [asdict(s) for s in self.steps],
                "timeline": [asdict(e) for e in self.timeline],
            }
