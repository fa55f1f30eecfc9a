"""Everything the reports read from a run directory, read once and translated at the door.

A report must be rebuildable from the run directory alone. The files that define the run
(``journal.json``, ``experiment.yaml``, and the load data when there is any) are required
to be readable: a missing or corrupt one is an ``ExperimentError`` naming it. Evidence
files (``prometheus/*.json``, ``traces/*.json``) are read on demand, only those a check or
finding points at, and tolerantly: a bad file is logged, listed in ``RunData.problems``
and shown in the report, and never hides the rest of the evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from resilience.errors import ErrorLocation, ExperimentError, LoadError, ObserveError
from resilience.observe.prometheus import Series
from resilience.observe.spans import Trace
from resilience.rundir.evidence import Evidence
from resilience.rundir.journal import Journal, JournalData
from resilience.rundir.layout import RunDir
from resilience.rundir.load import LoadView
from resilience.rundir.series import load_series
from resilience.rundir.traces import DirectoryTraceSource
from resilience.vocabulary import Phase, phases_from_faults

logger = logging.getLogger(__name__)

# Prometheus stamps points in Unix seconds; anything this large is wall time, not clock time.
_WALL_CLOCK_FLOOR = 1e8


@dataclass(frozen=True)
class SeriesFile:
    """A file under ``prometheus/``: its name and query, and its series on the experiment clock."""

    file: str
    name: str
    promql: str
    series: Sequence[Series]


@dataclass
class RunData:
    """A run directory, read: the journal, the resolved experiment, load data and evidence."""

    run_dir: Path
    journal: JournalData
    experiment_text: str
    load: LoadView | None
    problems: list[str] = field(default_factory=list)
    _series: dict[str, SeriesFile | None] = field(default_factory=dict, init=False, repr=False)
    _traces: dict[str, Trace | None] = field(default_factory=dict, init=False, repr=False)
    _evidence: Evidence | None = field(default=None, init=False, repr=False)
    _evidence_read: bool = field(default=False, init=False, repr=False)

    @property
    def layout(self) -> RunDir:
        return RunDir(self.run_dir)

    def series_for(self, ref: Any) -> SeriesFile | None:
        """The series a check or finding points at: a file name (``x``, ``x.json``,
        ``prometheus/x.json``), or a list of ``{file, promql, labels}`` pointers whose
        series (those with the given labels) are drawn together."""
        if not ref:
            return None
        if isinstance(ref, list):
            return self._combined([r for r in ref if isinstance(r, dict)])
        return self._file(str(ref))

    def _file(self, ref: str) -> SeriesFile | None:
        name = Path(ref).name
        if not name.endswith(".json"):
            name += ".json"
        if name not in self._series:
            self._series[name] = self._read_series(self.layout.prometheus / name)
        return self._series[name]

    def _combined(self, refs: list[dict[str, Any]]) -> SeriesFile | None:
        parts: list[SeriesFile] = []
        series: list[Series] = []
        for ref in refs:
            found = self._file(str(ref.get("file", "")))
            if found is None:
                continue
            parts.append(found)
            wanted = ref.get("labels") or {}
            for s in found.series:
                if all(s.labels.get(k) == v for k, v in wanted.items() if k != "__name__"):
                    name = s.labels.get("__name__") or found.name
                    series.append(Series({**s.labels, "__name__": name}, s.points))
        if not parts:
            return None
        return SeriesFile(
            file=", ".join(p.file for p in parts),
            name=" / ".join(p.name for p in parts),
            promql="; ".join(p.promql for p in parts),
            series=series,
        )

    def _read_series(self, path: Path) -> SeriesFile | None:
        if not path.is_file():
            return None
        try:
            meta, series = load_series(path)
        except (ObserveError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self._problem(f"prometheus/{path.name}: unreadable ({exc})")
            return None
        t0 = self.journal.t0
        return SeriesFile(
            file=path.name,
            name=str(meta.get("name") or path.stem),
            promql=str(meta.get("promql") or meta.get("query") or ""),
            series=[
                Series(
                    labels=s.labels,
                    points=[(t - t0 if t > _WALL_CLOCK_FLOOR else t, v) for t, v in s.points],
                )
                for s in series
            ],
        )

    def trace(self, trace_id: Any) -> Trace | None:
        """A saved trace by id (hex or base64), or None when it is not under ``traces/``."""
        key = str(trace_id)
        if key not in self._traces:
            try:
                self._traces[key] = DirectoryTraceSource(self.layout.traces).get(key)
            except ObserveError as exc:
                self._problem(f"traces/{key}.json: unreadable ({exc})")
                self._traces[key] = None
        return self._traces[key]

    @property
    def evidence(self) -> Evidence | None:
        """The evidence manifest (``evidence.json``), or None (older runs, or unreadable:
        then listed in ``problems``)."""
        if not self._evidence_read:
            self._evidence_read = True
            try:
                self._evidence = Evidence.load(self.run_dir)
            except ObserveError as exc:
                self._problem(f"evidence.json: unreadable ({exc})")
                self._evidence = None
        return self._evidence

    @property
    def trace_ui(self) -> str | None:
        """The trace UI's URL for one trace, ``{trace_id}`` to fill in, as the run recorded it
        in ``evidence.json`` (None when unknown: trace ids are then shown, not linked)."""
        evidence = self.evidence
        return evidence.trace_ui if evidence is not None else None

    @property
    def run_trace_id(self) -> str | None:
        """The id of the run's own trace (run, phases, faults), when it was exported."""
        evidence = self.evidence
        if evidence is None or evidence.client_spans is None:
            return None
        if evidence.client_spans.status not in ("gathered", "partial"):
            return None
        value = (evidence.client_spans.model_extra or {}).get("run_trace_id")
        return str(value) if value else None

    def _problem(self, note: str) -> None:
        logger.warning("skipping evidence %s", note)
        self.problems.append(note)

    @property
    def run_end(self) -> float:
        """Seconds on the experiment clock when the run ended (best available evidence)."""
        return run_end(self.journal, self.load)

    @property
    def phases(self) -> list[Phase]:
        return run_phases(self.journal, self.load)


def _invalid(path: Path, message: str, exc: BaseException | None = None) -> ExperimentError:
    detail = f"{message}: {exc}" if exc is not None else message
    return ExperimentError(detail, location=ErrorLocation(file=str(path)))


def read_journal(run_dir: Path) -> JournalData:
    path = RunDir(run_dir).journal
    if not run_dir.is_dir():
        raise _invalid(run_dir, "not a run directory (it does not exist)")
    if not path.is_file():
        raise _invalid(path, f"missing: {run_dir} is not a run directory without {path.name}")
    try:
        return Journal.read(path)
    except OSError as exc:
        raise _invalid(path, "cannot read the journal", exc) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(document)"
        raise _invalid(path, f"not a valid journal at {where}: {first.get('msg')}") from exc


def read_experiment_text(run_dir: Path) -> str:
    path = RunDir(run_dir).experiment
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise _invalid(
            path, "missing: the resolved experiment is part of every run directory"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(path, "cannot read the resolved experiment", exc) from exc
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _invalid(path, "not valid YAML", exc) from exc
    return text


def load_view(run_dir: Path) -> LoadView | None:
    """The run's per-second load data, or None when the run recorded none."""
    path = RunDir(run_dir).latency
    if not path.exists():
        return None
    from resilience.rundir.load import LoadData

    try:
        return LoadData.read(run_dir)
    except (LoadError, OSError, ValueError) as exc:
        raise _invalid(path, "cannot read the load data", exc) from exc


def read_run(run_dir: Path, *, load: LoadView | None = None, read_load: bool = True) -> RunData:
    """Read a run directory; ``load`` overrides the load data found there."""
    run_dir = Path(run_dir)
    journal = read_journal(run_dir)
    text = read_experiment_text(run_dir)
    if load is None and read_load:
        load = load_view(run_dir)
    return RunData(run_dir=run_dir, journal=journal, experiment_text=text, load=load)


def _seconds_since_t0(journal: JournalData, iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp() - journal.t0
    except ValueError:
        return None


def run_end(journal: JournalData, load: LoadView | None) -> float:
    """The end of the run on the experiment clock: ended_at, else the last evidence."""
    ended = _seconds_since_t0(journal, journal.ended_at)
    if ended is not None:
        return max(ended, 0.0)
    candidates = [0.0]
    if load is not None and load.seconds:
        candidates.append(float(load.seconds[-1] + 1))
    candidates.extend(p.end for p in journal.phases if p.end is not None)
    candidates.extend(p.start for p in journal.phases)
    for fault in journal.faults:
        candidates.extend(t for t in (fault.applied_at, fault.healed_at) if t is not None)
    candidates.extend(e.t for e in journal.events)
    return max(candidates)


def run_phases(journal: JournalData, load: LoadView | None) -> list[Phase]:
    """Phases as the journal recorded them; derived from the fault stamps if it recorded none."""
    end = run_end(journal, load)
    if journal.phases:
        return [
            Phase(p.name, p.start, p.end if p.end is not None else max(end, p.start))
            for p in journal.phases
        ]
    return phases_from_faults(journal.fault_windows(), start=0.0, end=end)
