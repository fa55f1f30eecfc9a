"""Prometheus series in the run directory: gathered once after the run, read by the analysis.

The runner range-queries every expression the checks and detectors need over the whole run
(``SeriesStore.add``), one file per expression under ``prometheus/`` plus an index
(``prometheus/index.json``: expression -> file, window, step, or why it could not be
gathered). ``RecordedPrometheus`` answers ``query_range`` and ``query`` from those files, so
the analysis — and a later ``resilience analyse DIR`` — judge the same numbers without
Prometheus. An expression that was not gathered raises ``SeriesNotGathered`` (the check or
detector that asked is then "not evaluated", with that reason).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resilience.errors import ObserveError
from resilience.observe.prometheus import Series, Target
from resilience.redact import Redactor
from resilience.rundir.layout import RULES_ONLY, RunDir, write_json

INDEX = "index.json"


class SeriesNotGathered(ObserveError):
    """The analysis asked for an expression whose series the run did not gather."""


def save_series(
    path: Path, series: Sequence[Series], *, redactor: Redactor | None = None, **meta: Any
) -> None:
    """Write series (and any metadata) as JSON, redacted as data (a label or an expression
    may carry a secret); NaN/±Inf stored as strings."""
    payload = {**meta, "series": [s.to_json() for s in series]}
    write_json(path, payload, redactor, indent=1, allow_nan=False)


def load_series(path: Path) -> tuple[dict[str, Any], list[Series]]:
    """Read a file written by ``save_series``: (metadata, series)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ObserveError(f"cannot read saved series {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise ObserveError(f"saved series {path} is not a JSON object")
    series = [Series.from_json(s) for s in payload.pop("series", [])]
    return payload, series


@dataclass(frozen=True)
class Gathered:
    """One expression in the index: where its series are, or why there are none."""

    promql: str
    name: str
    file: str | None
    start: float
    end: float
    step: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "start": self.start,
            "end": self.end,
            "step": self.step,
            "error": self.error,
        }


class SeriesStore:
    """The ``prometheus/`` directory of one run: gathered files and their index.

    Written through ``redactor``: the index keys (expressions) are redacted like any text,
    so ``series`` looks an expression up as given and, failing that, redacted."""

    def __init__(self, run_dir: Path, *, redactor: Redactor | None = None) -> None:
        self.directory = RunDir(Path(run_dir)).prometheus
        self.redactor = redactor or RULES_ONLY
        self._index: dict[str, Gathered] | None = None
        self._loaded: dict[str, list[Series]] = {}
        self._legacy: dict[str, list[str]] = {}

    def index(self) -> dict[str, Gathered]:
        if self._index is None:
            self._index = self._read_index()
        return self._index

    def _read_index(self) -> dict[str, Gathered]:
        path = self.directory / INDEX
        if not path.is_file():
            return self._legacy_index()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ObserveError(f"cannot read {path}: {exc}") from exc
        entries = raw.get("series", {}) if isinstance(raw, dict) else {}
        out: dict[str, Gathered] = {}
        for promql, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            out[str(promql)] = Gathered(
                promql=str(promql),
                name=str(entry.get("name") or promql),
                file=entry.get("file"),
                start=float(entry.get("start", 0.0)),
                end=float(entry.get("end", 0.0)),
                step=float(entry.get("step", 1.0)),
                error=entry.get("error"),
            )
        return out

    def _legacy_index(self) -> dict[str, Gathered]:
        """Runs from before the index saved each check's series per phase window, with the
        expression in the file's metadata: those files, merged per expression."""
        if not self.directory.is_dir():
            return {}
        out: dict[str, Gathered] = {}
        for path in sorted(self.directory.glob("*.json")):
            try:
                meta, _ = load_series(path)
            except ObserveError:
                continue
            promql = meta.get("promql")
            if not isinstance(promql, str) or not promql:
                continue
            self._legacy.setdefault(promql, []).append(path.name)
            out.setdefault(
                promql,
                Gathered(
                    promql,
                    str(meta.get("check") or meta.get("name") or promql),
                    path.name,
                    0.0,
                    0.0,
                    float(meta.get("step", 1.0)),
                ),
            )
        return out

    def _write_index(self) -> None:
        payload = {"series": {k: v.to_json() for k, v in sorted(self.index().items())}}
        write_json(self.directory / INDEX, payload, self.redactor, indent=1)

    def add(
        self,
        name: str,
        promql: str,
        series: Sequence[Series],
        *,
        start: float,
        end: float,
        step: float,
    ) -> str:
        """Save one expression's series over ``[start, end]``; returns the file name."""
        index = self.index()
        taken = {g.file for g in index.values() if g.file and g.promql != promql}
        file = _unique(_slug(name), taken)
        save_series(
            self.directory / file,
            series,
            redactor=self.redactor,
            name=name,
            promql=promql,
            start=start,
            end=end,
            step=step,
        )
        index[promql] = Gathered(promql, name, file, start, end, step)
        self._loaded.pop(promql, None)
        self._write_index()
        return file

    def failed(self, name: str, promql: str, *, start: float, end: float, reason: str) -> None:
        """Record that an expression could not be gathered, and why."""
        self.index()[promql] = Gathered(promql, name, None, start, end, 1.0, reason)
        self._write_index()

    def series(self, promql: str) -> list[Series]:
        """Every series gathered for ``promql`` (SeriesNotGathered when there are none)."""
        index = self.index()
        entry = index.get(promql)
        if entry is None:
            promql = self.redactor.redact_text(promql)
            entry = index.get(promql)
        if entry is None:
            raise SeriesNotGathered(f"the series of {promql!r} were not gathered in this run")
        if entry.file is None:
            raise SeriesNotGathered(
                f"the series of {promql!r} could not be gathered: {entry.error}"
            )
        if promql not in self._loaded:
            files = self._legacy.get(promql) or [entry.file]
            merged: dict[tuple[tuple[str, str], ...], dict[float, float]] = {}
            for file in files:
                _, series = load_series(self.directory / file)
                for one in series:
                    merged.setdefault(tuple(sorted(one.labels.items())), {}).update(one.points)
            self._loaded[promql] = [
                Series(dict(labels), sorted(points.items())) for labels, points in merged.items()
            ]
        return self._loaded[promql]


class RecordedPrometheus:
    """A ``PrometheusSource`` that answers from a run directory's gathered series."""

    def __init__(self, run_dir: Path) -> None:
        self.store = SeriesStore(run_dir)
        self._run_dir = Path(run_dir)

    @property
    def endpoint(self) -> str:
        return f"the series gathered in {self._run_dir}"

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        out: list[Series] = []
        for s in self.store.series(promql):
            points: list[tuple[float, float]] = []
            for t, v in s.points:
                # A coarser step than gathered keeps one point per step, as Prometheus would.
                if start <= t <= end and (not points or t >= points[-1][0] + step - 1e-6):
                    points.append((t, v))
            if points:
                out.append(Series(labels=s.labels, points=points))
        return out

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        out: list[Series] = []
        for s in self.store.series(promql):
            points = [p for p in s.points if at is None or p[0] <= at]
            if points:
                out.append(Series(labels=s.labels, points=[points[-1]]))
        return out

    def targets(self) -> list[Target]:
        return []

    def close(self) -> None:
        """Nothing to release (a ``PrometheusSource`` may be closed)."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "series"


def _unique(base: str, taken: set[str]) -> str:
    name, n = f"{base}.json", 1
    while name in taken:
        n += 1
        name = f"{base}-{n}.json"
    return name
