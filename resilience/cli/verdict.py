"""The verdict record that ``resilience run --json`` prints: one JSON document per run.

Built from the run's result and its journal (the journal's own JSON, so numbers read the
same as in ``journal.json``). Its shape is a contract for scripts, held by the JSON
Schema shipped beside this module (``schemas/verdict.schema.json``; a test validates a
real run's output against it). A run that could not start still gets a record:
``status: error``, its exit code, the reason, and the problems of invalid input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resilience.runner.orchestrator import RunResult

SCHEMA_ID = "urn:resilience:verdict:1"
"""The ``$id`` of the schema, also stamped into every record as ``schema``."""

_REPORT_KINDS = {".html": "html", ".xml": "junit", ".md": "markdown"}
_LISTS = ("phases", "faults", "slo", "checks", "findings")


def verdict_schema() -> dict[str, object]:
    """The JSON Schema of the verdict record (shipped as package data)."""
    text = resources.files("resilience.cli").joinpath("schemas/verdict.schema.json").read_text()
    schema: dict[str, object] = json.loads(text)
    return schema


def _reports(paths: Sequence[Path], junit_copy: Path | None) -> dict[str, str | None]:
    reports: dict[str, str | None] = {"html": None, "junit": None, "markdown": None}
    for path in paths:
        kind = _REPORT_KINDS.get(path.suffix)
        if kind is not None:
            reports[kind] = str(path)
    reports["junit_copy"] = str(junit_copy) if junit_copy is not None else None
    return reports


def verdict_record(
    result: RunResult,
    *,
    experiment: str,
    profile: str | None,
    wall_seconds: float | None = None,
    junit_copy: Path | None = None,
) -> dict[str, object]:
    """The record of a run that started (whatever its status)."""
    journal: dict[str, object] = (
        json.loads(result.journal.model_dump_json()) if result.journal is not None else {}
    )
    record: dict[str, object] = {
        "schema": SCHEMA_ID,
        "experiment": journal.get("experiment", experiment),
        "profile": journal.get("profile", profile),
        "status": result.status,
        "exit_code": result.exit_code,
        "reason": result.reason,
        "run_dir": str(result.run_dir) if result.run_dir is not None else None,
        "reports": _reports(result.report_files, junit_copy),
        "target": journal.get("target"),
        "shop_mode": journal.get("shop_mode"),
        "started_at": journal.get("started_at"),
        "ended_at": journal.get("ended_at"),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 3),
        "recovery": journal.get("recovery"),
        "problems": [],
    }
    for key in _LISTS:
        record[key] = journal.get(key, [])
    return record


def error_record(
    *,
    experiment: str,
    profile: str | None,
    status: str,
    exit_code: int,
    reason: str,
    problems: list[dict[str, object]],
) -> dict[str, object]:
    """The record of a run that ended before it had a journal (bad input, no stack, Ctrl-C)."""
    record: dict[str, object] = {
        "schema": SCHEMA_ID,
        "experiment": experiment,
        "profile": profile,
        "status": status,
        "exit_code": exit_code,
        "reason": reason,
        "run_dir": None,
        "reports": _reports([], None),
        "target": None,
        "shop_mode": None,
        "started_at": None,
        "ended_at": None,
        "wall_seconds": None,
        "recovery": None,
        "problems": problems,
    }
    for key in _LISTS:
        record[key] = []
    return record
