"""The run directory's writers: every file goes through the run's Redactor, and every file and
directory they create is private (0600/0700 unless RESILIENCE_RUN_UMASK says otherwise)."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from resilience.experiment import parse_experiment
from resilience.histogram import Histogram
from resilience.observe import parse_otlp_json
from resilience.observe.prometheus import Series
from resilience.observe.traces import TraceCollection
from resilience.redact import RUN_UMASK_ENV, Redactor
from resilience.report import write_reports
from resilience.report.html import HOVER_SCRIPT
from resilience.rundir.evidence import Evidence, SourceEvidence
from resilience.rundir.journal import Journal, mark_abandoned
from resilience.rundir.layout import (
    RunDir,
    make_dirs,
    open_private,
    redact_file,
    write_experiment,
    write_json,
    write_text,
)
from resilience.rundir.load import LoadData, LoadFiles
from resilience.rundir.readback import EndpointReadBack, ReadAnswer, ReadBack
from resilience.rundir.records import TraceRef, WriteAck
from resilience.rundir.series import SeriesStore
from resilience.rundir.traces import DirectoryTraceSource, save_collection

LITERAL = "lit3ral-s3cret-value"
"""A value from ${env:...}: no rule by name or shape would find it, only the literal."""
PASSWORD = "pa55word"
QUERY_TOKEN = "qt0k3n-abc"
BEARER = "b3arer-t0ken-xyz"
SECRETS = (LITERAL, PASSWORD, QUERY_TOKEN, BEARER)
TARGET = f"http://user:{PASSWORD}@127.0.0.1:18000"
ENDPOINT = f"GET /catalog/items?token={QUERY_TOKEN}"
SHOWN = "GET /catalog/items?token=***"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_764_081_000.0


@pytest.fixture
def shell_umask() -> Iterator[None]:
    """The process umask of a typical shell (022), restored afterwards."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _leaks(root: Path, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    """Every (file, secret) pair where the file holds the secret's bytes."""
    found = []
    for path in _files(root):
        raw = path.read_bytes()
        found.extend(f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in raw)
    return found


def _otlp(url: str) -> dict[str, Any]:
    attributes = [
        {"key": "http.url", "value": {"stringValue": url}},
        {"key": "http.request.header.authorization", "value": {"stringValue": f"Bearer {BEARER}"}},
        {"key": "note", "value": {"stringValue": f"saw {LITERAL}"}},
    ]
    span = {
        "traceId": TRACE_ID,
        "spanId": "00f067aa0ba902b7",
        "name": "GET /catalog/items",
        "kind": 2,
        "startTimeUnixNano": str(int(T0 * 1e9)),
        "endTimeUnixNano": str(int((T0 + 0.02) * 1e9)),
        "attributes": attributes,
        "status": {},
    }
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "gateway"}}]
                },
                "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}],
            }
        ]
    }


def _write_everything(run_dir: Path, redactor: Redactor | None) -> None:
    """One of each file a run writes, each holding the secrets."""
    layout = RunDir(run_dir).create()
    journal = Journal.start(
        layout.journal,
        experiment="demo",
        profile=None,
        t0=T0,
        redactor=redactor,
        target=TARGET,
    )
    journal.event("note", 1.0, detail=f"header Authorization: Bearer {BEARER}", value=LITERAL)
    journal.update(reason=f"{ENDPOINT} failed against {TARGET}")
    files = LoadFiles(run_dir, t0=T0, redactor=redactor)
    histogram = Histogram.from_values([20_000])
    files.write_second(0, {ENDPOINT: {"ok": 1}}, {ENDPOINT: histogram}, {})
    files.write_trace(
        TraceRef(0, TRACE_ID, "00f067aa0ba902b7", ENDPOINT, 0.1, 0.02, "ok", 200, "sampled")
    )
    files.write_ack(WriteAck(0, "id-1", ENDPOINT, 0.2, 201))
    files.write_meta({"t0": T0, "endpoints": [ENDPOINT], "target": TARGET})
    files.close()
    store = SeriesStore(run_dir, redactor=redactor)
    promql = f'sum(rate(http_requests_total{{handler="/x?token={QUERY_TOKEN}"}}[5s]))'
    store.add("requests", promql, [Series({"url": TARGET, "note": LITERAL}, [(T0, 1.0)])],
              start=T0, end=T0 + 1, step=1.0)  # fmt: skip
    trace = parse_otlp_json(_otlp(f"{TARGET}/catalog/items?token={QUERY_TOKEN}"), TRACE_ID)
    assert trace is not None
    collection = TraceCollection(traces={TRACE_ID: trace})
    save_collection(collection, {TRACE_ID: ENDPOINT}, layout.traces, redactor=redactor)
    readback = ReadBack(
        endpoints={
            ENDPOINT: EndpointReadBack(
                endpoint=ENDPOINT,
                list_path=f"/orders/ids?api_key={LITERAL}",
                listing=ReadAnswer(500, error=f"GET {TARGET}/orders/ids failed"),
                notes=[f"note with {LITERAL}"],
            )
        }
    )
    readback.save(run_dir, redactor=redactor)
    evidence = Evidence(
        prometheus=SourceEvidence(status="unavailable", endpoint=TARGET, reason=LITERAL)
    )
    evidence.save(run_dir, redactor=redactor)
    with open_private(layout.run_log, "a") as log:
        log.write("nothing to hide\n")


def test_every_writer_masks_the_run_secrets(tmp_path: Path) -> None:
    """Journal, load files, series, traces, read-back, evidence and reports hold none of the
    run's secrets (literal values included), and each reads back with the masked names."""
    run_dir = tmp_path / "run"
    redactor = Redactor([LITERAL, BEARER])
    _write_everything(run_dir, redactor)
    (run_dir / "experiment.yaml").write_text("name: demo\n", encoding="utf-8")
    write_reports(run_dir, redactor=redactor)
    assert _leaks(run_dir) == []
    assert HOVER_SCRIPT in (run_dir / "report.html").read_text(encoding="utf-8")
    journal = Journal.read(run_dir / "journal.json")
    assert journal.target == "http://user:***@127.0.0.1:18000"
    assert journal.events[0].detail == {"detail": "header Authorization: ***", "value": "***"}
    load = LoadData.read(run_dir)
    assert list(load.endpoints) == [SHOWN]
    assert load.counts(SHOWN, 0)["ok"] == 1
    assert [r.endpoint for r in load.traces] == [SHOWN] == [w.endpoint for w in load.writes]
    assert load.traces[0].trace_id == TRACE_ID
    store = SeriesStore(run_dir)
    promql = f'sum(rate(http_requests_total{{handler="/x?token={QUERY_TOKEN}"}}[5s]))'
    assert store.series(promql)[0].points == [(T0, 1.0)]
    source = DirectoryTraceSource(run_dir / "traces")
    trace = source.get(TRACE_ID)
    assert trace is not None and trace.spans[0].name == "GET /catalog/items"
    assert source.endpoints() == {TRACE_ID: SHOWN}
    readback = ReadBack.load(run_dir)
    assert readback is not None and list(readback.endpoints) == [SHOWN]
    evidence = Evidence.load(run_dir)
    assert evidence is not None and evidence.prometheus.reason == "***"


def test_writers_without_the_run_redactor_still_apply_the_rules(tmp_path: Path) -> None:
    """A writer given no redactor masks by name and shape (URL password, token parameter,
    Bearer credential); only the literal values need the run's redactor."""
    run_dir = tmp_path / "run"
    _write_everything(run_dir, None)
    assert _leaks(run_dir, (PASSWORD, QUERY_TOKEN, BEARER)) == []
    assert _leaks(run_dir, (LITERAL,)) != []


def test_the_journal_in_memory_keeps_what_the_run_knows(tmp_path: Path) -> None:
    """``data`` stays unmasked for the run itself; ``written()`` is the file's version."""
    journal = Journal.start(
        tmp_path / "journal.json", experiment="demo", profile=None, t0=T0, target=TARGET
    )
    assert journal.data.target == TARGET
    assert journal.written().target == "http://user:***@127.0.0.1:18000"
    assert journal.written() == Journal.read(tmp_path / "journal.json")


def test_a_swept_journal_is_rewritten_through_the_rules(tmp_path: Path) -> None:
    """mark_abandoned writes the journal back masked (a journal of an older version)."""
    path = tmp_path / "journal.json"
    path.write_text(json.dumps({"status": "running", "target": TARGET}), encoding="utf-8")
    assert mark_abandoned(path, "killed")
    assert json.loads(path.read_text(encoding="utf-8"))["target"].endswith(":***@127.0.0.1:18000")


@pytest.mark.usefixtures("shell_umask")
def test_files_and_directories_are_private_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a shell's umask 022, every writer creates files 0600 and directories 0700."""
    monkeypatch.delenv(RUN_UMASK_ENV, raising=False)
    run_dir = tmp_path / "run"
    _write_everything(run_dir, None)
    write_experiment(run_dir / "experiment.yaml", {"name": "demo"})
    write_reports(run_dir)
    write_text(run_dir / "logs" / "extra.log", "x\n")
    modes = {
        str(p.relative_to(run_dir)): stat.S_IMODE(p.stat().st_mode)
        for p in [run_dir, *run_dir.rglob("*")]
    }
    assert {k: oct(v) for k, v in modes.items() if v not in (0o600, 0o700)} == {}
    assert modes["traces"] == modes["prometheus"] == modes["logs"] == modes["."] == 0o700
    assert modes["report.html"] == modes["journal.json"] == modes["latency.hlog"] == 0o600


@pytest.mark.usefixtures("shell_umask")
@pytest.mark.parametrize(
    ("setting", "file_mode", "dir_mode"),
    [("027", 0o640, 0o750), ("022", 0o644, 0o755), ("inherit", 0o644, 0o755)],
)
def test_run_umask_overrides_the_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, file_mode: int, dir_mode: int
) -> None:
    """RESILIENCE_RUN_UMASK sets the writers' modes; ``inherit`` keeps the process's."""
    monkeypatch.setenv(RUN_UMASK_ENV, setting)
    directory = make_dirs(tmp_path / "run" / "traces")
    path = write_json(directory / "index.json", {"a": 1})
    assert stat.S_IMODE(directory.stat().st_mode) == dir_mode
    assert stat.S_IMODE(path.stat().st_mode) == file_mode


def test_a_leftover_temporary_file_loses_the_forbidden_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary file left world-readable by a killed writer is narrowed when reused."""
    monkeypatch.delenv(RUN_UMASK_ENV, raising=False)
    tmp = tmp_path / ".report.html.tmp"
    tmp.write_text("old", encoding="utf-8")
    tmp.chmod(0o666)
    path = write_text(tmp_path / "report.html", "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_redact_file_rewrites_a_log_and_keeps_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    """A worker log is masked in place; invalid UTF-8 and everything else survive."""
    path = tmp_path / "load-worker-0.log"
    path.write_bytes(
        b"Traceback: GET " + TARGET.encode() + b"/x \xff\xfe\n" + LITERAL.encode() + b"\nok\n"
    )
    assert redact_file(path, Redactor([LITERAL]))
    assert (
        path.read_bytes() == b"Traceback: GET http://user:***@127.0.0.1:18000/x \xff\xfe\n***\nok\n"
    )
    assert not redact_file(path, Redactor([LITERAL]))
    assert not redact_file(tmp_path / "missing.log")


EXPERIMENT = """\
name: demo
target:
  url: http://user:${env:PW}@127.0.0.1:18000
load:
  stages: [{duration: 10s, users: 1, spawn_rate: 1}]
  workload:
    requests:
      - path: /catalog/items?token=${env:QT}
        headers:
          Authorization: "Bearer ${env:TOKEN}"
          X-Api-Key: literal-api-key-1234
          X-Auth-Token: "pre-${env:TOKEN}"
          X-Trace-Note: "pre-${env:TOKEN}"
      - path: /catalog/items?api_key=plain-query-key
"""
ENV = {"PW": PASSWORD, "QT": QUERY_TOKEN, "TOKEN": BEARER}


def test_the_experiment_copy_keeps_references_and_masks_values(tmp_path: Path) -> None:
    """experiment.yaml keeps ``${env:NAME}`` where the rest of the string holds no secret,
    masks literal secrets, stays valid YAML and loads back with the masked endpoint names."""
    experiment = parse_experiment(textwrap.dedent(EXPERIMENT), environ=ENV)
    redactor = Redactor(experiment.secret_values())
    path = write_experiment(tmp_path / "experiment.yaml", experiment.to_data(), redactor)
    text = path.read_text(encoding="utf-8")
    assert _leaks(tmp_path, (*SECRETS, "literal-api-key-1234", "plain-query-key")) == []
    data = yaml.safe_load(text)
    requests = data["load"]["workload"]["requests"]
    assert data["target"]["url"] == "http://user:${env:PW}@127.0.0.1:18000"
    assert requests[0]["path"] == "/catalog/items?token=${env:QT}"
    assert requests[0]["headers"] == {
        "Authorization": "Bearer ${env:TOKEN}",
        "X-Api-Key": "***",
        "X-Auth-Token": "***",
        "X-Trace-Note": "pre-${env:TOKEN}",
    }
    assert requests[0]["name"] == SHOWN
    assert requests[1]["path"] == "/catalog/items?api_key=***"
    again = parse_experiment(text, environ=ENV)
    assert again.endpoints() == [SHOWN, "GET /catalog/items?api_key=***"]
    assert (
        again.target is not None and again.target.url == f"http://user:{PASSWORD}@127.0.0.1:18000"
    )
