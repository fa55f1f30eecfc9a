"""Traces in the run directory: ``traces/<trace_id>.json`` (OTLP JSON as the backend sent it)
and ``traces/index.json`` (per trace id: the endpoint it was kept for, and "saved" with its
span count, or "missing" with the reason). Written once after the run by the evidence
gathering; read by the analysis and the reports, which then need only the run directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from resilience.errors import ObserveError
from resilience.observe.otlp import normalize_id, parse_otlp_json, to_otlp_json
from resilience.observe.spans import Trace
from resilience.observe.traces import TraceCollection
from resilience.redact import Redactor
from resilience.rundir.layout import RULES_ONLY, make_dirs, write_atomic, write_json

INDEX_FILE = "index.json"


class DirectoryTraceSource:
    """The traces saved in a run directory's ``traces/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, trace_id: str) -> Trace | None:
        try:
            tid = normalize_id(trace_id, 16)
        except ValueError as exc:
            raise ObserveError(f"cannot read trace: {exc}") from exc
        path = self.directory / f"{tid}.json"
        if not path.is_file():
            return None
        return load_trace(path, tid)

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json") if p.name != INDEX_FILE)

    def all(self) -> list[Trace]:
        traces = [self.get(tid) for tid in self.ids()]
        return [t for t in traces if t is not None]

    def index(self) -> dict[str, dict[str, object]]:
        """``trace_id -> {"endpoint", "status", "reason", ...}`` from ``index.json``."""
        return read_index(self.directory)

    def endpoints(self) -> dict[str, str]:
        """``trace_id -> endpoint`` for the saved traces that had one."""
        return {
            tid: str(entry["endpoint"])
            for tid, entry in self.index().items()
            if entry.get("endpoint") and entry.get("status") == "saved"
        }


def save_trace(trace: Trace, out_dir: Path, *, redactor: Redactor | None = None) -> Path:
    """Write one trace's OTLP JSON (as received when known) to ``out_dir/<id>.json``, its
    secrets masked (``redact_otlp``: span attributes such as ``http.url`` with a token,
    ``http.request.header.authorization``); still valid OTLP."""
    payload = dict(trace.raw) if trace.raw is not None else to_otlp_json(trace)
    redacted = (redactor or RULES_ONLY).redact_otlp(payload)
    return write_atomic(
        out_dir / f"{trace.trace_id}.json", json.dumps(redacted, separators=(",", ":")) + "\n"
    )


def load_trace(path: Path, trace_id: str | None = None) -> Trace | None:
    """Read a trace file written by ``save_trace`` (or any OTLP JSON file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ObserveError(f"cannot read trace file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ObserveError(f"trace file {path} does not hold a JSON object")
    return parse_otlp_json(data, trace_id)


def read_index(directory: Path) -> dict[str, dict[str, object]]:
    path = directory / INDEX_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ObserveError(f"cannot read trace index {path}: {exc}") from exc
    traces = data.get("traces", {}) if isinstance(data, dict) else {}
    return {str(k): dict(v) for k, v in traces.items() if isinstance(v, dict)}


def save_collection(
    result: TraceCollection,
    wanted: Mapping[str, str | None],
    out_dir: Path,
    *,
    redactor: Redactor | None = None,
) -> None:
    """Save every trace ``collect_traces`` got and index every id asked for (``wanted``:
    trace id -> the endpoint it was kept for), all through ``redactor``."""
    ids: dict[str, str] = {}
    for raw_id in wanted:
        try:
            ids[normalize_id(raw_id, 16)] = raw_id
        except ValueError:
            continue
    make_dirs(out_dir)
    index = read_index(out_dir)
    for tid, raw_id in ids.items():
        entry: dict[str, object] = {"endpoint": wanted.get(raw_id)}
        trace = result.traces.get(tid)
        if trace is not None:
            save_trace(trace, out_dir, redactor=redactor)
            entry.update(
                status="saved",
                spans=len(trace.spans),
                complete=tid not in result.partial,
                services=sorted(trace.services()),
            )
        else:
            entry.update(status="missing", reason=result.missing.get(tid, "unknown"))
        index[tid] = entry
    for raw_id, reason in result.missing.items():
        if raw_id not in ids:
            index[raw_id] = {"endpoint": wanted.get(raw_id), "status": "missing", "reason": reason}
    write_json(out_dir / INDEX_FILE, {"traces": index}, redactor, indent=1, sort_keys=True)
