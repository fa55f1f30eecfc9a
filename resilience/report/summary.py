"""What every report says the same way: the verdict, readable SLO lines, finding order, numbers.

HTML, JUnit XML and Markdown each render these; keeping the wording here means a failed
SLO reads ``fault GET /catalog/items p95 2300 ms > 500 ms`` in all three.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resilience.analysis.data import WindowStats, window_stats
from resilience.analysis.phases import PhasedLoad
from resilience.errors import EXIT_FAILED, EXIT_INVALID, EXIT_PASSED, EXIT_UNAVAILABLE, ObserveError
from resilience.rundir.evidence import Evidence
from resilience.rundir.journal import CheckRecord, FindingRecord, JournalData, SloRecord
from resilience.rundir.load import LoadView
from resilience.vocabulary import Phase

_SEVERITY_RANK = {
    "critical": 0,
    "high": 1,
    "error": 1,
    "major": 1,
    "warning": 2,
    "medium": 2,
    "minor": 3,
    "low": 4,
    "info": 4,
}
_STATUS_EXIT = {
    "passed": EXIT_PASSED,
    "failed": EXIT_FAILED,
    "aborted": EXIT_FAILED,
    "inconclusive": EXIT_UNAVAILABLE,
}


def fmt_ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def fmt_ratio(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if value == 0:
        return "0%"
    return f"{value:.2%}"


def fmt_rps(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.1f}/s"


def fmt_seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.1f} s"


def fmt_value(value: float | None, unit: str) -> str:
    """An SLO number in its unit: ``2300 ms``, ``1.20%``, ``85.0/s``."""
    if value is None:
        return "no data"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "ratio":
        return fmt_ratio(value)
    if unit in ("rps", "/s"):
        return fmt_rps(value)
    return f"{value:g}{(' ' + unit) if unit else ''}"


def is_spike_run(journal: JournalData) -> bool:
    """Whether the run was phased by a load spike (baseline / spike / recovery)."""
    return any(p.name == "spike" for p in journal.phases)


def recovered_from(journal: JournalData) -> str:
    """What the run's recovery is measured from, in words: "the heal" or "the spike"."""
    return "the spike" if is_spike_run(journal) else "the heal"


def slo_where(slo: SloRecord) -> str:
    return f"{slo.phase} {slo.endpoint or 'all endpoints'} {slo.metric}"


def slo_message(slo: SloRecord) -> str:
    """``fault GET /catalog/items p95 2300 ms > 500 ms`` (the comparison that decided it)."""
    observed = fmt_value(slo.observed, slo.unit)
    threshold = fmt_value(slo.threshold, slo.unit)
    lower_bound = slo.metric in ("min_rps", "rps", "throughput", "users")
    if slo.passed is None:
        op = "vs"
    elif slo.passed:
        op = ">=" if lower_bound else "<="
    else:
        op = "<" if lower_bound else ">"
    return f"{slo_where(slo)} {observed} {op} {threshold}"


def slo_state(slo: SloRecord) -> str:
    return "not evaluated" if slo.passed is None else ("passed" if slo.passed else "failed")


def check_message(check: CheckRecord) -> str:
    observed = ", ".join(f"{k}={_short(v)}" for k, v in check.observed.items())
    text = f"{check.name} ({check.phase}): expected {check.promql} {check.expect}"
    if observed:
        text += f", observed {observed}"
    if check.reason:
        text += f" — {check.reason}"
    return text


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def severity_rank(severity: str) -> int:
    return _SEVERITY_RANK.get(severity.lower(), 3)


def finding_order(findings: Sequence[FindingRecord]) -> list[FindingRecord]:
    """Run-failing first, then by severity; not-evaluated and inconclusive last."""
    return sorted(
        findings,
        key=lambda f: (f.status != "found", not f.fails_run, severity_rank(f.severity), f.kind),
    )


def finding_endpoints(finding: FindingRecord) -> list[str]:
    ev = finding.evidence
    found: list[str] = []
    single = ev.get("endpoint")
    if isinstance(single, str):
        found.append(single)
    many = ev.get("endpoints")
    if isinstance(many, (list, dict)):
        found.extend(str(e) for e in many)
    return list(dict.fromkeys(found))


def finding_title(finding: FindingRecord) -> str:
    return f"{finding.kind} ({finding.severity}): {finding.summary}"


@dataclass(frozen=True)
class Counts:
    """How many SLOs, checks and findings ended which way: the one tally every report shows.

    A check "did not hold" without failing the run when its severity is below critical
    (``observed``); a finding "warns" when it was found without failing the run. JUnit's
    failures and skips are these numbers: failures = ``slo_failed``, ``checks_failed``,
    ``findings_failing``; skipped = the ``*_not_evaluated``.
    """

    slo_total: int
    slo_failed: int
    slo_passed: int
    slo_not_evaluated: int
    checks_total: int
    checks_held: int
    checks_failed: int
    checks_observed: int
    checks_not_evaluated: int
    findings_total: int
    findings_failing: int
    findings_warning: int
    findings_held: int
    findings_not_evaluated: int

    def slo_text(self) -> str:
        text = f"{self.slo_failed} of {self.slo_total} SLOs failed"
        if self.slo_not_evaluated:
            text += f" ({self.slo_not_evaluated} not evaluated)"
        return text

    def checks_text(self) -> str:
        parts = [f"{self.checks_held} of {self.checks_total} checks held"]
        parts.append(f"{self.checks_failed} failed")
        if self.checks_observed:
            parts.append(f"{self.checks_observed} did not hold (informational)")
        if self.checks_not_evaluated:
            parts.append(f"{self.checks_not_evaluated} not evaluated")
        return ", ".join(parts)

    def findings_text(self) -> str:
        text = f"{self.findings_failing} of {self.findings_total} findings fail the run"
        if self.findings_warning:
            text += f", {self.findings_warning} more found"
        if self.findings_not_evaluated:
            text += f", {self.findings_not_evaluated} not evaluated or inconclusive"
        return text

    def line(self) -> str:
        """``2 of 8 SLOs failed · 10 of 15 checks held, 0 failed, ... · 2 of 8 findings ...``"""
        return " · ".join((self.slo_text(), self.checks_text(), self.findings_text()))


def check_observed(check: CheckRecord) -> bool:
    """A check that did not hold but does not fail the run (info and warning severities)."""
    return check.status == "failed" and not check.fails_run


def finding_is_failing(finding: FindingRecord) -> bool:
    return finding.status == "found" and finding.fails_run


def counts(journal: JournalData) -> Counts:
    slo, checks, findings = journal.slo, journal.checks, journal.findings
    return Counts(
        slo_total=len(slo),
        slo_failed=sum(s.passed is False for s in slo),
        slo_passed=sum(s.passed is True for s in slo),
        slo_not_evaluated=sum(s.passed is None for s in slo),
        checks_total=len(checks),
        checks_held=sum(c.status == "passed" for c in checks),
        checks_failed=sum(c.status == "failed" and c.fails_run for c in checks),
        checks_observed=sum(check_observed(c) for c in checks),
        checks_not_evaluated=sum(c.status == "not_evaluated" for c in checks),
        findings_total=len(findings),
        findings_failing=sum(finding_is_failing(f) for f in findings),
        findings_warning=sum(f.status == "found" and not f.fails_run for f in findings),
        findings_held=sum(f.status == "held" for f in findings),
        findings_not_evaluated=sum(f.status in ("not_evaluated", "inconclusive") for f in findings),
    )


@dataclass(frozen=True)
class Verdict:
    """The run's outcome and the items that decided it."""

    status: str
    exit_code: int | None
    reason: str
    failed_slos: list[SloRecord]
    failed_checks: list[CheckRecord]
    failing_findings: list[FindingRecord]
    top_findings: list[FindingRecord]

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def verdict(journal: JournalData, *, top: int = 3) -> Verdict:
    failed_slos = [s for s in journal.slo if s.passed is False]
    failed_checks = [c for c in journal.checks if c.status == "failed" and c.fails_run]
    failing = [f for f in finding_order(journal.findings) if f.fails_run and f.status == "found"]
    shown = [f for f in finding_order(journal.findings) if f.status == "found"][:top]
    exit_code = journal.exit_code
    if exit_code is None and journal.status in _STATUS_EXIT:
        exit_code = _STATUS_EXIT[journal.status]
    elif exit_code is None and journal.status == "error":
        exit_code = EXIT_UNAVAILABLE
    reason = journal.reason or _reason(journal.status, failed_slos, failed_checks, failing)
    return Verdict(
        status=journal.status,
        exit_code=exit_code,
        reason=reason,
        failed_slos=failed_slos,
        failed_checks=failed_checks,
        failing_findings=failing,
        top_findings=shown,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _reason(
    status: str,
    slos: Sequence[SloRecord],
    checks: Sequence[CheckRecord],
    findings: Sequence[FindingRecord],
) -> str:
    if status == "running":
        return "the run has not finished (or was killed before it could record its end)"
    parts: list[str] = []
    if slos:
        parts.append(f"{_plural(len(slos), 'SLO')} failed (first: {slo_message(slos[0])})")
    if checks:
        parts.append(f"{_plural(len(checks), 'check')} failed ({checks[0].name})")
    if findings:
        kinds = ", ".join(dict.fromkeys(f.kind for f in findings))
        parts.append(f"{_plural(len(findings), 'finding')} fail the run ({kinds})")
    if parts:
        return "; ".join(parts) + "."
    if status == "passed":
        return "every SLO, check and detector held."
    return f"the run ended {status} without recording why."


def rig_statements(journal: JournalData) -> list[str]:
    """What every report says about the rig and the evidence: the target unreachable, a
    stack process gone, a source lost, the generator or the host overloaded. From the
    analysis (``rig`` in the journal) or, for a run that was not analysed (interrupted,
    aborted by an error), from the rig monitor's events."""
    rig = (journal.model_extra or {}).get("rig")
    if isinstance(rig, dict) and isinstance(rig.get("statements"), list):
        return [str(line) for line in rig["statements"]]
    lines: list[str] = []
    for event in journal.events:
        text = event.detail.get("text")
        if event.kind.startswith("rig_") and event.kind != "rig_source_back" and text:
            lines.append(str(text))
    return list(dict.fromkeys(lines))


def exit_meaning(code: int | None) -> str:
    return {
        EXIT_PASSED: "passed",
        EXIT_FAILED: "failed",
        EXIT_INVALID: "invalid input",
        EXIT_UNAVAILABLE: "could not run",
        130: "interrupted",
    }.get(code if code is not None else -1, "unknown")


@dataclass(frozen=True)
class EndpointRow:
    endpoint: str | None
    stats: WindowStats

    @property
    def label(self) -> str:
        return self.endpoint or "all endpoints"


def phase_table(load: LoadView | PhasedLoad, phase: Phase) -> list[EndpointRow]:
    """Per-endpoint numbers of one phase from the merged histograms, the whole target first
    (the phase's requests by their [sent, ended] interval when ``load`` is phased)."""
    if isinstance(load, PhasedLoad):
        view, seconds = load.of(phase.name)
    else:
        view, seconds = load, list(phase.seconds())
    rows = [EndpointRow(None, window_stats(view, None, seconds))]
    rows.extend(EndpointRow(e, window_stats(view, e, seconds)) for e in view.endpoints)
    return rows


_SOURCE_NAMES = {"prometheus": "Prometheus", "traces": "Traces", "readback": "Read-back"}


def coordinated_omission(journal: JournalData) -> str | None:
    """A closed-model run's statement of how much latency may hide behind waiting users
    (analysis/omission.py), when the analysis made one."""
    found = (journal.analysis or {}).get("coordinated_omission")
    if isinstance(found, dict) and found.get("statement"):
        return str(found["statement"])
    return None


def breaking_point(journal: JournalData) -> str | None:
    """A rising load's breaking point in one sentence (analysis/breaking.py): the load held,
    the second the SLOs first broke, what broke first, the first saturated resource."""
    found = (journal.analysis or {}).get("breaking_point")
    if isinstance(found, dict) and found.get("statement"):
        return str(found["statement"])
    return None


def evidence_notes(run_dir: Path, journal: JournalData) -> list[str]:
    """What the run could not gather or do, said plainly (the target exported no spans, the
    read-back found no target, users whose setup failed): one sentence each."""
    notes: list[str] = []
    try:
        evidence = Evidence.load(run_dir)
    except ObserveError as exc:
        notes.append(f"The evidence manifest is unreadable: {exc}")
        evidence = None
    if evidence is not None:
        for key, title in _SOURCE_NAMES.items():
            source = getattr(evidence, key)
            if source.status == "unavailable":
                notes.append(f"{title}: {source.reason or 'unavailable'}.")
            elif source.status == "partial" and source.reason:
                notes.append(
                    f"{title}: {source.gathered} of {source.wanted} gathered ({source.reason})."
                )
    omission = coordinated_omission(journal)
    if omission:
        notes.append(omission)
    for event in journal.events:
        if event.kind == "setup_failed":
            users = event.detail.get("users", "?")
            errors = "; ".join(str(e) for e in event.detail.get("errors", []))
            notes.append(f"Setup failed for {users} user(s), who then stopped: {errors}.")
        elif event.kind == "capture_missed":
            answers = event.detail.get("answers", "?")
            errors = "; ".join(str(e) for e in event.detail.get("errors", []))
            notes.append(
                f"Nothing captured from {answers} OK answer(s) (counted OK; what needed the "
                f"value was not sent, a write without its id is not read back): {errors}."
            )
        elif event.kind == "load_worker_lost" and event.detail.get("text"):
            text = str(event.detail["text"])
            notes.append(f"{text[:1].upper()}{text[1:]}.")
    return notes
