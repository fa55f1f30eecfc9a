"""The session report: what was injected, what people expected and saw, what was measured.

Built from the session directory alone (``journal.json`` and the load files), like a run's
reports. Each fault window (overlapping faults merged) gets its measured recovery time —
``resilience.analysis.recovery.measure_recovery`` with the window's own baseline (the clean
stretch before it), fault and recovery (until the next window or the end) — and per
endpoint its error rate and p95 before and during the fault. Each hypothesis is shown
beside the window that followed it (the next fault applied after it was written). The
HTML report puts the timeline and the notes beside inline SVG charts; ``summary.md`` is
the same for a post-mortem document.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from resilience.analysis.data import second_series, window_stats
from resilience.analysis.recovery import measure_recovery
from resilience.redact import Redactor
from resilience.report.svg import PALETTE, Line, LineChart, Window, line_chart
from resilience.rundir.layout import write_json, write_text
from resilience.rundir.load import LoadData, LoadView
from resilience.vocabulary import Phase

logger = logging.getLogger(__name__)

SUMMARY = "summary.md"
REPORT = "report.html"
MIN_BASELINE_S = 5.0


@dataclass
class FaultGroup:
    """Faults whose windows overlap, measured as one window."""

    start: float
    end: float | None
    faults: list[dict[str, Any]] = field(default_factory=list)
    baseline: Phase | None = None
    recovery_end: float = 0.0
    recovery_s: float | None = None
    recovered: bool | None = None
    recovery_note: str = ""
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    hypotheses: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " + ".join(f"#{f['index']} {f['type']} on {f['proxy']}" for f in self.faults)


def fault_groups(faults: list[dict[str, Any]], end: float) -> list[FaultGroup]:
    applied = sorted(
        (f for f in faults if f.get("applied_at") is not None), key=lambda f: f["applied_at"]
    )
    groups: list[FaultGroup] = []
    for fault in applied:
        healed = fault.get("healed_at")
        last = groups[-1] if groups else None
        if last is not None and (last.end is None or fault["applied_at"] <= last.end):
            last.faults.append(fault)
            last.end = None if healed is None or last.end is None else max(last.end, healed)
        else:
            groups.append(FaultGroup(fault["applied_at"], healed, [fault]))
    for i, group in enumerate(groups):
        # The last second of a session is cut short by the end: it is not a second to judge.
        group.recovery_end = groups[i + 1].start if i + 1 < len(groups) else max(0.0, end - 1.0)
    return groups


def measure(journal: dict[str, Any], data: LoadView | None) -> list[FaultGroup]:  # noqa: PLR0912 (each window: baseline, recovery, traffic check, endpoints, notes)
    """Fault windows with their measured recovery, endpoint numbers, hypotheses and notes."""
    end = _end(journal)
    groups = fault_groups(journal.get("faults") or [], end)
    warmup = float(journal.get("warmup", 2.0) or 0.0)
    recovery = journal.get("recovery_settings") or {}
    first_baseline = Phase("baseline", warmup, groups[0].start) if groups else None
    if data is not None and groups:
        # Requests still unanswered when the load stopped are abandoned, not recorded: the
        # seconds they were sent in look empty. Judge no second after the last with data.
        sent = [s for s in data.seconds if sum(data.counts(None, s).values()) > 0]
        last = float(max(sent) + 1) if sent else 0.0
        groups[-1].recovery_end = max(groups[-1].end or 0.0, min(groups[-1].recovery_end, last))
    previous_end: float | None = warmup
    for group in groups:
        # The clean stretch before this window: from the moment the previous one had
        # recovered; the session's first baseline when there was none (or it was too short).
        base = Phase("baseline", previous_end if previous_end is not None else 0.0, group.start)
        if (previous_end is None or base.duration < MIN_BASELINE_S) and first_baseline is not None:
            base = first_baseline
        group.baseline = base
        previous_end = None
        if data is None or group.end is None:
            group.recovery_note = "never healed" if group.end is None else "no load data"
            continue
        phases = [
            base,
            Phase("fault", group.start, group.end),
            Phase("recovery", group.end, group.recovery_end),
        ]
        result = measure_recovery(
            data,
            phases,
            band_k=float(recovery.get("band_k", 3.0)),
            stable_seconds=int(recovery.get("stable_seconds", 5)),
        )
        if result is not None and result.recovered and result.first_stable_second is not None:
            stable = range(
                result.first_stable_second, result.first_stable_second + result.stable_seconds
            )
            if sum(sum(data.counts(None, s).values()) for s in stable) == 0:
                # In band only because a flat baseline allows 0 req/s: no evidence either way.
                group.recovered = None
                group.recovery_note = "no requests were sent after the heal to judge it by"
                result = None
        if result is not None:
            group.recovery_s = result.seconds
            group.recovered = result.recovered
            group.recovery_note = result.note
            if result.recovered and result.seconds is not None:
                previous_end = group.end + result.seconds + int(recovery.get("stable_seconds", 5))
        else:
            group.recovery_note = "no baseline to compare with"
        for endpoint in data.endpoints:
            before = window_stats(data, endpoint, base.seconds())
            during = window_stats(data, endpoint, Phase("fault", group.start, group.end).seconds())
            group.endpoints.append(
                {
                    "endpoint": endpoint,
                    "baseline_error_rate": before.error_rate,
                    "fault_error_rate": during.error_rate,
                    "baseline_p95_ms": before.p95,
                    "fault_p95_ms": during.p95,
                    "fault_requests": during.requests,
                }
            )
    notes = journal.get("notes") or []
    for note in notes:
        if note["kind"] == "hypothesis":
            after = [g for g in groups if g.start >= note["t"]]
            if after:
                after[0].hypotheses.append(note)
        elif note["kind"] == "observation":
            inside = [
                g for g in groups if g.start <= note["t"] <= (g.end if g.end is not None else end)
            ]
            if inside:
                inside[0].observations.append(note)
    return groups


def _end(journal: dict[str, Any]) -> float:
    events = journal.get("events") or []
    phases = journal.get("phases") or []
    ends = [p.get("end") or 0.0 for p in phases] + [e.get("t", 0.0) for e in events]
    return float(max(ends, default=0.0))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _recovery_text(group: FaultGroup) -> str:
    if group.recovered:
        return f"recovered {group.recovery_s:.1f} s after the heal"
    if group.recovered is False:
        return "did not recover before the next fault or the end" + (
            f" ({group.recovery_note})" if group.recovery_note else ""
        )
    return group.recovery_note or "not measured"


# ------------------------------------------------------------------------------ markdown


def summary_markdown(journal: dict[str, Any], groups: list[FaultGroup]) -> str:
    lines = [
        f"# Game day: {journal.get('experiment')}",
        "",
        f"- started {journal.get('started_at')}, ended {journal.get('ended_at')}"
        f" ({_end(journal):.0f} s on the session clock)",
        f"- target {journal.get('target')}"
        + (f" (shop {journal.get('shop_mode')})" if journal.get("shop_mode") else ""),
        f"- status {journal.get('status')}: {journal.get('reason')}",
    ]
    people = journal.get("people") or []
    if people:
        lines.append("- people: " + ", ".join(f"{p['name']} ({p['role']})" for p in people))
    lines += ["", "## Fault windows", ""]
    if not groups:
        lines.append("No fault was injected.")
    for group in groups:
        end = "never healed" if group.end is None else f"{group.end:.1f} s"
        lines += [
            f"### {group.label}: {group.start:.1f} s to {end}",
            "",
            f"**Measured recovery:** {_recovery_text(group)}.",
            "",
        ]
        for note in group.hypotheses:
            lines.append(f"- Hypothesis ({note['author']}, t={note['t']:.0f} s): {note['text']}")
        for note in group.observations:
            lines.append(f"- Observation ({note['author']}, t={note['t']:.0f} s): {note['text']}")
        if group.endpoints:
            lines += [
                "",
                "| endpoint | errors before | errors during | p95 before | p95 during |",
                "| --- | --- | --- | --- | --- |",
            ]
            for row in group.endpoints:
                lines.append(
                    f"| {row['endpoint']} | {_pct(row['baseline_error_rate'])} | "
                    f"{_pct(row['fault_error_rate'])} | {_ms(row['baseline_p95_ms'])} | "
                    f"{_ms(row['fault_p95_ms'])} |"
                )
        lines.append("")
    for kind, title in (("decision", "Decisions"), ("action", "Action items")):
        notes = [n for n in journal.get("notes") or [] if n["kind"] == kind]
        if notes:
            lines += [f"## {title}", ""]
            lines += [f"- {n['text']} ({n['author']}, t={n['t']:.0f} s)" for n in notes]
            lines.append("")
    lines += ["## Timeline", ""]
    for entry in journal.get("timeline") or []:
        lines.append(f"- t={entry['t']:.1f} s [{entry['kind']}] {entry['text']}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- html


def _charts(data: LoadView | None, groups: list[FaultGroup], end: float) -> str:
    if data is None or not data.seconds:
        return "<p>No load data.</p>"
    seconds = list(range(0, int(end) + 1))
    windows = [Window(g.start, g.end if g.end is not None else end, g.label) for g in groups]
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
"""


def report_html(journal: dict[str, Any], groups: list[FaultGroup], data: LoadView | None) -> str:
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
        _charts(data, groups, end),
        "<h2>Fault windows</h2>",
    ]
    if not groups:
        parts.append("<p>No fault was injected.</p>")
    for i, group in enumerate(groups):
        end_text = "never healed" if group.end is None else f"{group.end:.1f} s"
        parts.append(
            f"<div class='window' id='window-{i}'><h3>{e(group.label)}: "
            f"{group.start:.1f} s to {e(end_text)}</h3>"
        )
        parts.append(
            f"<div class='measured' data-recovery='{'' if group.recovery_s is None else group.recovery_s}'>"
            f"Measured recovery: {e(_recovery_text(group))}</div>"
        )
        for note in group.hypotheses:
            parts.append(
                f"<div class='hyp'>Hypothesis ({e(note['author'])}, t={note['t']:.0f} s): {e(note['text'])}</div>"
            )
        for note in group.observations:
            parts.append(
                f"<div class='obs'>Observation ({e(note['author'])}, t={note['t']:.0f} s): {e(note['text'])}</div>"
            )
        if group.endpoints:
            parts.append(
                "<table><tr><th>endpoint</th><th>errors before</th><th>errors during</th>"
                "<th>p95 before</th><th>p95 during</th></tr>"
            )
            for row in group.endpoints:
                parts.append(
                    f"<tr><td>{e(row['endpoint'])}</td><td>{_pct(row['baseline_error_rate'])}</td>"
                    f"<td>{_pct(row['fault_error_rate'])}</td><td>{_ms(row['baseline_p95_ms'])}</td>"
                    f"<td>{_ms(row['fault_p95_ms'])}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</div>")
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


def write_session_reports(session_dir: Path, *, redactor: Redactor | None = None) -> list[Path]:
    """Write summary.md and report.html (and the measured windows into the journal), all
    through ``redactor`` (the session's; the rules alone when None), private."""
    journal_path = session_dir / "journal.json"
    journal: dict[str, Any] = json.loads(journal_path.read_text(encoding="utf-8"))
    try:
        data: LoadData | None = LoadData.read(session_dir)
    except Exception as exc:  # a session killed before its first second has no load data
        logger.warning("no load data in %s: %s", session_dir, exc)
        data = None
    groups = measure(journal, data)
    journal["windows"] = [
        {
            "label": g.label,
            "start": g.start,
            "end": g.end,
            "faults": [f["index"] for f in g.faults],
            "recovery_seconds": g.recovery_s,
            "recovered": g.recovered,
            "note": g.recovery_note,
            "endpoints": g.endpoints,
            "hypotheses": [n["id"] for n in g.hypotheses],
            "observations": [n["id"] for n in g.observations],
        }
        for g in groups
    ]
    write_json(journal_path, journal, redactor, indent=2)
    summary = write_text(session_dir / SUMMARY, summary_markdown(journal, groups), redactor)
    html = write_text(session_dir / REPORT, report_html(journal, groups, data), redactor)
    return [html, summary]
