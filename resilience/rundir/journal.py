"""The run journal: one JSON document per run, rewritten atomically at every event.

The journal is the run's record of truth: which faults were applied and healed when,
which phases that made, what the SLOs, checks and detectors concluded, and the status.
It is written with write-to-temp + rename after every change, so whatever kills the
process (even SIGKILL) leaves a complete, valid JSON document behind; a run that never
finished is left with ``status: starting`` (killed before its load began) or ``running``
and is marked ``aborted`` by the next start's sweep.

Key names are a contract (DESIGN.md "Contracts"): none may be renamed. Times named
``*_at`` on faults and ``start``/``end`` on phases are seconds on the experiment clock
(0 = ``started_at``); ``*_wall`` and ``started_at``/``ended_at`` are ISO 8601 UTC.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from resilience.redact import Redactor
from resilience.rundir.layout import RULES_ONLY, to_json, write_atomic, write_json
from resilience.vocabulary import (
    CheckStatus,
    FaultWindow,
    FindingStatus,
    PhaseName,
    RunStatus,
    ShopMode,
    iso_utc,
)

Status = RunStatus


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class PhaseRecord(_Record):
    name: PhaseName
    start: float
    end: float | None = None


class FaultRecord(_Record):
    index: int
    proxy: str
    type: str
    attributes: dict[str, object] = Field(default_factory=dict)
    stream: str = "downstream"
    toxicity: float = 1.0
    scheduled_at: float
    scheduled_end: float
    applied_at: float | None = None
    healed_at: float | None = None
    applied_wall: str | None = None
    healed_wall: str | None = None
    error: str | None = None


class SloRecord(_Record):
    phase: str
    endpoint: str | None
    metric: str
    threshold: float
    observed: float | None
    passed: bool | None
    unit: str = ""


class CheckRecord(_Record):
    name: str
    phase: str
    promql: str
    expect: str
    status: CheckStatus
    passed: bool | None
    observed: dict[str, object] = Field(default_factory=dict)
    reason: str | None = None
    severity: str = "critical"
    series_file: str | None = None
    fails_run: bool = False
    """A failed check fails the run only at severity critical; info and warning checks
    describe what happened (e.g. the shop's built-in checks during a fault)."""


class FindingRecord(_Record):
    kind: str
    severity: str
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    fails_run: bool = False
    status: FindingStatus = "found"


class RecoveryRecord(_Record):
    seconds: float | None = None
    budget_seconds: float | None = None
    recovered: bool | None = None


class MarkRecord(_Record):
    """A phase mark: when a fault began to act (``apply``: just before the Toxiproxy call)
    or was healed (``heal``: once the call returned), on the experiment clock."""

    t: float
    kind: Literal["apply", "heal"]
    fault: int = 0


class EventRecord(_Record):
    t: float
    wall: str
    kind: str
    detail: dict[str, Any] = Field(default_factory=dict)


class JournalData(_Record):
    experiment: str
    profile: str | None = None
    status: Status = "running"
    started_at: str
    ended_at: str | None = None
    t0: float = Field(description="experiment clock origin, seconds since the Unix epoch")
    phases: list[PhaseRecord] = Field(default_factory=list)
    faults: list[FaultRecord] = Field(default_factory=list)
    marks: list[MarkRecord] = Field(default_factory=list)
    """The phase marks sent to the load workers, in order (docs/findings.md)."""
    slo: list[SloRecord] = Field(default_factory=list)
    checks: list[CheckRecord] = Field(default_factory=list)
    findings: list[FindingRecord] = Field(default_factory=list)
    recovery: RecoveryRecord = Field(default_factory=RecoveryRecord)
    events: list[EventRecord] = Field(default_factory=list)
    target: str | None = None
    shop_mode: ShopMode | None = None
    builtin: bool | None = None
    """True when the target is the built-in shop of the local stack."""
    dependencies: dict[str, list[str]] = Field(default_factory=dict)
    """Per proxy: the peer addresses and service names behind it (how spans name it), to
    decide which endpoints' traces touch a faulted dependency."""
    parts: dict[str, dict[str, object]] = Field(default_factory=dict)
    """Toxiproxy, Prometheus and the trace backend the run used, and whose each was:
    ``{name: {url, source: flag|file|stack, own, kind?}}`` (``own``: the user's, not the
    local stack's). No headers or credentials."""
    load_end: float | None = None
    """Experiment-clock second the load stopped (the end of the last phase)."""
    reason: str | None = None
    exit_code: int | None = None
    pid: int | None = None
    analysis: dict[str, object] = Field(default_factory=dict)
    """How the verdict was reached: the phase rule, when, by which version."""
    previous_verdicts: list[dict[str, object]] = Field(default_factory=list)
    """Verdicts this run had before ``resilience analyse`` re-judged it, oldest first."""

    def fault_windows(self) -> list[FaultWindow]:
        """The faults that were applied, as windows on the experiment clock (stamps, not
        the schedule); ``end`` is None for a fault never healed."""
        return [
            FaultWindow(f.index, f.proxy, f.type, f.applied_at, f.healed_at, dict(f.attributes))
            for f in self.faults
            if f.applied_at is not None
        ]


class Journal:
    """An append-mostly journal that is valid JSON on disk after every change.

    ``data`` holds what the run knows; the file holds it through ``redactor`` (the run's
    secrets masked: a target URL's password, a token in an event's detail). Thread-safe:
    the orchestrator's loop and its signal path may both write.
    """

    def __init__(self, path: Path, data: JournalData, *, redactor: Redactor | None = None) -> None:
        self.path = path
        self.data = data
        self.redactor = redactor or RULES_ONLY
        self._lock = threading.RLock()
        self.flush()

    @classmethod
    def start(
        cls,
        path: Path,
        *,
        experiment: str,
        profile: str | None,
        t0: float,
        redactor: Redactor | None = None,
        **extra: Any,
    ) -> Journal:
        data = JournalData(
            experiment=experiment,
            profile=profile,
            started_at=iso_utc(t0),
            t0=t0,
            pid=os.getpid(),
            **extra,
        )
        return cls(path, data, redactor=redactor)

    @classmethod
    def read(cls, path: Path) -> JournalData:
        return JournalData.model_validate_json(path.read_bytes())

    def written(self) -> JournalData:
        """The journal as the file has it: ``data`` with the run's secrets masked."""
        with self._lock:
            return JournalData.model_validate_json(self._payload())

    def _payload(self) -> str:
        # Through pydantic's JSON first: it writes NaN and infinities as null, json.dumps
        # would write tokens that are not JSON.
        data = json.loads(self.data.model_dump_json())
        return to_json(data, self.redactor, indent=2, ensure_ascii=False)

    def flush(self) -> None:
        with self._lock:
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            write_atomic(self.path, self._payload(), tmp=tmp)

    def event(self, kind: str, t: float, **detail: object) -> None:
        with self._lock:
            wall = iso_utc(self.data.t0 + t)
            self.data.events.append(EventRecord(t=round(t, 4), wall=wall, kind=kind, detail=detail))
            self.flush()

    def update(self, **fields: object) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self.data, key, value)
            self.flush()

    def record_verdict(self, **fields: object) -> None:
        """Write an analysis' verdict (phases, slo, recovery, checks, findings, analysis)
        in one update."""
        self.update(**fields)

    def finish(
        self, status: Status, *, ended: float, exit_code: int, reason: str | None = None
    ) -> None:
        with self._lock:
            self.data.status = status
            self.data.ended_at = iso_utc(ended)
            self.data.exit_code = exit_code
            if reason is not None:
                self.data.reason = reason
            self.flush()


def mark_abandoned(path: Path, reason: str) -> bool:
    """Mark a journal left ``starting`` or ``running`` by a killed run as ``aborted``;
    True if it changed."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if raw.get("status") not in ("starting", "running"):
        return False
    raw["status"] = "aborted"
    raw["reason"] = reason
    write_json(path, raw, indent=2, ensure_ascii=False)
    return True
