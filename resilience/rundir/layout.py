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
  rig.jsonl           the rig's health per second: load workers' and host CPU, sources up/down
  prometheus/         series gathered from Prometheus (one file per expression)
  traces/             traces fetched from the trace backend (OTLP JSON) and index.json
  logs/               run.log and each load worker's log
  report.html, junit.xml, summary.md

Every file of a run directory is written here (this package), and every writer takes the
run's ``Redactor`` (``resilience.redact``; without one, ``RULES_ONLY``: the rules by name
and shape, no literal values): JSON is redacted as data before it is dumped, YAML as data
(``write_experiment``), free text (reports, logs) as text. Files are created ``0600`` and
directories ``0700`` (``RESILIENCE_RUN_UMASK`` overrides; see docs/security.md), whatever
the umask of the process that writes them (``resilience report`` and ``analyse`` too).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import yaml

from resilience.redact import Redactor, run_umask

EXPERIMENT: Final = "experiment.yaml"
JOURNAL: Final = "journal.json"
LATENCY: Final = "latency.hlog"
LOAD_LINES: Final = "load.jsonl"
LOAD_META: Final = "load.json"
TRACE_IDS: Final = "trace_ids.jsonl"
WRITES: Final = "writes.jsonl"
READBACK: Final = "readback.json"
EVIDENCE: Final = "evidence.json"
RIG: Final = "rig.jsonl"
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
    def rig(self) -> Path:
        return self.path / RIG

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
        """Make the directory and its ``logs/`` (existing ones are kept), private."""
        make_dirs(self.logs)
        return self

    def worker_logs(self) -> list[Path]:
        """The load workers' log files there are, in worker order."""
        found = self.logs.glob("load-worker-*.log")
        return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))


RULES_ONLY: Final = Redactor()
"""What a writer given no redactor applies: the rules by name and shape (Authorization,
URL passwords, ``token=`` parameters, ...), but no literal ``${env:NAME}`` values."""

# -- modes -------------------------------------------------------------------------------


def _modes() -> tuple[int, int] | None:
    """(file mode, directory mode) of the run policy; None when the umask is inherited."""
    mask = run_umask()
    return None if mask is None else (0o666 & ~mask, 0o777 & ~mask)


def make_dirs(path: Path) -> Path:
    """``path`` and its missing parents, each made private (0700 by default). An existing
    directory is left as it is (``tighten_tree`` at the end of a run narrows it)."""
    modes = _modes()
    if modes is None:
        path.mkdir(parents=True, exist_ok=True)
        return path
    missing = [path]
    while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
        missing.append(missing[-1].parent)
    for directory in reversed(missing):
        directory.mkdir(mode=modes[1], exist_ok=True)
    return path


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for ``open()``: a new file is created private (0600 by default); a
    leftover one loses the bits the policy forbids."""
    modes = _modes()
    fd = os.open(path, flags, 0o666 if modes is None else modes[0])
    if modes is not None:
        current = os.fstat(fd).st_mode & 0o777
        if current & ~modes[0]:
            os.fchmod(fd, current & modes[0])
    return fd


def open_private(path: Path, mode: str = "w") -> IO[str]:
    """A text file of the run directory opened for writing (``w`` or ``a``), private."""
    return open(path, mode, encoding="utf-8", opener=private_opener)


# -- writers -----------------------------------------------------------------------------


def write_atomic(path: Path, text: str, *, tmp: Path | None = None) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader (a CI
    upload, a browser, the next analysis) never sees half a file. The text is written as
    given: what may hold a secret goes through ``write_text`` or ``write_json``."""
    make_dirs(path.parent)
    tmp = tmp or path.with_name(f".{path.name}.tmp")
    with open_private(tmp) as handle:
        handle.write(text)
    tmp.replace(path)
    return path


def write_text(path: Path, text: str, redactor: Redactor | None = None) -> Path:
    """Free text (a report, a log) through ``redactor.redact_text``, atomically."""
    return write_atomic(path, (redactor or RULES_ONLY).redact_text(text))


def write_json(path: Path, data: object, redactor: Redactor | None = None, **dumps: Any) -> Path:
    """JSON data redacted as data (``redact_json``), then dumped (``json.dumps`` options in
    ``dumps``) with a final newline, atomically."""
    return write_atomic(path, to_json(data, redactor, **dumps) + "\n")


def to_json(data: object, redactor: Redactor | None = None, **dumps: Any) -> str:
    """``data`` redacted as data, as JSON text (what ``write_json`` writes)."""
    return json.dumps((redactor or RULES_ONLY).redact_json(data), **dumps)


def redact_file(path: Path, redactor: Redactor | None = None) -> bool:
    """Rewrite a text file through ``redact_text`` (a worker's log after it exited: what
    reached its stderr without logging, such as a traceback). Bytes that are not UTF-8 are
    kept as they are. True when something was masked; a missing file is skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    text = raw.decode("utf-8", errors="surrogateescape")
    redacted = (redactor or RULES_ONLY).redact_text(text)
    if redacted == text:
        return False
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb", opener=private_opener) as handle:
        handle.write(redacted.encode("utf-8", errors="surrogateescape"))
    tmp.replace(path)
    return True


# -- the experiment copy -----------------------------------------------------------------

# The experiment file's environment references (resilience/experiment/_env.py): a name, not
# a value, so the copy keeps them where nothing else in the string is secret.
_REFERENCE: Final = re.compile(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}")
_ONLY_A_SCHEME: Final = re.compile(r"\s*(?:(?:bearer|basic|token|digest)\s+)?[\s:;,./@_-]*", re.I)


def write_experiment(path: Path, data: Mapping[str, Any], redactor: Redactor | None = None) -> Path:
    """The resolved experiment (``Experiment.to_data()``) as YAML, redacted as data first.

    Never redacted as text: a bare ``***`` is a YAML alias. Strings holding ``${env:NAME}``
    references are kept as written when the rest of the string holds no secret (so
    ``Authorization: Bearer ${env:TOKEN}`` stays a reference, and the copy loads back
    with the same environment); the values the references resolved to never appear."""
    chosen = redactor or RULES_ONLY

    def keep(text: str, secret: bool) -> bool:
        if "${env:" not in text or _REFERENCE.search(text) is None:
            return False
        rest = _REFERENCE.sub("", text)
        if secret:
            return _ONLY_A_SCHEME.fullmatch(rest) is not None
        return chosen.redact_text(rest) == rest

    redacted = chosen.redact_json(data, keep=keep)
    text = yaml.safe_dump(redacted, sort_keys=False, allow_unicode=True, width=100)
    return write_atomic(path, text)
