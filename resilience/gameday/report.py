"""The session report: what was injected, what people expected and saw, what was measured.

Built from the session directory alone, like a run's reports. The judgement of each fault
window is the analysis's (``resilience.analysis.windows``, written into the journal's
``windows`` when the session ended): its measured recovery, the detectors' findings
(cascade, timeouts, pool exhaustion, retries, slow recovery, data loss), its SLOs, and per
endpoint the error rate and p95 before and during it, over requests placed by the session's
phase marks. Each hypothesis is shown beside the window that followed it (the next fault
applied after it was written), each observation beside the window it was written in. The
HTML report puts the timeline and the notes beside inline SVG charts; ``summary.md`` is
the same for a post-mortem document. The words and numbers are the run report's
(``resilience.report.summary``): a window reads like a run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from resilience.analysis.data import second_series
from resilience.analysis.windows import WindowVerdict, analyse_windows, session_windows
from resilience.experiment.loader import load_experiment
from resilience.experiment.model import Experiment
from resilience.redact import Redactor
from resilience.report.markdown import md
from resilience.report.story import evidence_lines
from resilience.report.summary import (
    finding_is_failing,
    finding_order,
    fmt_ms,
    fmt_ratio,
    fmt_seconds,
    slo_message,
)
from resilience.report.svg import PALETTE, Line, LineChart, Window, line_chart
from resilience.rundir.journal import FindingRecord, Journal, JournalData, SloRecord
from resilience.rundir.layout import RunDir, write_json, write_text
from resilience.rundir.load import LoadData, LoadView
from resilience.rundir.reader import read_journal

logger = logging.getLogger(__name__)

SUMMARY = "summary.md"
REPORT = "report.html"
SHOWN_FINDINGS = ("found", "inconclusive")
"""Findings shown per window; the held and not evaluated ones are counted."""


@dataclass
class WindowView:
    """One fault window as the report shows it: the analysis's record and the notes."""

    record: dict[str, Any]
    hypotheses: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.record["label"])

    @property
    def start(self) -> float:
        return float(self.record["start"])

    @property
    def end(self) -> float | None:
        end = self.record.get("end")
        return None if end is None else float(end)

    @property
    def recovery(self) -> dict[str, Any]:
        recovery: dict[str, Any] = self.record.get("recovery") or {}
        return recovery

    @property
    def recovery_s(self) -> float | None:
        seconds = self.recovery.get("seconds")
        return None if seconds is None else float(seconds)

    @property
    def findings(self) -> list[FindingRecord]:
        return finding_order([FindingRecord(**f) for f in self.record.get("findings") or []])

    @property
    def breaches(self) -> list[SloRecord]:
        return [SloRecord(**r) for r in self.record.get("slo") or [] if r.get("passed") is False]

    @property
    def endpoints(self) -> list[dict[str, Any]]:
        return list(self.record.get("endpoints") or [])

    @property
    def judged(self) -> bool:
        return "status" in self.record


def windows_of(journal: dict[str, Any]) -> list[WindowView]:
    """The session's windows with their notes: as judged, or (a session that could not be
    judged) as the faults make them, each saying it was not judged."""
    records = journal.get("windows")
    if records is None:
        data = JournalData.model_validate(journal)
        records = [
            {
                "index": w.index,
                "label": w.label,
                "start": w.start,
                "end": w.end,
                "faults": [f.index for f in w.faults],
            }
            for w in session_windows(data.fault_windows(), _end(journal))
        ]
    views = [WindowView(r) for r in records]
    end = _end(journal)
    for note in journal.get("notes") or []:
        if note["kind"] == "hypothesis":
            after = [v for v in views if v.start >= note["t"]]
            if after:
                after[0].hypotheses.append(note)
        elif note["kind"] == "observation":
            inside = [
                v for v in views if v.start <= note["t"] <= (v.end if v.end is not None else end)
            ]
            if inside:
                inside[0].observations.append(note)
    return views


def _end(journal: dict[str, Any]) -> float:
    """The session's end on its clock: when the load stopped, else the last evidence."""
    load_end = journal.get("load_end")
    if isinstance(load_end, int | float):
        return float(load_end)
    events = journal.get("events") or []
    phases = journal.get("phases") or []
    ends = [p.get("end") or 0.0 for p in phases] + [e.get("t", 0.0) for e in events]
    return float(max(ends, default=0.0))


def recovery_text(view: WindowView) -> str:
    """The window's measured recovery in words, with its budget."""
    if not view.judged:
        return "not judged (the session ended before its evidence could be read)"
    if view.end is None:
        return "never healed"
    r = view.recovery
    budget = r.get("budget_seconds")
    budget_text = f" (budget {fmt_seconds(budget)})" if budget is not None else ""
    if r.get("recovered"):
        seconds = r.get("seconds")
        over = budget is not None and seconds is not None and seconds > budget
        return f"recovered {fmt_seconds(seconds)} after the heal{budget_text}" + (
            " — over budget" if over else ""
        )
    note = f" ({r['note']})" if r.get("note") else ""
    if r.get("recovered") is False:
        return f"did not recover before the next fault or the end{budget_text}{note}"
    return (r.get("note") or "not measured") + budget_text


def findings_summary(view: WindowView) -> str:
    """``2 found (cascading_failure, slow_recovery), 1 inconclusive, 3 held or not evaluated``"""
    findings = view.findings
    found = [f.kind for f in findings if f.status == "found"]
    unsure = sum(1 for f in findings if f.status == "inconclusive")
    rest = len(findings) - len(found) - unsure
    parts = [f"{len(found)} found" + (f" ({', '.join(found)})" if found else "")]
    if unsure:
        parts.append(f"{unsure} inconclusive")
    if rest:
        parts.append(f"{rest} held or not evaluated")
    return ", ".join(parts)


def _flags(finding: FindingRecord) -> str:
    flags = [finding.severity]
    if finding_is_failing(finding):
        flags.append("would fail a run")
    if finding.status != "found":
        flags.append(finding.status.replace("_", " "))
    return ", ".join(flags)


# ------------------------------------------------------------------------------ markdown


def _window_markdown(view: WindowView) -> list[str]:
    end = "never healed" if view.end is None else f"{view.end:.1f} s"
    lines = [
        f"### {md(view.label)}: {view.start:.1f} s to {end}",
        "",
        f"**Measured recovery:** {md(recovery_text(view))}.",
        "",
    ]
    for note in view.hypotheses:
        lines.append(
            f"- Hypothesis ({md(note['author'])}, t={note['t']:.0f} s): {md(note['text'])}"
        )
    for note in view.observations:
        lines.append(
            f"- Observation ({md(note['author'])}, t={note['t']:.0f} s): {md(note['text'])}"
        )
    if view.judged:
        lines += ["", f"**Findings:** {md(findings_summary(view))}", ""]
        for finding in view.findings:
            if finding.status in SHOWN_FINDINGS:
                lines.append(
                    f"- **{md(finding.kind)}** ({md(_flags(finding))}): {md(finding.summary)}"
                )
        for slo in view.breaches:
            lines.append(f"- SLO breached: {md(slo_message(slo))}")
    if view.endpoints:
        lines += [
            "",
            "| endpoint | errors before | errors during | p95 before | p95 during |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in view.endpoints:
            lines.append(
                f"| {md(row['endpoint'])} | {fmt_ratio(row['baseline_error_rate'])} | "
                f"{fmt_ratio(row['fault_error_rate'])} | {fmt_ms(row['baseline_p95_ms'])} | "
                f"{fmt_ms(row['fault_p95_ms'])} |"
            )
    lines.append("")
    return lines


def summary_markdown(journal: dict[str, Any], views: list[WindowView]) -> str:
    lines = [
        f"# Game day: {md(journal.get('experiment'))}",
        "",
        f"- started {journal.get('started_at')}, ended {journal.get('ended_at')}"
        f" ({_end(journal):.0f} s on the session clock)",
        f"- target {md(journal.get('target'))}"
        + (f" (shop {journal.get('shop_mode')})" if journal.get("shop_mode") else ""),
        f"- status {journal.get('status')}: {md(journal.get('reason'))}",
    ]
    people = journal.get("people") or []
    if people:
        lines.append("- people: " + ", ".join(f"{md(p['name'])} ({p['role']})" for p in people))
    lines += ["", "## Fault windows", ""]
    if not views:
        lines.append("No fault was injected.")
    for view in views:
        lines += _window_markdown(view)
    for kind, title in (("decision", "Decisions"), ("action", "Action items")):
        notes = [n for n in journal.get("notes") or [] if n["kind"] == kind]
        if notes:
            lines += [f"## {title}", ""]
            lines += [f"- {md(n['text'])} ({md(n['author'])}, t={n['t']:.0f} s)" for n in notes]
            lines.append("")
    lines += ["## Timeline", ""]
    for entry in journal.get("timeline") or []:
        lines.append(f"- t={entry['t']:.1f} s [{entry['kind']}] {md(entry['text'])}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- html


def _charts(data: LoadView | None, views: list[WindowView], end: float) -> str:
    if data is None or not data.seconds:
        return "<p>No load data.</p>"
    seconds = list(range(0, math.ceil(end)))  # the last whole second the load ran in
    windows = [Window(v.start, v.end if v.end is not None else end, v.label) for v in views]
    lines_rps, lines_err, lines_p95 = [], [], []
    for i, endpoint in enumerate(data.endpoints):
        series = second_series(data, endpoint, seconds)
        color = PALETTE[i % len(PALETTE)]
        xs = series.seconds
        lines_rps.append(
            Line(endpoint, color, list(zip(xs, map(float, series.requests), strict=True)))
        )
        lines_err.append(
            Line(
                endpoint,
                color,
                [
                    (x, (e / n * 100.0) if n else None)
                    for x, e, n in zip(xs, series.errors, series.requests, strict=True)
                ],
            )
        )
        lines_p95.append(Line(endpoint, color, list(zip(xs, series.p95, strict=True))))
    out = []
    for chart_id, title, unit, lines in (
        ("session-rps", "requests per second (by send time)", "req/s", lines_rps),
        ("session-errors", "error rate", "%", lines_err),
        ("session-p95", "p95 latency", "ms", lines_p95),
    ):
        out.append(
            line_chart(
                LineChart(
                    chart_id,
                    title,
                    unit,
                    (0.0, max(end, 1.0)),
                    lines,
                    windows=windows,
                    width=900,
                    height=220,
                    x_label="seconds on the session clock",
                )
            )
        )
    return "\n".join(out)


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222}
header{background:#1f2937;color:#fff;padding:12px 20px}
h1{margin:0;font-size:20px} h2{font-size:16px;margin:18px 0 6px} h3{font-size:14px;margin:12px 0 4px}
.layout{display:grid;grid-template-columns:minmax(0,920px) minmax(280px,1fr);gap:20px;padding:12px 20px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}
.fault-window{fill:#d62728;fill-opacity:.12} .grid{stroke:#e5e5e5} .tick,.legend,.axis-label{font-size:11px;fill:#444}
.window{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin-bottom:10px}
.hyp{background:#eef6ff;padding:4px 8px;border-left:3px solid #2563eb;margin:4px 0}
.obs{background:#f0fdf4;padding:4px 8px;border-left:3px solid #16a34a;margin:4px 0}
.measured{font-weight:bold} ol{padding-left:18px} .t{color:#666;font-variant-numeric:tabular-nums}
.kind{font-size:11px;text-transform:uppercase;color:#555}
.finding{margin:4px 0;padding:4px 8px;border-left:3px solid #999} .finding.found{border-color:#d62728}
.finding.inconclusive{border-color:#d97706} .finding ul{margin:2px 0;padding-left:18px;color:#444}
.muted{color:#666}
"""


def _window_html(i: int, view: WindowView) -> list[str]:
    e = escape
    end_text = "never healed" if view.end is None else f"{view.end:.1f} s"
    recovery = "" if view.recovery_s is None else f"{view.recovery_s:g}"
    parts = [
        f"<div class='window' id='window-{i}'><h3>{e(view.label)}: "
        f"{view.start:.1f} s to {e(end_text)}</h3>",
        f"<div class='measured' data-recovery='{recovery}'>"
        f"Measured recovery: {e(recovery_text(view))}</div>",
    ]
    for note in view.hypotheses:
        parts.append(
            f"<div class='hyp'>Hypothesis ({e(note['author'])}, t={note['t']:.0f} s): "
            f"{e(note['text'])}</div>"
        )
    for note in view.observations:
        parts.append(
            f"<div class='obs'>Observation ({e(note['author'])}, t={note['t']:.0f} s): "
            f"{e(note['text'])}</div>"
        )
    if view.judged:
        parts.append(f"<div class='findings'><b>Findings:</b> {e(findings_summary(view))}")
        for finding in view.findings:
            if finding.status not in SHOWN_FINDINGS:
                continue
            details = "".join(f"<li>{e(line)}</li>" for line in evidence_lines(finding)[:6])
            parts.append(
                f"<div class='finding {e(finding.status)}' data-kind='{e(finding.kind)}'>"
                f"<b>{e(finding.kind)}</b> <span class='muted'>({e(_flags(finding))})</span> "
                f"{e(finding.summary)}" + (f"<ul>{details}</ul>" if details else "") + "</div>"
            )
        for slo in view.breaches:
            parts.append(f"<div class='finding found'>SLO breached: {e(slo_message(slo))}</div>")
        parts.append("</div>")
    if view.endpoints:
        parts.append(
            "<table><tr><th>endpoint</th><th>errors before</th><th>errors during</th>"
            "<th>p95 before</th><th>p95 during</th></tr>"
        )
        for row in view.endpoints:
            parts.append(
                f"<tr><td>{e(row['endpoint'])}</td><td>{fmt_ratio(row['baseline_error_rate'])}</td>"
                f"<td>{fmt_ratio(row['fault_error_rate'])}</td><td>{fmt_ms(row['baseline_p95_ms'])}</td>"
                f"<td>{fmt_ms(row['fault_p95_ms'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</div>")
    return parts


def report_html(journal: dict[str, Any], views: list[WindowView], data: LoadView | None) -> str:
    end = _end(journal)
    e = escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>Game day: {e(str(journal.get('experiment')))}</title><style>{CSS}</style></head><body>",
        f"<header><h1>Game day: {e(str(journal.get('experiment')))}</h1>",
        f"<div>{e(str(journal.get('started_at')))} to {e(str(journal.get('ended_at')))} · "
        f"{end:.0f} s · target {e(str(journal.get('target')))}"
        + (f" (shop {e(str(journal.get('shop_mode')))})" if journal.get("shop_mode") else "")
        + f" · {e(str(journal.get('status')))}: {e(str(journal.get('reason')))}</div></header>",
        "<div class='layout'><main>",
        _charts(data, views, end),
        "<h2>Fault windows</h2>",
    ]
    if not views:
        parts.append("<p>No fault was injected.</p>")
    for i, view in enumerate(views):
        parts += _window_html(i, view)
    for kind, title in (("decision", "Decisions"), ("action", "Action items")):
        notes = [n for n in journal.get("notes") or [] if n["kind"] == kind]
        if notes:
            parts.append(f"<h2>{title}</h2><ul>")
            parts += [
                f"<li>{e(n['text'])} <span class='t'>({e(n['author'])}, t={n['t']:.0f} s)</span></li>"
                for n in notes
            ]
            parts.append("</ul>")
    parts.append("</main><aside><h2>Timeline</h2><ol id='timeline'>")
    for entry in journal.get("timeline") or []:
        parts.append(
            f"<li data-kind='{e(entry['kind'])}'><span class='t'>t={entry['t']:.1f} s</span> "
            f"<span class='kind'>{e(entry['kind'])}</span> {e(entry['text'])}</li>"
        )
    parts.append("</ol><h2>People</h2><ul>")
    parts += [f"<li>{e(p['name'])} ({e(p['role'])})</li>" for p in journal.get("people") or []]
    parts.append("</ul><h2>Notes</h2><ol id='notes'>")
    for note in journal.get("notes") or []:
        parts.append(
            f"<li data-kind='{e(note['kind'])}'><span class='t'>t={note['t']:.0f} s</span> "
            f"<span class='kind'>{e(note['kind'])}</span> {e(note['text'])} — {e(note['author'])}</li>"
        )
    parts.append("</ol></aside></div></body></html>")
    return "\n".join(parts)


def judge_session(
    session_dir: Path,
    *,
    journal: Journal | None = None,
    experiment: Experiment | None = None,
    say: Callable[[str], None] = lambda _m: None,
    redactor: Redactor | None = None,
) -> list[WindowVerdict]:
    """Judge every fault window of ``session_dir`` from its files and record them in the
    journal's ``windows`` (through ``journal``, the session's own while it ends; else the
    file's). ``experiment`` replaces the recorded one (``resilience analyse --set``)."""
    verdicts = analyse_windows(session_dir, experiment=experiment, say=say)
    if journal is None:
        journal = Journal(RunDir(session_dir).journal, read_journal(session_dir), redactor=redactor)
    journal.update(windows=[v.to_record() for v in verdicts])
    return verdicts


def rejudge_session(session_dir: Path, overrides: Sequence[str] = ()) -> list[WindowVerdict]:
    """``resilience analyse`` on a session directory: its windows judged again (with
    ``--set`` overrides on the recorded experiment), the reports rewritten. The session's
    status (how it ended) is kept: a game day has no verdict of its own."""
    layout = RunDir(Path(session_dir))
    experiment = load_experiment(layout.experiment, overrides=overrides)
    # The copy keeps its ${env:NAME} references: what they resolve to now is masked too.
    redactor = Redactor(experiment.secret_values())
    verdicts = judge_session(layout.path, experiment=experiment, redactor=redactor)
    write_session_reports(layout.path, redactor=redactor)
    return verdicts


def is_session(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a game-day session (its journal says ``kind: gameday``)."""
    try:
        data = json.loads(RunDir(Path(run_dir)).journal.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("kind") == "gameday"


def write_session_reports(session_dir: Path, *, redactor: Redactor | None = None) -> list[Path]:
    """Write summary.md and report.html (and each window's notes into the journal), all
    through ``redactor`` (the session's; the rules alone when None), private."""
    journal_path = session_dir / "journal.json"
    journal: dict[str, Any] = json.loads(journal_path.read_text(encoding="utf-8"))
    try:
        data: LoadData | None = LoadData.read(session_dir)
    except Exception as exc:  # a session killed before its first second has no load data
        logger.warning("no load data in %s: %s", session_dir, exc)
        data = None
    views = windows_of(journal)
    if journal.get("windows") is not None:
        for view in views:
            view.record["hypotheses"] = [n["id"] for n in view.hypotheses]
            view.record["observations"] = [n["id"] for n in view.observations]
        write_json(journal_path, journal, redactor, indent=2, ensure_ascii=False)
    summary = write_text(session_dir / SUMMARY, summary_markdown(journal, views), redactor)
    html = write_text(session_dir / REPORT, report_html(journal, views, data), redactor)
    return [html, summary]
