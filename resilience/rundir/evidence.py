"""What the run gathered after the load, per source, and what it could not: ``evidence.json``.

Written once by the runner's evidence gathering, read by the analysis (a check or finding
that needed a source that was lost says so, with the reason) and by the reports (lost
evidence is said aloud, never silently dropped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from resilience.errors import ObserveError
from resilience.redact import Redactor
from resilience.rundir.layout import RunDir, write_json

SourceStatus = Literal["gathered", "partial", "unavailable", "not_needed"]


class SourceEvidence(BaseModel):
    """One source (Prometheus, traces, read-back): how much of what was wanted arrived."""

    model_config = ConfigDict(extra="allow")

    status: SourceStatus
    endpoint: str | None = None
    wanted: int = 0
    gathered: int = 0
    reason: str | None = None

    @property
    def unavailable_reason(self) -> str | None:
        """Why nothing of this source can be used (None when something arrived)."""
        if self.status == "unavailable":
            return self.reason or "unavailable"
        return None


class Evidence(BaseModel):
    """The evidence manifest of one run."""

    model_config = ConfigDict(extra="allow")

    prometheus: SourceEvidence = Field(default_factory=lambda: SourceEvidence(status="not_needed"))
    traces: SourceEvidence = Field(default_factory=lambda: SourceEvidence(status="not_needed"))
    readback: SourceEvidence = Field(default_factory=lambda: SourceEvidence(status="not_needed"))
    gathered_at: str | None = None
    trace_ui: str | None = None
    """The trace UI's URL for one trace with ``{trace_id}`` in it (the stack's Jaeger UI, or
    the experiment's ``observe.trace_ui``): reports link trace ids to it."""
    client_spans: SourceEvidence | None = None
    """The load engine's own client spans and run trace, exported before the trace fetch."""

    def save(self, run_dir: Path, *, redactor: Redactor | None = None) -> Path:
        """Write ``evidence.json`` redacted as data (an endpoint or a reason may quote a
        URL with a password)."""
        return write_json(
            RunDir(Path(run_dir)).evidence,
            json.loads(self.model_dump_json()),
            redactor,
            indent=1,
            ensure_ascii=False,
        )

    @classmethod
    def load(cls, run_dir: Path) -> Evidence | None:
        """The manifest, or None for a run directory without one (older runs)."""
        path = RunDir(Path(run_dir)).evidence
        if not path.is_file():
            return None
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise ObserveError(f"cannot read {path}: {exc}") from exc
