"""The run directory's file names: the one place that spells them.

<run dir>/
  experiment.yaml     the resolved experiment (profile and --set applied)
  journal.json        the run's record of truth (rundir/journal.py)
  latency.hlog        HdrHistogram interval log, one histogram per second per endpoint
  load.jsonl          counts by outcome per second per endpoint
  load.json           load metadata (t0, workers, endpoints, totals)
  trace_ids.jsonl     trace ids of failed, slow and sampled requests
  writes.jsonl        acknowledged writes (for the read-back)
  readback.json       what the read-back of acknowledged writes found
  evidence.json       what was gathered after the run, per source, and what was not
  prometheus/         series gathered from Prometheus (one file per expression)
  traces/             traces fetched from the trace backend (OTLP JSON) and index.json
  logs/               run.log and each load worker's log
  report.html, junit.xml, summary.md
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

EXPERIMENT: Final = "experiment.yaml"
JOURNAL: Final = "journal.json"
LATENCY: Final = "latency.hlog"
LOAD_LINES: Final = "load.jsonl"
LOAD_META: Final = "load.json"
TRACE_IDS: Final = "trace_ids.jsonl"
WRITES: Final = "writes.jsonl"
READBACK: Final = "readback.json"
EVIDENCE: Final = "evidence.json"
PROMETHEUS: Final = "prometheus"
TRACES: Final = "traces"
LOGS: Final = "logs"
RUN_LOG: Final = "run.log"
REPORT_HTML: Final = "report.html"
JUNIT: Final = "junit.xml"
SUMMARY: Final = "summary.md"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path

    @property
    def experiment(self) -> Path:
        return self.path / EXPERIMENT

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL

    @property
    def latency(self) -> Path:
        return self.path / LATENCY

    @property
    def load_lines(self) -> Path:
        return self.path / LOAD_LINES

    @property
    def load_meta(self) -> Path:
        return self.path / LOAD_META

    @property
    def trace_ids(self) -> Path:
        return self.path / TRACE_IDS

    @property
    def writes(self) -> Path:
        return self.path / WRITES

    @property
    def readback(self) -> Path:
        return self.path / READBACK

    @property
    def evidence(self) -> Path:
        return self.path / EVIDENCE

    @property
    def prometheus(self) -> Path:
        return self.path / PROMETHEUS

    @property
    def traces(self) -> Path:
        return self.path / TRACES

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @property
    def run_log(self) -> Path:
        return self.logs / RUN_LOG

    def worker_log(self, index: int) -> Path:
        return self.logs / f"load-worker-{index}.log"

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def junit(self) -> Path:
        return self.path / JUNIT

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    def create(self) -> RunDir:
        """Make the directory and its ``logs/`` (existing ones are kept)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        return self


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader (a CI
    upload, a browser, the next analysis) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
