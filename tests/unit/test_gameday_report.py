"""The session report: each fault window with the analysis's judgement (recovery, findings,
SLOs, endpoints) and the notes beside the windows, from the session directory alone."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from resilience.analysis.windows import analyse_windows
from resilience.cli import app
from resilience.gameday.report import report_html, windows_of, write_session_reports
from resilience.redact import Redactor
from resilience.testing.sample_session import write_sample_session


def judged_session(tmp_path: Path) -> Path:
    """The sample session as a session leaves it: its windows judged into the journal."""
    session = write_sample_session(tmp_path / "session")
    path = session / "journal.json"
    journal = json.loads(path.read_text())
    journal["windows"] = [v.to_record() for v in analyse_windows(session)]
    path.write_text(json.dumps(journal))
    return session


def test_each_window_shows_its_recovery_findings_and_notes(tmp_path: Path) -> None:
    """Window 0 recovered at once, window 1 in 5 s over its 3 s budget with a slow-recovery
    finding and a catalog SLO breach; hypotheses sit with the next window, the observation
    with the window it was written in; the journal records which notes went where."""
    session = judged_session(tmp_path)
    write_session_reports(session)
    html = (session / "report.html").read_text()
    first, second = html.split("id='window-1'")
    assert "#0 hang on postgres" in first and "Measured recovery: recovered 0.0 s" in first
    assert "Orders fail fast, catalog unaffected." in first
    assert "data-kind='slow_recovery'" not in first
    assert "recovered 5.0 s after the heal (budget 3.0 s) — over budget" in second
    assert "data-kind='slow_recovery'" in second and "Orders fail too." in second
    assert "SLO breached: fault GET /catalog error_rate" in second
    journal = json.loads((session / "journal.json").read_text())
    assert [(w["hypotheses"], w["observations"]) for w in journal["windows"]] == [
        ([0], []),
        ([1], [2]),
    ]
    summary = (session / "summary.md").read_text()
    assert "Hypothesis (Ada, t=5 s): Orders fail fast, catalog unaffected." in summary
    assert "**Findings:** 1 found (slow\\_recovery)" in summary.split("latency on catalog")[1]
    assert "| GET /orders | 0% | 100.00% |" in summary


def bare_journal(
    faults: list[tuple[float, float | None]], notes: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "experiment": "t",
        "status": "aborted",
        "started_at": "2026-12-02T20:00:00.000Z",
        "t0": 0.0,
        "load_end": 30.0,
        "faults": [
            {
                "index": i,
                "proxy": "db",
                "type": "hang",
                "scheduled_at": a,
                "scheduled_end": a,
                "applied_at": a,
                "healed_at": h,
            }
            for i, (a, h) in enumerate(faults)
        ],
        "notes": notes,
        "timeline": [{"t": 1.0, "kind": "session", "text": "session started: 10 users"}],
    }


def test_a_window_never_healed_or_judged_is_reported_so() -> None:
    """A session that could not be judged (no ``windows``) still shows its windows from the
    faults, says they were not judged, and escapes what people wrote."""
    note = {"id": 1, "kind": "observation", "t": 12.0, "text": "<script>x</script>", "author": "a"}
    data = bare_journal([(10.0, None)], [note])
    views = windows_of(data)
    assert [(v.start, v.end, v.judged) for v in views] == [(10.0, None, False)]
    html = report_html(data, views, None)
    assert "not judged" in html and "<script>x" not in html and "&lt;script&gt;" in html


def test_reports_are_written_from_the_directory_alone(tmp_path: Path) -> None:
    """write_session_reports reads journal.json (no load data is fine) and leaves an
    unjudged journal's windows alone."""
    (tmp_path / "journal.json").write_text(json.dumps(bare_journal([(10.0, 20.0)], [])))
    files = write_session_reports(tmp_path)
    assert [f.name for f in files] == ["report.html", "summary.md"]
    assert "windows" not in json.loads((tmp_path / "journal.json").read_text())
    assert "No load data" in (tmp_path / "report.html").read_text()


def test_resilience_analyse_rejudges_a_session_window_by_window(tmp_path: Path) -> None:
    """`resilience analyse SESSION --set ...` re-judges each window (a 10 s recovery budget
    clears window 1's slow recovery), rewrites the session report, keeps the session's
    status and exits 0; it never writes a run's reports over the session's."""
    session = judged_session(tmp_path)
    result = CliRunner().invoke(
        app,
        ["analyse", str(session), "--set", "slo.recovery.within=10s", "--json"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "gameday" and len(document["windows"]) == 2
    second = document["windows"][1]
    assert second["recovery"]["budget_seconds"] == 10.0
    assert "slow_recovery" not in {f["kind"] for f in second["findings"] if f["status"] == "found"}
    journal = json.loads((session / "journal.json").read_text())
    assert journal["status"] == "passed" and journal["windows"][1]["recovery"]["seconds"] == 5.0
    html = (session / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "Game day: sample-gameday" in html
    assert not (session / "junit.xml").exists()


def test_session_reports_mask_secrets_and_stay_private(tmp_path: Path) -> None:
    """A note quoting a token or a session's secret value reaches neither the journal nor the
    reports; the three files are 0600 whatever the process umask."""
    text = "saw Authorization: Bearer b3arer-t0ken and lit3ral-value at t=12"
    observation = {"id": 1, "kind": "observation", "t": 12.0, "text": text, "author": "a"}
    session = judged_session(tmp_path)
    path = session / "journal.json"
    journal = json.loads(path.read_text())
    journal["notes"].append(observation)
    path.write_text(json.dumps(journal))
    previous = os.umask(0o022)
    try:
        files = write_session_reports(session, redactor=Redactor(["lit3ral-value"]))
    finally:
        os.umask(previous)
    for written in [*files, path]:
        content = written.read_text(encoding="utf-8")
        assert "b3arer-t0ken" not in content and "lit3ral-value" not in content, written.name
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, written.name
