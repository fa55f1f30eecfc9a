"""The session report: recovery measured per fault window, notes beside the windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from resilience.analysis.data import MemoryLoadView
from resilience.gameday.report import measure, report_html, summary_markdown, write_session_reports
from resilience.histogram import new_histogram


def _hist(latency_ms: float, n: int) -> HdrHistogram:
    h = new_histogram()
    for _ in range(n):
        h.record_value(int(latency_ms * 1000))
    return h


def view(profile: dict[int, tuple[float, int, int]]) -> MemoryLoadView:
    """profile[second] = (latency ms, ok, errors) for one endpoint."""
    v = MemoryLoadView()
    for second, (latency, ok, errors) in profile.items():
        v.add("GET /x", second, _hist(latency, ok + errors), {"ok": ok, "5xx": errors})
    return v


def journal(
    faults: list[tuple[float, float | None]], notes: list[dict[str, Any]], end: float
) -> dict[str, Any]:
    return {
        "experiment": "t",
        "status": "passed",
        "warmup": 0.0,
        "faults": [
            {"index": i, "proxy": "db", "type": "hang", "applied_at": a, "healed_at": h}
            for i, (a, h) in enumerate(faults)
        ],
        "notes": notes,
        "phases": [{"name": "baseline", "start": 0.0, "end": end}],
        "timeline": [{"t": 1.0, "kind": "session", "text": "session started: 10 users"}],
    }


def note(id_: int, kind: str, t: float, text: str) -> dict[str, Any]:
    return {"id": id_, "kind": kind, "t": t, "text": text, "author": "ada"}


def test_each_window_gets_its_own_recovery_and_notes() -> None:
    """Two faults: each window's recovery is measured against the clean stretch before it;
    hypotheses go to the next window, observations to the window they were written in."""
    profile = dict.fromkeys(range(60), (20.0, 10, 0))
    profile.update(dict.fromkeys(range(10, 20), (3000.0, 2, 8)))  # fault 1, healed at 20
    profile.update(dict.fromkeys(range(20, 23), (900.0, 5, 5)))  # 3 s to recover
    profile.update(dict.fromkeys(range(35, 45), (3000.0, 0, 10)))  # fault 2, healed at 45
    notes = [
        note(1, "hypothesis", 5.0, "back within 5 s"),
        note(2, "observation", 12.0, "catalog too"),
        note(3, "hypothesis", 30.0, "second one is fine"),
    ]
    groups = measure(journal([(10.0, 20.0), (35.0, 45.0)], notes, 60.0), view(profile))
    assert [(g.start, g.end) for g in groups] == [(10.0, 20.0), (35.0, 45.0)]
    first, second = groups
    assert first.recovered is True and first.recovery_s == 3.0
    assert second.recovered is True and second.recovery_s == 0.0
    assert second.baseline is not None and (second.baseline.start, second.baseline.end) == (
        28.0,
        35.0,
    )
    assert [n["id"] for n in first.hypotheses] == [1] and [n["id"] for n in first.observations] == [
        2
    ]
    assert [n["id"] for n in second.hypotheses] == [3]
    row = first.endpoints[0]
    assert row["baseline_error_rate"] == 0.0 and row["fault_error_rate"] == 0.8
    markdown = summary_markdown(journal([(10.0, 20.0)], notes, 60.0), groups[:1])
    assert (
        "recovered 3.0 s after the heal" in markdown
        and "Hypothesis (ada, t=5 s): back within 5 s" in markdown
    )


def test_no_traffic_after_the_heal_is_not_called_a_recovery() -> None:
    """Seconds with no requests after the heal (all still in flight at the end) are no
    evidence of recovery: the window says so instead of a recovery time."""
    profile = dict.fromkeys(range(10), (20.0, 10, 0))
    profile.update(dict.fromkeys(range(10, 20), (3000.0, 0, 10)))
    groups = measure(journal([(10.0, 20.0)], [], 40.0), view(profile))
    assert groups[0].recovered is not True and groups[0].recovery_s is None


def test_a_window_never_healed_is_reported_so(tmp_path: Path) -> None:
    """A fault still active at the end (a killed session) has no recovery; the report says
    'never healed' and escapes what people wrote."""
    data = journal([(10.0, None)], [note(1, "observation", 12.0, "<script>x</script>")], 30.0)
    groups = measure(data, view(dict.fromkeys(range(30), (20.0, 10, 0))))
    assert groups[0].recovery_note == "never healed"
    html = report_html(data, groups, None)
    assert "never healed" in html and "<script>x" not in html and "&lt;script&gt;" in html


def test_reports_are_written_from_the_directory_alone(tmp_path: Path) -> None:
    """write_session_reports reads journal.json (no load data is fine) and adds the windows."""
    (tmp_path / "journal.json").write_text(json.dumps(journal([(10.0, 20.0)], [], 30.0)))
    files = write_session_reports(tmp_path)
    assert [f.name for f in files] == ["report.html", "summary.md"]
    written = json.loads((tmp_path / "journal.json").read_text())
    assert (
        written["windows"][0]["recovered"] is None
        and written["windows"][0]["note"] == "no load data"
    )


def test_session_reports_mask_secrets_and_stay_private(tmp_path: Path) -> None:
    """A note quoting a token or a session's secret value reaches neither the journal nor the
    reports; the three files are 0600 whatever the process umask."""
    import os
    import stat

    from resilience.redact import Redactor

    text = "saw Authorization: Bearer b3arer-t0ken and lit3ral-value at t=12"
    (tmp_path / "journal.json").write_text(
        json.dumps(journal([(10.0, 20.0)], [note(1, "observation", 12.0, text)], 30.0))
    )
    previous = os.umask(0o022)
    try:
        files = write_session_reports(tmp_path, redactor=Redactor(["lit3ral-value"]))
    finally:
        os.umask(previous)
    for path in [*files, tmp_path / "journal.json"]:
        content = path.read_text(encoding="utf-8")
        assert "b3arer-t0ken" not in content and "lit3ral-value" not in content, path.name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
