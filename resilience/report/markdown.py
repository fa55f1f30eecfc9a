"""A Markdown summary for CI step summaries and pull-request comments.

Short and link-free: the verdict line, the SLO table (failed first), the findings, the
recovery. Text from the run is escaped so a hostile endpoint name or finding summary can
neither break a table nor turn into a link, an image or HTML in the rendered comment.
"""

from __future__ import annotations

import re

from resilience.report.summary import (
    breaking_point,
    check_observed,
    counts,
    evidence_notes,
    exit_meaning,
    finding_is_failing,
    finding_order,
    fmt_seconds,
    fmt_value,
    is_spike_run,
    rig_statements,
    slo_state,
    verdict,
)
from resilience.rundir.journal import JournalData, SloRecord
from resilience.rundir.reader import RunData

# Everything that could start markup in GitHub-flavoured Markdown (or close a table cell).
_MARKUP = re.compile(r"([\\`*_\[\]<>#|~&])")
# A line that starts like a list item, a heading rule or a quote.
_LEADING_MARK = re.compile(r"^([-+=])")
_LEADING_NUMBER = re.compile(r"^(\d+)([.)])")
_AUTOLINK = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*:/|www\.)")
MAX_SLO_ROWS = 60
MAX_FINDINGS = 20


def md(text: object) -> str:
    """One line of plain text, safe inside Markdown (and a table cell), never a link.

    GitHub turns bare ``http://...`` and ``www.`` into links even without markup; a
    zero-width space after the scheme's colon and after ``www`` stops that.
    """
    flat = " ".join(str(text).split())
    flat = _AUTOLINK.sub(lambda m: m.group(0)[:-1] + "\u200b" + m.group(0)[-1], flat)
    flat = _MARKUP.sub(r"\\\1", flat)
    flat = _LEADING_MARK.sub(r"\\\1", flat)
    return _LEADING_NUMBER.sub(r"\1\\\2", flat)


_ICON = {
    "passed": "✅",
    "failed": "❌",
    "inconclusive": "❔",
    "aborted": "⚠️",
    "error": "⚠️",
    "running": "⏳",
    "starting": "⏳",
}


def _slo_rank(slo: SloRecord) -> int:
    return {False: 0, None: 1, True: 2}[slo.passed]


def render_markdown(run: RunData) -> str:
    journal = run.journal
    v = verdict(journal)
    code = "—" if v.exit_code is None else str(v.exit_code)
    profile = f" ({md(journal.profile)})" if journal.profile else ""
    lines = [
        f"### {_ICON.get(v.status, '')} {md(journal.experiment)}{profile}: "
        f"**{md(v.status.upper())}**, exit code {code} ({md(exit_meaning(v.exit_code))})",
        "",
        md(v.reason),
        "",
    ]
    knee = breaking_point(journal)
    if knee:
        lines.extend([f"**Capacity:** {md(knee)}", ""])
    lines.extend(_rig_section(journal))
    lines.extend(_slo_section(journal))
    lines.extend(_findings_section(journal))
    notes = evidence_notes(run.run_dir, journal)
    if notes:
        lines.extend([f"**Evidence:** {md(' '.join(notes))}", ""])
    lines.extend(_recovery_section(journal))
    checks_failed = [c for c in journal.checks if c.status == "failed" and c.fails_run]
    observed = [c for c in journal.checks if check_observed(c)]
    if journal.checks:
        text = f"**Checks:** {md(counts(journal).checks_text())}"
        if checks_failed:
            text += f"; failed: {', '.join(md(f'{c.name} ({c.phase})') for c in checks_failed)}"
        if observed:
            text += "; did not hold: " + ", ".join(md(f"{c.name} ({c.phase})") for c in observed)
        lines.append(text)
        lines.append("")
    lines.append(
        f"_{md(journal.started_at)} · target {md(journal.target or '—')} · "
        f"shop mode {md(journal.shop_mode or '—')} · full report in report.html_"
    )
    return "\n".join(lines) + "\n"


def _rig_section(journal: JournalData) -> list[str]:
    statements = rig_statements(journal)
    if not statements:
        return []
    return ["**Rig and evidence:**", "", *(f"- {md(line)}" for line in statements), ""]


def _slo_section(journal: JournalData) -> list[str]:
    if not journal.slo:
        return ["No SLOs were evaluated.", ""]
    lines = [
        f"**SLOs:** {md(counts(journal).slo_text())}",
        "",
        "| result | phase | endpoint | metric | observed | threshold |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    ordered = sorted(journal.slo, key=_slo_rank)
    for slo in ordered[:MAX_SLO_ROWS]:
        state = slo_state(slo)
        mark = {"failed": "❌ failed", "passed": "✅ passed"}.get(state, "⚪ not evaluated")
        lines.append(
            f"| {mark} | {md(slo.phase)} | {md(slo.endpoint or 'all endpoints')} | "
            f"{md(slo.metric)} | {md(fmt_value(slo.observed, slo.unit))} | "
            f"{md(fmt_value(slo.threshold, slo.unit))} |"
        )
    if len(ordered) > MAX_SLO_ROWS:
        lines.append(
            f"| … | {len(ordered) - MAX_SLO_ROWS} more (all passed or not evaluated) | | | | |"
        )
    lines.append("")
    return lines


def _findings_section(journal: JournalData) -> list[str]:
    findings = finding_order(journal.findings)
    if not findings:
        return ["**Findings:** none.", ""]
    lines = [f"**Findings:** {md(counts(journal).findings_text())}", ""]
    for finding in findings[:MAX_FINDINGS]:
        flags = [finding.severity]
        if finding_is_failing(finding):
            flags.append("fails the run")
        if finding.status != "found":
            flags.append(finding.status.replace("_", " "))
        lines.append(f"- **{md(finding.kind)}** ({md(', '.join(flags))}): {md(finding.summary)}")
    if len(findings) > MAX_FINDINGS:
        lines.append(f"- … {len(findings) - MAX_FINDINGS} more in the full report")
    lines.append("")
    return lines


def _recovery_section(journal: JournalData) -> list[str]:
    r = journal.recovery
    title = "Recovery after the spike" if is_spike_run(journal) else "Recovery"
    if r.recovered is None and r.seconds is None:
        return [f"**{title}:** not measured (no recovery phase).", ""]
    budget = f" (budget {fmt_seconds(r.budget_seconds)})" if r.budget_seconds is not None else ""
    if r.recovered:
        over = (
            r.budget_seconds is not None and r.seconds is not None and r.seconds > r.budget_seconds
        )
        text = f"recovered in {fmt_seconds(r.seconds)}{budget}" + (" — over budget" if over else "")
    else:
        text = f"did not recover before the run ended{budget}"
    area = (r.model_extra or {}).get("degradation_area")
    if isinstance(area, (int, float)):
        text += f"; degradation area {area:.1f} s"
    return [f"**{title}:** {md(text)}", ""]
