"""What flows from the parent to a running worker: one JSON command per line on its stdin.

The first line a worker reads is its ``LoadPlan``; every line after it is a command, one
dataclass each, with a ``type`` key on the wire. Commands change a running worker without
restarting it (its Locust runner, its open-model scheduler and its recording carry on):

- ``SetUsers``: hold ``users`` users in total (this worker takes its even share), ramping at
  ``spawn_rate`` users per second in total. Closed model only.
- ``SetRate``: send ``rps`` requests per second in total from now on. Open model only.
- ``PhaseMarks``: the times at which faults began to act or were healed, and how far they
  are known; the worker's recording places each request by its [sent, ended] interval.

A worker answers every command with a ``CommandAck`` event on stdout (``samples``) saying
whether it applied it. A new command type is one dataclass here, one entry in ``_TYPES``
and one branch in the worker's ``_apply``; the channel itself does not change.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from resilience.errors import LoadError

MAX_USERS = 1_000_000
MAX_RPS = 1_000_000.0


def _finite_positive(name: str, value: float, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class SetUsers:
    """Closed model: hold ``users`` users in total, ramping at ``spawn_rate`` per second."""

    users: int
    spawn_rate: float

    def __post_init__(self) -> None:
        if isinstance(self.users, bool) or not isinstance(self.users, int):
            raise ValueError(f"users must be a whole number, got {self.users!r}")
        if not 0 <= self.users <= MAX_USERS:
            raise ValueError(f"users must be between 0 and {MAX_USERS}, got {self.users}")
        _finite_positive("spawn_rate", self.spawn_rate, allow_zero=False)

    def describe(self) -> str:
        return f"{self.users} users (spawn rate {self.spawn_rate:g}/s)"


@dataclass(frozen=True)
class SetRate:
    """Open model: send ``rps`` requests per second in total from the moment it arrives."""

    rps: float

    def __post_init__(self) -> None:
        _finite_positive("rps", self.rps, allow_zero=True)
        if self.rps > MAX_RPS:
            raise ValueError(f"rps must be at most {MAX_RPS:g}, got {self.rps!r}")

    def describe(self) -> str:
        return f"{self.rps:g} requests/s"


@dataclass(frozen=True)
class PhaseMarks:
    """The phase marks so far (experiment-clock seconds at which a fault began to act or was
    healed, in order) and ``upto``: no mark earlier than it will be added (``None``: the
    list is final). A worker holds back a second's record until ``upto`` has passed every
    request of it ended, so each request is placed by its [sent, ended] interval against
    marks that are all known (docs/load.md). Not acknowledged: it is sent several times a
    second."""

    marks: tuple[float, ...]
    upto: float | None

    def __post_init__(self) -> None:
        values = [*self.marks, *([] if self.upto is None else [self.upto])]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"phase marks are numbers, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"phase marks are finite, got {value!r}")
        if list(self.marks) != sorted(self.marks):
            raise ValueError(f"phase marks must be in order, got {list(self.marks)}")
        object.__setattr__(self, "marks", tuple(float(m) for m in self.marks))

    def describe(self) -> str:
        upto = "final" if self.upto is None else f"up to {self.upto:.3f}"
        return f"{len(self.marks)} phase mark(s), {upto}"


Command = SetUsers | SetRate | PhaseMarks

_TYPES: dict[type[Command], str] = {
    SetUsers: "set_users",
    SetRate: "set_rate",
    PhaseMarks: "phase_marks",
}
_CLASSES: dict[str, type[Command]] = {name: cls for cls, name in _TYPES.items()}


def command_type(command: Command) -> str:
    """The wire name of a command (``set_users``, ``set_rate``)."""
    return _TYPES[type(command)]


def encode_command(command: Command) -> str:
    """One line of compact JSON (no newline) with a ``type`` key."""
    body = asdict(command)
    body["type"] = command_type(command)
    return json.dumps(body, separators=(",", ":"))


def decode_command(line: str | bytes) -> Command:
    """Parse one command line; LoadError for anything that is not a valid command."""
    try:
        body = json.loads(line)
    except ValueError as exc:
        raise LoadError(f"a load command is not JSON: {exc}: {line[:200]!r}") from exc
    if not isinstance(body, dict):
        raise LoadError(f"a load command must be a JSON object, got {line[:200]!r}")
    kind = body.pop("type", None)
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise LoadError(f"unknown load command type {kind!r} (known: {', '.join(_CLASSES)})")
    try:
        command: Command = cls(**body)
    except (TypeError, ValueError) as exc:
        raise LoadError(f"invalid {kind} command: {exc}") from exc
    return command
