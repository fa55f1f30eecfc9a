"""``rig.jsonl``: the rig's own health, one line per second of the run.

Written by the runner's rig monitor (``resilience/runner/rig.py``) while the run goes,
flushed per line so it stays valid if the run dies; read back by the analysis
(``resilience/analysis/rig.py``), which decides from it whether the load generator or the
host was overloaded in a phase, when a source (Prometheus, the trace backend, Toxiproxy,
the target) stopped answering, and which process of the built-in stack died.

One line (``RigSample``): ``t`` (experiment clock), ``second``, the host's ``cores``,
``load1``, ``busy``/``steal``/``idle`` (shares of the whole host in that second),
``workers`` (each load worker's CPU in cores, None once it is gone), ``target_cpu`` (the
built-in shop's processes, in cores; None for other targets), ``stack_cpu`` (the built-in
stack's other processes: PostgreSQL, Toxiproxy, Prometheus, the trace backend), ``other_cpu``
(everything else, in cores: neighbours), ``users`` and ``in_flight`` (what the load workers
last reported), ``procs`` (per watched process: a ``ProcSample``), ``sources`` (per source
``up``, ``down`` or ``slow``, the worst seen in that second) with ``why`` per source that was
not up, and ``died`` (stack processes found gone in that second, each a sentence).

A ``ProcSample`` is one process tree (the process and its children: PostgreSQL's backends,
a service's worker processes) in that second: ``role`` (``target``, ``stack``, ``generator``
or ``rig``), ``cpu`` (cores used), ``cores`` (what it may use: one core for a single event
loop, the cgroup's CPU quota, else the host's cores), ``throttled`` (share of its cgroup's
CPU periods throttled, when a quota applies), ``rss`` and ``mem_limit`` (bytes), ``fds`` and
``fd_limit``, ``conns`` (established TCP connections), ``processes``, and for PostgreSQL
``backends`` (client connections) and ``max_connections``. Fields it could not read are left
out of the line.
"""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from resilience.redact import Redactor
from resilience.rundir.layout import RULES_ONLY, RunDir, open_private

logger = logging.getLogger(__name__)

SourceState = Literal["up", "down", "slow"]
"""up: answered; down: refused, reset or failed; slow: no answer within the poll's timeout."""
SOURCES = ("prometheus", "traces", "toxiproxy", "target")


ProcRole = Literal["target", "stack", "generator", "rig"]
"""target: the system under test; stack: the built-in stack's other processes (its database,
the fault proxy, Prometheus, the trace backend); generator: a load worker; rig: the
orchestrator itself."""


class ProcSample(BaseModel):
    """One watched process tree in one second (see the module doc)."""

    model_config = ConfigDict(extra="allow")

    role: ProcRole = "stack"
    cpu: float | None = None
    cores: float | None = None
    throttled: float | None = None
    rss: int | None = None
    mem_limit: int | None = None
    fds: int | None = None
    fd_limit: int | None = None
    conns: int | None = None
    processes: int = 1
    backends: int | None = None
    max_connections: int | None = None


class RigSample(BaseModel):
    """One second of the rig's health (see the module doc)."""

    model_config = ConfigDict(extra="allow")

    t: float
    second: int
    cores: int = 1
    load1: float | None = None
    busy: float | None = None
    steal: float | None = None
    idle: float | None = None
    workers: list[float | None] = Field(default_factory=list)
    target_cpu: float | None = None
    stack_cpu: float | None = None
    other_cpu: float | None = None
    users: int | None = None
    in_flight: int | None = None
    procs: dict[str, ProcSample] = Field(default_factory=dict)
    sources: dict[str, SourceState] = Field(default_factory=dict)
    why: dict[str, str] = Field(default_factory=dict)
    died: list[str] = Field(default_factory=list)


class RigWriter:
    """Appends samples to ``rig.jsonl`` (private, like every run file), one flushed line
    each, through the run's redactor (an error text or a log line may name a secret)."""

    def __init__(self, run_dir: Path, redactor: Redactor | None = None) -> None:
        self.path = RunDir(Path(run_dir)).rig
        self.redactor = redactor or RULES_ONLY
        self._file: IO[str] | None = open_private(self.path, "a")

    def write(self, sample: RigSample) -> None:
        if self._file is None:
            return
        data = sample.model_dump(mode="json")
        for proc in data.get("procs", {}).values():
            for key in [k for k, v in proc.items() if v is None]:
                del proc[key]  # an unreadable figure is simply not in the line
        data = self.redactor.redact_json(data)
        self._file.write(json.dumps(data) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_rig(run_dir: Path) -> list[RigSample] | None:
    """The samples in order as models, or None for a run directory without ``rig.jsonl``
    (older runs). A line that cannot be read (a killed run's last, half-written one) is
    skipped. Every process tree of every second becomes a model: for a short run or a test;
    the analysis reads the same file with ``read_rig_table`` (bounded, no model per line)."""
    path = RunDir(Path(run_dir)).rig
    if not path.is_file():
        return None
    samples: list[RigSample] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                samples.append(RigSample.model_validate(json.loads(line)))
            except (ValueError, ValidationError) as exc:
                logger.warning("%s:%d: skipping an unreadable line: %s", path, number, exc)
    return samples


# -- read back for the analysis: compact columns -------------------------------------------


class HostFigures(Protocol):
    """What the rig's overload rules read of one second (``RigSample`` or ``RigSecond``)."""

    @property
    def t(self) -> float: ...
    @property
    def cores(self) -> int: ...
    @property
    def steal(self) -> float | None: ...
    @property
    def idle(self) -> float | None: ...
    @property
    def other_cpu(self) -> float | None: ...
    @property
    def workers(self) -> Sequence[float | None]: ...


@dataclass(frozen=True, slots=True)
class RigSecond:
    """One line of ``rig.jsonl`` without its process trees (those are columns of the
    ``RigTable``): the host's figures, the load workers', the sources' states."""

    t: float
    second: int
    cores: int = 1
    load1: float | None = None
    busy: float | None = None
    steal: float | None = None
    idle: float | None = None
    workers: tuple[float | None, ...] = ()
    target_cpu: float | None = None
    stack_cpu: float | None = None
    other_cpu: float | None = None
    users: int | None = None
    in_flight: int | None = None
    sources: Mapping[str, SourceState] = field(default_factory=dict)
    why: Mapping[str, str] = field(default_factory=dict)
    died: tuple[str, ...] = ()


ROLES: tuple[ProcRole, ...] = ("target", "stack", "generator", "rig")
PROC_FIGURES = (
    "cpu", "cores", "throttled", "rss", "mem_limit", "fds", "fd_limit", "conns", "processes",
    "backends", "max_connections",
)  # fmt: skip
"""A ``ProcSample``'s figures kept per second (``role`` aside), in cores, shares, bytes or
counts; what a line does not give is NaN."""
_INT_FIGURES = frozenset(
    {"rss", "mem_limit", "fds", "fd_limit", "conns", "processes", "backends", "max_connections"}
)
_NO_SOURCES: Mapping[str, SourceState] = MappingProxyType({})
_NO_WHY: Mapping[str, str] = MappingProxyType({})


class BadLine(ValueError):
    """A line of rig.jsonl that does not hold a sample (skipped, with this reason)."""


class ProcColumns:
    """One watched process tree across the run: per line it appeared in, the line's index
    (into ``RigTable.seconds``), its position among that line's processes, its role (an
    index into ``ROLES``) and each of ``PROC_FIGURES`` (NaN: not given). Appended to while
    reading (``array``: 8 bytes a figure), read as numpy arrays after ``RigTable.seal``."""

    __slots__ = ("_figures", "_index", "_position", "_role", "arrays", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._index = array("l")
        self._position = array("h")
        self._role = array("b")
        self._figures = array("d")
        """``PROC_FIGURES`` of each line in a row."""
        self.arrays: dict[str, np.ndarray[Any, Any]] = {}

    def append(self, index: int, position: int, role: int, figures: list[float]) -> None:
        self._index.append(index)
        self._position.append(position)
        self._role.append(role)
        self._figures.extend(figures)

    def seal(self) -> None:
        rows = np.frombuffer(self._figures, dtype=np.float64).reshape(-1, len(PROC_FIGURES))
        self.arrays = {
            "index": np.frombuffer(self._index, dtype=np.dtype(f"i{self._index.itemsize}")),
            "position": np.frombuffer(self._position, dtype=np.int16),
            "role": np.frombuffer(self._role, dtype=np.int8),
        }
        for column, key in enumerate(PROC_FIGURES):
            self.arrays[key] = rows[:, column]

    def __len__(self) -> int:
        return len(self._index)


class RigTable:
    """``rig.jsonl`` read once for the analysis, bounded: one small ``RigSecond`` per line
    and the process trees as columns (``ProcColumns``, per process name), plus per line the
    CPU each role's process trees used together (``role_cpu``: the sum of their ``cpu`` in
    the line's order, NaN when none of that role gave one). A 2-hour run's file (11 MB,
    a dozen process trees a second) holds in about 10 MB this way, against 115 MB as
    models; lines are checked as ``RigSample`` would check them, and a line that is not a
    sample (a killed run's half-written last line) is skipped."""

    def __init__(self) -> None:
        self.seconds: list[RigSecond] = []
        self.procs: dict[str, ProcColumns] = {}
        self._role_cpu = {role: array("d") for role in ROLES}
        self.role_cpu: dict[ProcRole, np.ndarray[Any, Any]] = {}

    def __len__(self) -> int:
        return len(self.seconds)

    def add(self, data: Any) -> None:
        """One line's JSON object; ``BadLine`` (nothing kept) when it is not a sample."""
        if not isinstance(data, dict):
            raise BadLine("not a JSON object")
        second = _sample(data)
        index = len(self.seconds)
        raw = data.get("procs") or {}
        if not isinstance(raw, dict):
            raise BadLine("procs: not an object")
        procs = [(name, *_proc(name, fields)) for name, fields in raw.items()]
        self.seconds.append(second)
        sums: list[float | None] = [None] * len(ROLES)
        for position, (name, role, figures) in enumerate(procs):
            columns = self.procs.get(name)
            if columns is None:
                columns = self.procs[name] = ProcColumns(name)
            columns.append(index, position, role, figures)
            cpu, before = figures[0], sums[role]
            if not math.isnan(cpu):
                sums[role] = cpu if before is None else before + cpu
        for kind, total in zip(ROLES, sums, strict=True):
            self._role_cpu[kind].append(math.nan if total is None else total)

    def seal(self) -> RigTable:
        """Done reading: the columns as numpy arrays."""
        for columns in self.procs.values():
            columns.seal()
        self.role_cpu = {
            role: np.frombuffer(values, dtype=np.float64) for role, values in self._role_cpu.items()
        }
        return self

    @classmethod
    def from_samples(cls, samples: Iterable[RigSample]) -> RigTable:
        """The table of samples already in memory (a test's, the live monitor's)."""
        table = cls()
        for sample in samples:
            table.add(sample.model_dump(mode="json"))
        return table.seal()


def as_table(rig: RigTable | Sequence[RigSample] | None) -> RigTable:
    """The rig's samples as read for the analysis (``rundir/rig.py``): a run directory's
    ``RigTable`` as it is, samples in memory (a test's) made into one; None: an empty one."""
    if isinstance(rig, RigTable):
        return rig
    return RigTable.from_samples(rig or [])


def read_rig_table(run_dir: Path) -> RigTable | None:
    """``rig.jsonl`` as a ``RigTable``, or None for a run directory without one (older
    runs); unreadable lines are skipped with a warning, as ``read_rig`` does."""
    path = RunDir(Path(run_dir)).rig
    if not path.is_file():
        return None
    table = RigTable()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                table.add(json.loads(line))
            except ValueError as exc:  # BadLine, and json's own
                logger.warning("%s:%d: skipping an unreadable line: %s", path, number, exc)
    return table.seal()


def _number(data: Mapping[str, Any], key: str, *, integer: bool = False) -> float | None:
    """A figure of a line: None when absent or null; ``BadLine`` when it is not a number
    (a bool is not one; an integer field takes a whole float, as pydantic does)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadLine(f"{key}: not a number ({value!r})")
    if integer and isinstance(value, float) and not value.is_integer():
        raise BadLine(f"{key}: not a whole number ({value!r})")
    return value


def _sample(data: Mapping[str, Any]) -> RigSecond:
    t, second = _number(data, "t"), _number(data, "second", integer=True)
    if t is None or second is None:
        raise BadLine("t and second are required")
    cores = _number(data, "cores", integer=True)
    workers = data.get("workers") or []
    if not isinstance(workers, list):
        raise BadLine("workers: not a list")
    sources, why, died = data.get("sources") or {}, data.get("why") or {}, data.get("died") or []
    if not isinstance(sources, dict) or any(
        v not in ("up", "down", "slow") for v in sources.values()
    ):
        raise BadLine("sources: not a map of up, down or slow")
    if not isinstance(why, dict) or not all(isinstance(v, str) for v in why.values()):
        raise BadLine("why: not a map of texts")
    if not isinstance(died, list) or not all(isinstance(v, str) for v in died):
        raise BadLine("died: not a list of texts")
    users, in_flight = (
        _number(data, "users", integer=True),
        _number(data, "in_flight", integer=True),
    )
    return RigSecond(
        t=float(t),
        second=int(second),
        cores=1 if cores is None else int(cores),
        load1=_float(data, "load1"),
        busy=_float(data, "busy"),
        steal=_float(data, "steal"),
        idle=_float(data, "idle"),
        workers=tuple(_float({"w": w}, "w") for w in workers),
        target_cpu=_float(data, "target_cpu"),
        stack_cpu=_float(data, "stack_cpu"),
        other_cpu=_float(data, "other_cpu"),
        users=None if users is None else int(users),
        in_flight=None if in_flight is None else int(in_flight),
        sources=sources or _NO_SOURCES,
        why=why or _NO_WHY,
        died=tuple(died),
    )


def _float(data: Mapping[str, Any], key: str) -> float | None:
    value = _number(data, key)
    return None if value is None else float(value)


def _proc(name: str, fields: Any) -> tuple[int, list[float]]:
    """A process tree's role (index into ``ROLES``) and figures (NaN: not given); checked as
    ``_number`` checks, inline (a dozen figures a process a second)."""
    if not isinstance(fields, dict):
        raise BadLine(f"procs.{name}: not an object")
    role = fields.get("role", "stack")
    if role not in ROLES:
        raise BadLine(f"procs.{name}.role: {role!r}")
    figures: list[float] = []
    get = fields.get
    for key in PROC_FIGURES:
        value: Any = get(key)
        kind = type(value)
        if kind is float:
            if key in _INT_FIGURES and not value.is_integer():
                raise BadLine(f"procs.{name}.{key}: not a whole number ({value!r})")
            figures.append(value)
        elif kind is int:
            figures.append(float(value))
        elif value is None:
            figures.append(math.nan)
        else:
            raise BadLine(f"procs.{name}.{key}: not a number ({value!r})")
    return ROLES.index(role), figures
