"""The HTML report: one self-contained file, readable offline, verdict first.

Order: verdict (with the counts every report shares), what happened (two or three
sentences: the fault, who was hurt, the recovery), the timeline (throughput, errors and
latency per second with fault windows shaded and apply/heal stamps marked), then every
finding that failed the run or warned with its best evidence right under it (the waterfall
of an example trace with the explaining span highlighted, the Prometheus series, the
affected seconds) in words and units, failed SLOs and checks; then the tables (endpoints
per phase with the experiment's intended breaches labelled, SLOs, checks with their charts
folded away), recovery, events and the resolved experiment.

One offline file: no external resource, and one small inline script (chart hover values)
allowed by its hash in the Content-Security-Policy, which forbids every fetch, so a slip
shows in the browser instead of a silent call home. Trace ids link to the trace UI when
the run recorded its URL. Every string from the run goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from resilience.analysis.data import second_series
from resilience.analysis.phases import phased_of_run
from resilience.observe.spans import Span, Trace
from resilience.report import story, svg
from resilience.report.summary import (
    breaking_point,
    counts,
    evidence_notes,
    exit_meaning,
    finding_endpoints,
    finding_order,
    fmt_ms,
    fmt_ratio,
    fmt_rps,
    fmt_seconds,
    fmt_value,
    is_spike_run,
    phase_table,
    rig_statements,
    slo_message,
    slo_state,
    verdict,
)
from resilience.rundir.journal import CheckRecord, FaultRecord, FindingRecord, JournalData
from resilience.rundir.load import LoadView
from resilience.rundir.reader import RunData
from resilience.vocabulary import STRESS_PHASES, Phase

HOVER_SCRIPT = """(function () {
  var tip = document.createElement('div');
  tip.className = 'hover-tip';
  tip.hidden = true;
  document.body.appendChild(tip);
  function row(text, color) {
    var line = document.createElement('div');
    if (color) {
      var key = document.createElement('span');
      key.className = 'hover-key';
      key.style.background = color;
      line.appendChild(key);
    }
    line.appendChild(document.createTextNode(text));
    tip.appendChild(line);
  }
  Array.prototype.forEach.call(document.querySelectorAll('svg.chart[data-x]'), function (chart) {
    var d = chart.getAttribute('data-x').split(',').map(Number);
    var cursor = chart.querySelector('line.hover-cursor');
    var series = Array.prototype.map.call(chart.querySelectorAll('path.series[data-t]'),
      function (p) {
        return {label: p.getAttribute('data-label'), color: p.getAttribute('stroke'),
                t: p.getAttribute('data-t').split('|').map(Number),
                v: p.getAttribute('data-v').split('|')};
      });
    function hide() { tip.hidden = true; if (cursor) cursor.setAttribute('visibility', 'hidden'); }
    chart.addEventListener('mousemove', function (e) {
      var box = chart.getBoundingClientRect();
      var px = (e.clientX - box.left) * chart.viewBox.baseVal.width / box.width;
      if (px < d[2] || px > d[3] || !series.length) { hide(); return; }
      var t = d[0] + (px - d[2]) / (d[3] - d[2]) * (d[1] - d[0]);
      tip.textContent = '';
      row('t = ' + t.toFixed(1) + ' s', null);
      series.forEach(function (s) {
        var best = -1, gap = Infinity;
        for (var i = 0; i < s.t.length; i++) {
          var g = Math.abs(s.t[i] - t);
          if (g < gap) { gap = g; best = i; }
        }
        if (best >= 0 && s.v[best] !== '') row(s.label + ': ' + s.v[best], s.color);
      });
      if (cursor) {
        cursor.setAttribute('x1', px); cursor.setAttribute('x2', px);
        cursor.setAttribute('visibility', 'visible');
      }
      tip.hidden = false;
      tip.style.left = (e.pageX + 14) + 'px';
      tip.style.top = (e.pageY + 14) + 'px';
    });
    chart.addEventListener('mouseleave', hide);
  });
})();"""
"""Hover values on the line charts: the values nearest the pointer, from the data
attributes ``svg.line_chart`` writes. Ours, ~50 lines, no library."""
SCRIPT_HASH = base64.b64encode(hashlib.sha256(HOVER_SCRIPT.encode("utf-8")).digest()).decode()
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{SCRIPT_HASH}'"
)
"""Nothing may be fetched; the one script that may run is the hover script, by its hash."""
MAX_EVIDENCE_ITEMS = 20

_CSS = """
:root { --ok:#1b7f3b; --bad:#c62828; --warn:#b26a00; --muted:#666; --line:#ddd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color:#222; margin:0 auto; padding:16px 24px 48px; max-width:1180px; background:#fff; }
h1 { font-size:22px; margin:0 0 4px; } h2 { font-size:18px; margin:28px 0 8px;
  border-bottom:1px solid var(--line); padding-bottom:4px; } h3 { font-size:15px; margin:16px 0 6px; }
.facts { color:var(--muted); margin:0 0 12px; }
.verdict { border:2px solid var(--line); border-radius:6px; padding:12px 16px; }
.verdict.passed { border-color:var(--ok); background:#f1faf3; }
.verdict.failed, .verdict.error { border-color:var(--bad); background:#fdf3f3; }
.verdict.aborted, .verdict.running, .verdict.inconclusive { border-color:var(--warn); background:#fff8ec; }
.status { font-size:20px; font-weight:700; text-transform:uppercase; }
.passed .status { color:var(--ok); } .failed .status, .error .status { color:var(--bad); }
.aborted .status, .running .status, .inconclusive .status { color:var(--warn); }
table { border-collapse:collapse; margin:6px 0 12px; width:100%; }
th, td { border:1px solid var(--line); padding:3px 8px; text-align:left; vertical-align:top; }
th { background:#f4f4f4; font-weight:600; } td.num { text-align:right; font-variant-numeric:tabular-nums; }
tr.fail td { background:#fdecea; } tr.skip td { color:var(--muted); }
.badge { display:inline-block; padding:0 6px; border-radius:3px; font-size:12px; font-weight:600;
  color:#fff; background:#888; } .badge.fail, .badge.critical { background:var(--bad); }
.badge.pass { background:var(--ok); } .badge.warning, .badge.skip { background:var(--warn); }
.finding { border:1px solid var(--line); border-radius:6px; padding:8px 12px; margin:10px 0; }
.finding.fails { border-left:6px solid var(--bad); }
.finding.warns { border-left:6px solid var(--warn); }
.badge.info { background:#5c6bc0; } .badge.expected { background:#607d8b; }
.story { font-size:15px; max-width:980px; } .explanation { font-size:15px; margin:6px 0 2px; }
ul.evidence { margin:6px 0 4px; padding-left:20px; } ul.evidence li { margin:1px 0; }
tr.expected td { background:#f3f6f8; }
details > summary { cursor:pointer; color:#333; margin:8px 0; }
.hover-tip { position:absolute; z-index:10; background:#fff; border:1px solid #999;
  border-radius:4px; padding:4px 8px; font:12px system-ui, sans-serif; pointer-events:none;
  box-shadow:0 1px 4px rgba(0,0,0,.2); }
.hover-key { display:inline-block; width:10px; height:10px; margin-right:6px; }
.chart .hover-cursor { stroke:#333; stroke-width:1; }
.chart { display:block; margin:6px 0; max-width:none; }
.chart .tick, .chart .legend, .chart .axis-label, .chart .mark-label, .chart .span-label {
  font:11px system-ui, sans-serif; fill:#333; }
.chart .grid { stroke:#e6e6e6; } .chart .axis { stroke:#999; }
.chart .fault-window { fill:#d62728; fill-opacity:.13; }
.chart .affected { fill:#ff7f0e; fill-opacity:.28; }
.chart .phase-mark { stroke:#555; stroke-dasharray:4 3; }
.chart .phase-label { font:italic 11px system-ui, sans-serif; fill:#555; }
pre { background:#f6f6f6; border:1px solid var(--line); padding:8px; overflow:auto;
  white-space:pre-wrap; word-break:break-word; font-size:12px; }
code { font-size:12px; } .muted { color:var(--muted); }
@media print { .chart { break-inside:avoid; } .finding { break-inside:avoid; } .hover-tip { display:none; } }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(
    headers: Sequence[str],
    rows: Iterable[tuple[str, Sequence[str]]],
    *,
    numeric: set[int] | None = None,
) -> str:
    """Rows are (css class, already-escaped cells)."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body: list[str] = []
    for css, cells in rows:
        tds = "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f'<tr class="{css}">{tds}</tr>' if css else f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fault_windows(journal: JournalData, end: float) -> list[svg.Window]:
    windows: list[svg.Window] = []
    for fault in journal.faults:
        if fault.applied_at is None:
            continue
        healed = fault.healed_at if fault.healed_at is not None else end
        windows.append(
            svg.Window(
                fault.applied_at,
                healed,
                f"{fault.proxy} {fault.type} {fault.applied_at:.1f}-{healed:.1f} s",
            )
        )
    for phase in journal.phases:
        if phase.name == "spike":
            until = phase.end if phase.end is not None else end
            windows.append(
                svg.Window(phase.start, until, f"load spike {phase.start:.1f}-{until:.1f} s")
            )
    return windows


def _marks(journal: JournalData, phases: Sequence[Phase]) -> list[svg.Mark]:
    marks: list[svg.Mark] = []
    stamps: list[float] = []
    for fault in journal.faults:
        if fault.applied_at is not None:
            marks.append(
                svg.Mark(fault.applied_at, f"applied {fault.proxy} {fault.applied_at:.1f}s")
            )
            stamps.append(fault.applied_at)
        if fault.healed_at is not None:
            marks.append(svg.Mark(fault.healed_at, f"healed {fault.proxy} {fault.healed_at:.1f}s"))
            stamps.append(fault.healed_at)
    for phase in phases[1:]:
        if not any(abs(phase.start - s) < 0.05 for s in stamps):
            marks.append(svg.Mark(phase.start, f"{phase.name} {phase.start:.1f}s"))
    return sorted(marks, key=lambda m: m.x)


class _Report:
    """Builds the sections of one report from one read run directory."""

    def __init__(self, run: RunData) -> None:
        self.run = run
        self.journal = run.journal
        self.load = run.load
        self.phases = run.phases
        self.end = run.run_end
        self.windows = _fault_windows(self.journal, self.end)
        self.marks = _marks(self.journal, self.phases)
        self.phase_spans = [(p.name, p.start, p.end) for p in self.phases]
        seconds = list(self.load.seconds) if self.load is not None else []
        self.x_range = (
            float(min(0, seconds[0]) if seconds else 0),
            float(max(self.end, seconds[-1] + 1 if seconds else 1.0)),
        )
        self.trace_ui = run.trace_ui
        self.shifts = story.shifts(self.load, self.phases)
        self.expected = story.expected_labels(self.journal, self.shifts)

    # -- pieces ---------------------------------------------------------------------------

    def trace_link(self, trace_id: Any) -> str:
        """A trace id, as a link to the trace UI when its URL is known."""
        text = _e(trace_id)
        if not self.trace_ui:
            return f"<code>{text}</code>"
        url = self.trace_ui.replace("{trace_id}", quote(str(trace_id), safe=""))
        return (
            f"<a class='trace-link' href='{_e(url)}' target='_blank' "
            f"rel='noopener noreferrer'><code>{text}</code></a>"
        )

    # -- sections -------------------------------------------------------------------------

    def header(self) -> str:
        j = self.journal
        facts = [
            ("profile", j.profile or "default"),
            ("target", j.target or "—"),
            ("shop mode", j.shop_mode or "—"),
            ("started", j.started_at),
            ("ended", j.ended_at or "—"),
            ("duration", fmt_seconds(self.end)),
        ]
        text = " · ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in facts)
        run_trace = self.run.run_trace_id
        if run_trace:
            text += f" · run trace: {self.trace_link(run_trace)}"
        return f"<h1>resilience report — {_e(j.experiment)}</h1><p class='facts'>{text}</p>"

    def verdict_box(self) -> str:
        v = verdict(self.journal)
        code = "—" if v.exit_code is None else str(v.exit_code)
        tally = counts(self.journal)
        return (
            f"<section id='verdict' class='verdict {_e(v.status)}'>"
            f"<div class='status'>{_e(v.status)}</div>"
            f"<div>exit code <b>{_e(code)}</b> ({_e(exit_meaning(v.exit_code))})</div>"
            f"<p class='reason'>{_e(v.reason)}</p>{self.knee()}{self.rig_list()}"
            f"<p class='muted counts'>{_e(tally.line())}</p></section>"
        )

    def knee(self) -> str:
        """A rising load's breaking point (analysis/breaking.py); empty for other runs."""
        text = breaking_point(self.journal)
        if not text:
            return ""
        return f"<p class='breaking-point'><b>Capacity:</b> {_e(text)}</p>"

    def rig_list(self) -> str:
        """The rig and the evidence, said aloud (target unreachable, a source lost, the
        generator or host overloaded); empty when there is nothing to say."""
        lines = rig_statements(self.journal)
        if not lines:
            return ""
        items = "".join(f"<li>{_e(line)}</li>" for line in lines)
        return f"<div class='rig'><b>Rig and evidence</b><ul>{items}</ul></div>"

    def what_happened(self) -> str:
        sentences = story.what_happened(self.journal, self.shifts)
        text = " ".join(_e(s) for s in sentences)
        return f"<section id='story'><h2>What happened</h2><p class='story'>{text}</p></section>"

    def timeline(self) -> str:
        parts = ["<section id='timeline'><h2>Timeline</h2>"]
        load = self.load
        if load is None or not load.seconds:
            parts.append(
                "<p class='muted'>No load data in this run directory (latency.hlog / "
                "load.jsonl), so there is no timeline of requests.</p>"
            )
        else:
            secs = range(load.seconds[0], load.seconds[-1] + 1)
            s = second_series(load, None, secs)
            xs = [sec + 0.5 for sec in s.seconds]
            parts.append(
                svg.line_chart(
                    svg.LineChart(
                        chart_id="chart-throughput",
                        title="Requests and errors per second",
                        y_label="per second",
                        x_range=self.x_range,
                        lines=[
                            svg.Line(
                                "req/s",
                                "#1f77b4",
                                list(zip(xs, map(float, s.requests), strict=True)),
                            ),
                            svg.Line(
                                "errors/s",
                                svg.ERROR_COLOR,
                                list(zip(xs, map(float, s.errors), strict=True)),
                            ),
                        ],
                        windows=self.windows,
                        marks=self.marks,
                        phases=self.phase_spans,
                    )
                )
            )
            parts.append(
                svg.line_chart(
                    svg.LineChart(
                        chart_id="chart-latency",
                        title="Latency per second (p50, p95, p99), log scale",
                        y_label="milliseconds (log)",
                        x_range=self.x_range,
                        lines=[
                            svg.Line("p50", "#2ca02c", list(zip(xs, s.p50, strict=True))),
                            svg.Line("p95", "#ff7f0e", list(zip(xs, s.p95, strict=True))),
                            svg.Line(
                                "p99", "#9467bd", list(zip(xs, s.p99, strict=True)), dash="5 3"
                            ),
                        ],
                        windows=self.windows,
                        marks=self.marks,
                        phases=self.phase_spans,
                        log_y=True,
                        y_format=fmt_ms,
                    )
                )
            )
        parts.append(self._faults_table())
        phases = ", ".join(f"{p.name} {p.start:.1f}-{p.end:.1f} s" for p in self.phases)
        source = (
            "the load spike's stages"
            if any(p.name == "spike" for p in self.phases)
            else "the applied/healed stamps"
        )
        parts.append(f"<p class='muted'>Phases (from {source}): {_e(phases)}</p>")
        parts.append("</section>")
        return "".join(parts)

    def _faults_table(self) -> str:
        if not self.journal.faults:
            return "<p>No faults were scheduled.</p>"

        def row(f: FaultRecord) -> tuple[str, list[str]]:
            attrs = ", ".join(f"{k}: {v}" for k, v in sorted(f.attributes.items())) or "—"
            return (
                "fail" if f.error else "",
                [
                    _e(f.proxy),
                    _e(f.type),
                    _e(attrs),
                    _e(f"{f.scheduled_at:.1f}-{f.scheduled_end:.1f} s"),
                    _e(fmt_seconds(f.applied_at)),
                    _e(fmt_seconds(f.healed_at)),
                    _e(f.error or ""),
                ],
            )

        return "<h3>Faults</h3>" + _table(
            ["proxy", "type", "attributes", "scheduled", "applied", "healed", "error"],
            (row(f) for f in self.journal.faults),
        )

    # -- what went wrong, each with its best evidence -------------------------------------

    def problems_found(self) -> str:
        """Every finding that failed the run or warned, with its evidence right under it;
        then failed SLOs and checks; the rest (held, not evaluated) folded away."""
        ordered = finding_order(self.journal.findings)
        found = [f for f in ordered if f.status == "found"]
        others = [f for f in ordered if f.status != "found"]
        parts = ["<section id='findings'><h2>What failed or warned, with its evidence</h2>"]
        if not found:
            parts.append("<p>No detector found a problem.</p>")
        for i, finding in enumerate(found):
            parts.append(self._finding(i, finding))
        parts.append(self._failed_slos())
        parts.append(self._failed_checks())
        if others:
            items = "".join(self._other_finding(len(found) + i, f) for i, f in enumerate(others))
            parts.append(
                f"<details id='other-findings'><summary>{len(others)} more detector results "
                f"(held, not evaluated or inconclusive)</summary>{items}</details>"
            )
        parts.append("</section>")
        return "".join(parts)

    def _finding(self, index: int, f: FindingRecord) -> str:
        css = "finding fails" if f.fails_run else "finding warns"
        label = "fails the run" if f.fails_run else "does not fail the run"
        head = (
            f"<h3><span class='badge {_e(f.severity.lower())}'>{_e(f.severity)}</span> "
            f"{_e(f.kind)} <span class='muted'>({_e(label)})</span></h3>"
            f"<p class='summary'>{_e(f.summary)}</p>"
        )
        parts = [f"<article class='{css}' id='finding-{index}'>", head]
        parts.append(self._best_evidence(index, f))
        parts.append(self._evidence_words(f))
        parts.append("</article>")
        return "".join(parts)

    def _other_finding(self, index: int, f: FindingRecord) -> str:
        status = f.status.replace("_", " ")
        return (
            f"<article class='finding other' id='finding-{index}'><h3>"
            f"<span class='badge {_e(f.severity.lower())}'>{_e(f.severity)}</span> "
            f"{_e(f.kind)} <span class='muted'>({_e(status)})</span></h3>"
            f"<p>{_e(f.summary)}</p>{self._evidence_words(f)}</article>"
        )

    def _best_evidence(self, index: int, f: FindingRecord) -> str:
        """The waterfall for a trace-backed finding (a cascade), else the series, else the
        affected seconds on the endpoint's p95."""
        ev = f.evidence
        if ev.get("span") or f.kind == "cascading_failure":
            trace = self._trace_evidence(f"finding-{index}-trace", f)
            if trace:
                return trace
        if ev.get("series"):
            return self._series_chart(f"finding-{index}-series", ev["series"], f.kind)
        seconds = _int_list(ev.get("seconds"))
        if seconds and self.load is not None:
            return self._affected_chart(f"finding-{index}-seconds", f, seconds, self.load)
        return self._trace_evidence(f"finding-{index}-trace", f)

    def _evidence_words(self, f: FindingRecord) -> str:
        lines = story.evidence_lines(f)
        ids = _trace_ids(f)
        if ids:
            links = ", ".join(self.trace_link(t) for t in ids[:MAX_EVIDENCE_ITEMS])
            more = len(ids) - MAX_EVIDENCE_ITEMS
            extra = f" and {more} more" if more > 0 else ""
            trace_line = f"<li>example traces: {links}{_e(extra)}</li>"
        else:
            trace_line = ""
        if not lines and not trace_line:
            return ""
        items = "".join(f"<li>{_e(line)}</li>" for line in lines)
        return f"<ul class='evidence'>{items}{trace_line}</ul>"

    def _failed_slos(self) -> str:
        failed = [s for s in self.journal.slo if s.passed is False]
        if not failed:
            return ""
        shift: dict[str | None, story.Shift] = {s.endpoint: s for s in self.shifts}
        items = []
        for slo in failed:
            text = slo_message(slo)
            moved = shift.get(slo.endpoint) if slo.phase in STRESS_PHASES else None
            if moved is not None:
                text += f" (baseline → {slo.phase}: {moved.words()})"
            items.append(f"<li>{_e(text)}</li>")
        return f"<h3 id='failed-slos'>SLOs that failed</h3><ul>{''.join(items)}</ul>"

    def _failed_checks(self) -> str:
        failed = [(i, c) for i, c in enumerate(self.journal.checks) if c.status == "failed"]
        blocking = [(i, c) for i, c in failed if c.fails_run]
        observed = [(i, c) for i, c in failed if not c.fails_run]
        parts: list[str] = []
        for i, check in blocking:
            parts.append(
                f"<article class='finding fails' id='failed-check-{i}'><h3>"
                f"<span class='badge fail'>failed</span> check {_e(check.name)} "
                f"<span class='muted'>({_e(check.phase)}, {_e(check.severity)})</span></h3>"
                f"<p>{_e(check_words(check))}</p>"
                f"{self._series_chart(f'failed-check-{i}-series', check.series_file, check.name)}"
                "</article>"
            )
        if observed:
            items = "".join(f"<li>{_e(check_words(c))}</li>" for _, c in observed)
            parts.append(
                "<h3>Checks that did not hold (informational: they describe the fault, "
                f"the verdict does not depend on them)</h3><ul>{items}</ul>"
            )
        return "".join(parts)

    # -- the tables -----------------------------------------------------------------------

    def phase_tables(self) -> str:
        parts = ["<section id='phases'><h2>Endpoints per phase</h2>"]
        if self.load is None:
            parts.append("<p class='muted'>No load data.</p></section>")
            return "".join(parts)
        phased = phased_of_run(self.journal, self.load, self.phases)
        for phase in self.phases:
            rows = phase_table(phased, phase)
            notes = self.expected if phase.name in STRESS_PHASES else {}
            parts.append(f"<h3>{_e(phase.name)} ({phase.start:.1f}-{phase.end:.1f} s)</h3>")
            parts.append(
                _table(
                    ["endpoint", "requests", "req/s", "error rate", "p50", "p95", "p99", "max"],
                    (
                        (
                            "expected" if r.endpoint in notes else "",
                            [
                                f"<b>{_e(r.label)}</b>"
                                if r.endpoint is None
                                else _e(r.label) + _expected_badge(notes.get(r.endpoint or "")),
                                str(r.stats.requests),
                                _e(fmt_rps(r.stats.rps)),
                                _e(fmt_ratio(r.stats.error_rate)),
                                _e(fmt_ms(r.stats.p50)),
                                _e(fmt_ms(r.stats.p95)),
                                _e(fmt_ms(r.stats.p99)),
                                _e(fmt_ms(r.stats.max)),
                            ],
                        )
                        for r in rows
                    ),
                    numeric={1, 2, 3, 4, 5, 6, 7},
                )
            )
            if notes:
                parts.append(
                    "<p class='muted'>The whole target's numbers include the expected "
                    f"failures of {_e(', '.join(sorted(notes)))}: the experiment sets no "
                    "fault-phase SLO on them, only on the endpoints that must not notice.</p>"
                )
        parts.append("</section>")
        return "".join(parts)

    def slo(self) -> str:
        records = self.journal.slo
        if not records:
            return "<section id='slo'><h2>SLOs</h2><p>No SLOs were evaluated.</p></section>"
        badge = {"passed": "pass", "failed": "fail", "not evaluated": "skip"}
        rows = []
        for s in records:
            state = slo_state(s)
            rows.append(
                (
                    {"failed": "fail", "not evaluated": "skip"}.get(state, ""),
                    [
                        f"<span class='badge {badge[state]}'>{_e(state)}</span>",
                        _e(s.phase),
                        _e(s.endpoint or "all endpoints"),
                        _e(s.metric),
                        _e(fmt_value(s.observed, s.unit)),
                        _e(fmt_value(s.threshold, s.unit)),
                        _e(slo_message(s)),
                    ],
                )
            )
        table = _table(
            ["result", "phase", "endpoint", "metric", "observed", "threshold", "reads"],
            rows,
            numeric={4, 5},
        )
        tally = counts(self.journal)
        return f"<section id='slo'><h2>SLOs</h2><p>{_e(tally.slo_text())}.</p>{table}</section>"

    def checks(self) -> str:
        checks = self.journal.checks
        if not checks:
            return "<section id='checks'><h2>Checks</h2><p>No checks.</p></section>"
        tally = counts(self.journal)
        rows = []
        for i, check in enumerate(checks):
            state, css = _check_state(check)
            rows.append(
                (
                    "fail" if check.fails_run and check.status == "failed" else "",
                    [
                        f"<span class='badge {css}'>{_e(state)}</span>",
                        f"<a href='#check-{i}-box'>{_e(check.name)}</a>",
                        _e(check.phase),
                        _e(check.severity),
                        f"<code>{_e(check.promql)}</code> {_e(check.expect)}",
                        _e(_observed_words(check)),
                    ],
                )
            )
        table = _table(["result", "check", "phase", "severity", "expects", "observed"], rows)
        charts = "".join(self._check_chart(i, c) for i, c in enumerate(checks))
        return (
            f"<section id='checks'><h2>Checks</h2><p>{_e(tally.checks_text())}.</p>{table}"
            f"<details id='check-charts'><summary>Each check's Prometheus series "
            f"({len(checks)} charts)</summary>{charts}</details></section>"
        )

    def _check_chart(self, index: int, check: CheckRecord) -> str:
        state, css = _check_state(check)
        return (
            f"<div id='check-{index}-box'><h3><span class='badge {css}'>{_e(state)}</span> "
            f"{_e(check.name)} <span class='muted'>({_e(check.phase)})</span></h3>"
            f"{self._series_chart(f'check-{index}', check.series_file, check.name)}</div>"
        )

    def _series_chart(self, chart_id: str, ref: Any, title: str) -> str:
        if not ref:
            return ""
        found = self.run.series_for(ref)
        if found is None:
            return f"<p class='muted'>Series {_e(_ref_text(ref))} is not in prometheus/.</p>"
        lines = [
            svg.Line(
                s.name + s.label_text(),
                svg.PALETTE[i % len(svg.PALETTE)],
                [(t, v if math.isfinite(v) else None) for t, v in s.points],
            )
            for i, s in enumerate(found.series[: len(svg.PALETTE)])
        ]
        more = len(found.series) - len(lines)
        note = f" ({more} more series not drawn)" if more > 0 else ""
        chart = svg.line_chart(
            svg.LineChart(
                chart_id=chart_id,
                title=f"{title}: {found.promql}",
                y_label=found.promql or found.name,
                x_range=self.x_range,
                lines=lines,
                windows=self.windows,
                marks=self.marks,
                height=180,
            )
        )
        return (
            f"<p class='muted'>Prometheus: <code>{_e(found.promql)}</code> "
            f"(prometheus/{_e(found.file)}){_e(note)}</p>{chart}"
        )

    def _affected_chart(
        self, chart_id: str, f: FindingRecord, seconds: list[int], load: LoadView
    ) -> str:
        endpoints = finding_endpoints(f)
        endpoint = endpoints[0] if endpoints and endpoints[0] in load.endpoints else None
        secs = range(load.seconds[0], load.seconds[-1] + 1) if load.seconds else range(0)
        s = second_series(load, endpoint, secs)
        xs = [sec + 0.5 for sec in s.seconds]
        highlights = [
            svg.Window(a, b, f"affected {a:g}-{b:g} s", css_class="affected")
            for a, b in _ranges(seconds)
        ]
        where = endpoint or "all endpoints"
        return svg.line_chart(
            svg.LineChart(
                chart_id=chart_id,
                title=f"Affected seconds: p95 of {where}",
                y_label=f"p95 of {where} (ms, log)",
                x_range=self.x_range,
                lines=[svg.Line(f"p95 {where}", "#ff7f0e", list(zip(xs, s.p95, strict=True)))],
                windows=[*self.windows, *highlights],
                marks=self.marks,
                height=170,
                log_y=True,
                y_format=fmt_ms,
            )
        )

    def _trace_evidence(self, chart_id: str, f: FindingRecord) -> str:
        ev = f.evidence
        candidates = _trace_ids(f)
        if not candidates:
            return ""
        for trace_id in candidates[:MAX_EVIDENCE_ITEMS]:
            trace = self.run.trace(trace_id)
            if trace is not None and trace.spans:
                span_ref = ev.get("span") if trace_id == ev.get("trace_id") else None
                return self._waterfall(chart_id, trace, span_ref)
        shown = ", ".join(map(str, candidates[:3]))
        more = f" and {len(candidates) - 3} more" if len(candidates) > 3 else ""
        return (
            f"<p class='muted'>None of the trace ids in the evidence ({_e(shown + more)}) "
            "is saved under traces/.</p>"
        )

    def _waterfall(self, chart_id: str, trace: Trace, span_ref: Any) -> str:
        explaining = _find_span(trace, span_ref) if span_ref is not None else None
        t0 = trace.start_ns
        bars = []
        for span, depth in _tree(trace):
            duration_ms = span.duration_ns / 1e6
            error = f" - error: {span.status_message}" if span.is_error else ""
            bars.append(
                svg.Bar(
                    label=f"{span.service}: {span.name}",
                    group=span.service,
                    start_ms=(span.start_ns - t0) / 1e6,
                    duration_ms=duration_ms,
                    depth=depth,
                    error=span.is_error,
                    highlighted=explaining is not None and span.span_id == explaining.span_id,
                    tooltip=(
                        f"{span.service}: {span.name} ({span.kind}), starts at "
                        f"{fmt_ms((span.start_ns - t0) / 1e6)}, lasts {fmt_ms(duration_ms)}{error}"
                    ),
                )
            )
        total_ms = trace.duration_ns / 1e6
        if explaining is not None:
            why = f", error: {explaining.status_message}" if explaining.is_error else ""
            if isinstance(span_ref, Mapping) and span_ref.get("reason"):
                why += f": {span_ref['reason']}"
            note = (
                f"<p class='explanation'><b>Why:</b> {_e(explaining.service)}: "
                f"{_e(explaining.name)} ({_e(fmt_ms(explaining.duration_ns / 1e6))}{_e(why)}).</p>"
            )
        elif span_ref is not None:
            note = (
                f"<p class='muted'>The span named in the evidence ({_e(_ref_text(span_ref))}) "
                "is not in this trace.</p>"
            )
        else:
            note = ""
        title = f"Trace {trace.trace_id} ({len(trace.spans)} spans, {fmt_ms(total_ms)})"
        return (
            f"{note}<p class='trace-head'>Trace {self.trace_link(trace.trace_id)}: "
            f"{len(trace.spans)} spans over {_e(fmt_ms(total_ms))}.{_e(_client_wait(trace))}</p>"
            f"{svg.waterfall(chart_id, title, bars)}"
        )

    def recovery(self) -> str:
        r = self.journal.recovery
        extra = dict(r.model_extra or {})
        area = extra.pop("degradation_area", None)
        if r.recovered is None and r.seconds is None:
            state = "not measured (no recovery phase)"
        elif r.recovered:
            state = f"recovered after {fmt_seconds(r.seconds)}"
            if is_spike_run(self.journal):
                state = f"recovered {fmt_seconds(r.seconds)} after the spike"
        else:
            state = "did NOT recover before the end of the run"
        within = ""
        if r.budget_seconds is not None and r.recovered is not None:
            ok = bool(r.recovered and r.seconds is not None and r.seconds <= r.budget_seconds)
            within = (
                f" — <span class='badge {'pass' if ok else 'fail'}'>"
                f"{'within' if ok else 'over'} budget</span>"
            )
        rows = [
            ("", ["recovery time", _e(fmt_seconds(r.seconds))]),
            ("", ["budget", _e(fmt_seconds(r.budget_seconds))]),
            ("", ["recovered", _e("—" if r.recovered is None else "yes" if r.recovered else "no")]),
            (
                "",
                [
                    "degradation area",
                    _e(f"{area:.1f} s of lost good service")
                    if isinstance(area, (int, float))
                    else "—",
                ],
            ),
        ]
        rows.extend(
            ("", [_e(k.replace("_", " ")), _e(story.fmt_number(k.replace("_", " "), v))])
            for k, v in extra.items()
            if v not in (None, "")
        )
        bar = svg.budget_bar("recovery-bar", r.seconds, r.budget_seconds, bool(r.recovered))
        title = "Recovery after the spike" if is_spike_run(self.journal) else "Recovery"
        return (
            f"<section id='recovery'><h2>{_e(title)}</h2><p><b>{_e(state)}</b>{within}</p>"
            f"{bar}{_table(['measure', 'value'], rows)}</section>"
        )

    def events(self) -> str:
        events = self.journal.events
        if not events:
            return ""
        rows = (
            (
                "",
                [
                    _e(f"{e.t:.2f}"),
                    _e(e.wall),
                    _e(e.kind),
                    _e("; ".join(f"{k}: {v}" for k, v in e.detail.items())),
                ],
            )
            for e in events
        )
        table = _table(["t (s)", "wall (UTC)", "event", "detail"], rows, numeric={0})
        return (
            f"<section id='events'><h2>Events</h2><details><summary>{len(events)} events "
            f"on the experiment clock</summary>{table}</details></section>"
        )

    def experiment(self) -> str:
        return (
            "<section id='experiment'><h2>Resolved experiment</h2><details><summary>"
            "experiment.yaml as run</summary>"
            f"<pre>{_e(self.run.experiment_text)}</pre></details></section>"
        )

    def evidence_gaps(self) -> str:
        """What the run could not gather (no spans from the target, ...), said plainly."""
        notes = evidence_notes(self.run.run_dir, self.journal)
        if not notes:
            return ""
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        return (
            f"<section id='evidence-gaps'><h2>Evidence not gathered</h2><ul>{items}</ul></section>"
        )

    def problems(self) -> str:
        if not self.run.problems:
            return ""
        items = "".join(f"<li>{_e(p)}</li>" for p in self.run.problems)
        return f"<section id='problems'><h2>Unreadable evidence</h2><ul>{items}</ul></section>"


def _expected_badge(label: str | None) -> str:
    return f" <span class='badge expected'>{_e(label)}</span>" if label else ""


def _check_state(check: CheckRecord) -> tuple[str, str]:
    """The words and badge class of a check's result (an informational miss is not red)."""
    if check.status == "passed":
        return "held", "pass"
    if check.status == "not_evaluated":
        return "not evaluated", "skip"
    if check.fails_run:
        return "failed", "fail"
    return "did not hold (informational)", "info"


def _observed_words(check: CheckRecord) -> str:
    obs = check.observed
    if check.status == "not_evaluated":
        return check.reason or "no data"
    parts = [
        f"{k} {story.fmt_number(k, obs[k])}"
        for k in ("min", "max", "last")
        if isinstance(obs.get(k), (int, float))
    ]
    return ", ".join(parts) or (check.reason or "—")


def check_words(check: CheckRecord) -> str:
    """``db pool has no waiters (fault): max(...) expected == 0, got up to 6``."""
    worst = check.observed.get("max")
    got = f", got up to {story.fmt_number('', worst)}" if isinstance(worst, (int, float)) else ""
    reason = f" — {check.reason}" if check.reason else ""
    return f"{check.name} ({check.phase}): {check.promql} expected {check.expect}{got}{reason}"


def _trace_ids(f: FindingRecord) -> list[str]:
    ev = f.evidence
    ids: list[str] = []
    if ev.get("trace_id"):
        ids.append(str(ev["trace_id"]))
    if isinstance(ev.get("trace_ids"), list):
        ids.extend(str(t) for t in ev["trace_ids"])
    return list(dict.fromkeys(ids))


def _ref_text(ref: Any) -> str:
    if isinstance(ref, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in ref.items())
    if isinstance(ref, list):
        return ", ".join(_ref_text(r) for r in ref)
    return str(ref)


def _client_wait(trace: Trace) -> str:
    """The load engine's own span as the root: how long the request waited before the
    target's first span started (queueing in front of the target, or on the wire)."""
    root = trace.root()
    if root is None or root.kind != "client":
        return ""
    children = trace.children(root)
    if not children:
        return f" The load engine's request ({root.name}) never reached the target's spans."
    first = min(c.start_ns for c in children)
    wait_ms = (first - root.start_ns) / 1e6
    return (
        f" Root: the load engine's request ({root.name}); the target took it "
        f"{fmt_ms(max(wait_ms, 0.0))} after it was due to be sent."
    )


def _int_list(raw: Any) -> list[int]:
    if not isinstance(raw, list):
        return []
    out: list[int] = []
    for item in raw:
        if isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item):
            out.append(int(item))
    return sorted(set(out))


def _ranges(seconds: Sequence[int]) -> list[tuple[float, float]]:
    """Consecutive seconds merged into [start, end) windows."""
    ranges: list[tuple[float, float]] = []
    for s in seconds:
        if ranges and ranges[-1][1] == s:
            ranges[-1] = (ranges[-1][0], s + 1.0)
        else:
            ranges.append((float(s), s + 1.0))
    return ranges


def _tree(trace: Trace) -> list[tuple[Span, int]]:
    """Spans depth-first (children by start time) with their depth; orphans become roots."""
    ordered: list[tuple[Span, int]] = []
    seen: set[str] = set()
    stack: list[tuple[Span, int]] = [(s, 0) for s in reversed(trace.roots())]
    while stack and len(ordered) < len(trace.spans):
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        ordered.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(trace.children(span)))
    # Spans caught in a parent cycle are reachable from no root: show them flat.
    ordered.extend((s, 0) for s in trace.spans if s.span_id not in seen)
    return ordered


def _find_span(trace: Trace, ref: Any) -> Span | None:
    """The span a finding points at: by id or name, or a {span_id | service, name, duration_ms} dict.

    Detectors name a span by service and name (and its duration); among several spans of
    that name the one closest to the stated duration is meant.
    """
    if not isinstance(ref, Mapping):
        text = str(ref)
        return trace.span(text.lower()) or next((s for s in trace.spans if s.name == text), None)
    wanted = ref.get("span_id") or ref.get("spanId") or ref.get("id")
    found = trace.span(str(wanted).lower()) if wanted else None
    if found is not None:
        return found
    name, service = ref.get("name"), ref.get("service")
    if name is None and service is None:
        return None
    candidates = [
        s
        for s in trace.spans
        if (name is None or s.name == name) and (service is None or s.service == service)
    ]
    duration = ref.get("duration_ms")
    if isinstance(duration, (int, float)) and candidates:
        return min(candidates, key=lambda s: abs(s.duration_ns / 1e6 - duration))
    return candidates[0] if candidates else None


def render_html(run: RunData) -> str:
    """The whole report as one HTML document."""
    report = _Report(run)
    title = f"resilience report — {run.journal.experiment} — {run.journal.status}"
    body = "".join(
        [
            report.header(),
            report.verdict_box(),
            report.what_happened(),
            report.timeline(),
            report.problems_found(),
            report.phase_tables(),
            report.slo(),
            report.checks(),
            report.evidence_gaps(),
            report.recovery(),
            report.events(),
            report.experiment(),
            report.problems(),
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}<script>{HOVER_SCRIPT}</script></body></html>\n"
    )
