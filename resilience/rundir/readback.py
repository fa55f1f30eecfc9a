"""What the read-back of acknowledged writes found: ``readback.json``.

After the run the runner reads back the writes the load engine saw acknowledged (through
each write request's ``list`` path, then ``read_back`` one by one; see
``resilience.runner.evidence``) and records every answer here — status, the id field and
``client_ref`` of the record returned — without judging. The data-loss detector then judges
from this file alone (Jepsen's set check), so a run can be re-judged without its target.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resilience.errors import ObserveError
from resilience.redact import Redactor
from resilience.rundir.layout import RunDir, write_json


@dataclass(frozen=True)
class ReadAnswer:
    """One read: the HTTP status (None when the request failed) and what the record said."""

    status: int | None
    error: str = ""
    record_id: Any = None
    """The record's id field, when the answer was a JSON object holding it."""
    client_ref: str | None = None

    @property
    def present(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def absent(self) -> bool:
        return self.status in (404, 410)


@dataclass
class EndpointReadBack:
    """The read-back of one write endpoint."""

    endpoint: str
    id_field: str = "id"
    list_path: str | None = None
    listing: ReadAnswer | None = None
    listed_ids: list[Any] | np.ndarray | None = None
    """Ids the list answered (duplicates kept), None when there was no usable list."""
    reads: dict[str, ReadAnswer] = field(default_factory=dict)
    """Per acknowledged id (as text): the answer of ``read_back``."""
    planned: list[str] = field(default_factory=list)
    """Ids that were to be read, in order (reads missing from ``reads`` ran out of time)."""
    notes: list[str] = field(default_factory=list)


@dataclass
class ReadBack:
    """Every write endpoint's read-back, or why there was none."""

    endpoints: dict[str, EndpointReadBack] = field(default_factory=dict)
    error: str | None = None
    """Why the read-back did not happen at all (e.g. the target did not answer)."""
    seconds: float = 0.0

    def save(self, run_dir: Path, *, redactor: Redactor | None = None) -> Path:
        """Write ``readback.json`` redacted as data (paths and errors may hold secrets)."""
        return write_json(RunDir(Path(run_dir)).readback, asdict(self), redactor, indent=1)

    @classmethod
    def load(cls, run_dir: Path) -> ReadBack | None:
        """The run's read-back, or None when it made none."""
        path = RunDir(Path(run_dir)).readback
        if not path.is_file():
            return None
        try:
            raw, lists = _parse(path.read_text(encoding="utf-8"))
            endpoints = {
                name: EndpointReadBack(
                    endpoint=str(e["endpoint"]),
                    id_field=str(e.get("id_field", "id")),
                    list_path=e.get("list_path"),
                    listing=_answer(e.get("listing")),
                    listed_ids=_listed(e.get("listed_ids"), lists),
                    reads={str(k): _answer(v) or ReadAnswer(None) for k, v in e["reads"].items()},
                    planned=[str(k) for k in e.get("planned", [])],
                    notes=[str(n) for n in e.get("notes", [])],
                )
                for name, e in raw.get("endpoints", {}).items()
            }
            return cls(endpoints, raw.get("error"), float(raw.get("seconds", 0.0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ObserveError(f"cannot read {path}: {exc}") from exc


_LISTED = re.compile(r'"listed_ids": \[([-\d,\s]*)\]')


def _parse(text: str) -> tuple[Any, list[np.ndarray]]:
    """``readback.json`` parsed; a listing of plain integers (a million after a long run)
    is read straight into an int64 array instead of a million Python ints."""
    lists: list[np.ndarray] = []

    def lift(found: re.Match[str]) -> str:
        body = found.group(1)
        if not body.strip():
            return found.group(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns when the text does not parse whole
            try:
                values = np.fromstring(body, dtype=np.int64, sep=",")
            except (DeprecationWarning, ValueError, OverflowError):
                return found.group(0)
        if len(values) != body.count(",") + 1:
            return found.group(0)  # "1,,2" or the like: JSON's parser decides
        if len(values) and int(np.abs(values).max()) >= 10**18:
            return found.group(0)  # near int64's edge: keep JSON's exact integers
        lists.append(values)
        return f'"listed_ids": {{"{_LIFTED}": {len(lists) - 1}}}'

    return json.loads(_LISTED.sub(lift, text)), lists


_LIFTED = "__resilience_listed__"


def _listed(raw: Any, lists: list[np.ndarray]) -> list[Any] | np.ndarray | None:
    if isinstance(raw, dict) and isinstance(raw.get(_LIFTED), int):
        return lists[raw[_LIFTED]]
    return raw if raw is None or isinstance(raw, list) else list(raw)


def _answer(raw: Any) -> ReadAnswer | None:
    if not isinstance(raw, dict):
        return None
    status = raw.get("status")
    return ReadAnswer(
        status=None if status is None else int(status),
        error=str(raw.get("error", "")),
        record_id=raw.get("record_id"),
        client_ref=raw.get("client_ref"),
    )
