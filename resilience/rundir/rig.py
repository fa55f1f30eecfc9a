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
from pathlib import Path
from typing import IO, Literal

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
    """The samples in order, or None for a run directory without ``rig.jsonl`` (older runs).
    A line that cannot be read (a killed run's last, half-written one) is skipped."""
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
