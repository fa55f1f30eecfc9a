"""JUnit XML for CI: a test suite per category, a test case per SLO, check and finding.

Failures are exactly the items that failed the run (an SLO with ``passed: false``, a check
with ``status: failed`` and ``fails_run: true`` (severity critical), a finding with
``fails_run: true``); an informational check that did not hold passes and says so in its
suite's system-out; items that could not be evaluated are ``<skipped>``. A fourth suite, ``run``, holds one case that fails only when the run did
not complete (aborted, error, still running) or failed with no other case to show why, so
a CI page is never green for a run that was not.

The output validates against the strict Ant JUnit schema (windyroad's ``JUnit.xsd``):
every suite has ``timestamp`` (UTC, no zone), ``hostname``, ``time``, ``id``, ``package``,
``properties``, ``system-out`` and ``system-err``.
"""

from __future__ import annotations

import json
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from resilience.report.summary import (
    breaking_point,
    check_message,
    finding_endpoints,
    finding_is_failing,
    finding_title,
    rig_statements,
    slo_message,
    slo_where,
)
from resilience.rundir.journal import JournalData

# Characters XML 1.0 cannot carry at all, even escaped.
_INVALID_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def xml_text(value: Any) -> str:
    return _INVALID_XML.sub("\ufffd", str(value))


@dataclass
class _Case:
    name: str
    time: float = 0.0
    outcome: str = "passed"  # passed | failure | skipped
    message: str = ""
    details: str = ""
    kind: str = ""


@dataclass
class _Suite:
    name: str
    cases: list[_Case] = field(default_factory=list)
    out: list[str] = field(default_factory=list)


def _timestamp(iso: str) -> str:
    try:
        moment = datetime.fromisoformat(iso).astimezone(UTC)
    except ValueError:
        moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _duration(journal: JournalData) -> float:
    if journal.ended_at:
        try:
            return max(0.0, datetime.fromisoformat(journal.ended_at).timestamp() - journal.t0)
        except ValueError:
            return 0.0
    return 0.0


def _phase_durations(journal: JournalData) -> dict[str, float]:
    return {p.name: max(0.0, p.end - p.start) for p in journal.phases if p.end is not None}


def _unique(name: str, seen: dict[str, int]) -> str:
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name} #{seen[name]}"


def _slo_suite(journal: JournalData, durations: dict[str, float]) -> _Suite:
    suite = _Suite("slo")
    seen: dict[str, int] = {}
    for slo in journal.slo:
        message = slo_message(slo)
        case = _Case(_unique(slo_where(slo), seen), time=durations.get(slo.phase, 0.0), kind="slo")
        if slo.passed is None:
            case.outcome, case.message = "skipped", f"{slo_where(slo)}: not evaluated (no data)"
        elif not slo.passed:
            case.outcome, case.message = "failure", message
            case.details = json.dumps(slo.model_dump(), sort_keys=True, default=str)
        suite.cases.append(case)
        suite.out.append(
            f"[{'pass' if slo.passed else 'FAIL' if slo.passed is False else 'skip'}] {message}"
        )
    return suite


def _check_suite(journal: JournalData, durations: dict[str, float]) -> _Suite:
    suite = _Suite("checks")
    seen: dict[str, int] = {}
    for check in journal.checks:
        message = check_message(check)
        case = _Case(
            _unique(f"{check.name} ({check.phase})", seen),
            time=durations.get(check.phase, 0.0),
            kind="check",
        )
        if check.status == "failed" and check.fails_run:
            case.outcome, case.message = "failure", message
            case.details = json.dumps(check.model_dump(), sort_keys=True, default=str)
        elif check.status == "not_evaluated":
            case.outcome = "skipped"
            case.message = f"{check.name}: not evaluated ({check.reason or 'no data'})"
        suite.cases.append(case)
        suite.out.append(f"[{check.status}] {message}")
    return suite


def _finding_suite(journal: JournalData) -> _Suite:
    suite = _Suite("findings")
    seen: dict[str, int] = {}
    for finding in journal.findings:
        endpoints = finding_endpoints(finding)
        base = finding.kind + (f" {', '.join(endpoints)}" if endpoints else "")
        case = _Case(_unique(base, seen), kind="finding")
        title = finding_title(finding)
        if finding.status not in ("found", "held"):
            case.outcome = "skipped"
            case.message = f"{finding.kind}: {finding.status.replace('_', ' ')} — {finding.summary}"
        elif finding_is_failing(finding):
            case.outcome, case.message = "failure", title
            case.details = json.dumps(finding.evidence, sort_keys=True, default=str)
        suite.cases.append(case)
        suite.out.append(f"[{finding.status}{', fails run' if finding.fails_run else ''}] {title}")
    return suite


def _run_suite(journal: JournalData, others: Sequence[_Suite]) -> _Suite:
    suite = _Suite("run")
    case = _Case("status", time=_duration(journal), kind="run")
    explained = any(c.outcome == "failure" for s in others for c in s.cases)
    reason = journal.reason or "no reason recorded"
    if journal.status not in ("passed", "failed"):
        case.outcome = "failure"
        case.message = f"the run did not complete: {journal.status} ({reason})"
    elif journal.status == "failed" and not explained:
        case.outcome, case.message = "failure", f"the run failed: {reason}"
    suite.cases.append(case)
    suite.out.append(f"status {journal.status}, exit code {journal.exit_code}: {reason}")
    knee = breaking_point(journal)
    if knee:
        suite.out.append(knee)
    suite.out.extend(f"rig: {line}" for line in rig_statements(journal))
    return suite


def _properties(journal: JournalData) -> list[tuple[str, str]]:
    props = [
        ("experiment", journal.experiment),
        ("profile", journal.profile or ""),
        ("status", journal.status),
        ("exit_code", "" if journal.exit_code is None else str(journal.exit_code)),
        ("started_at", journal.started_at),
        ("ended_at", journal.ended_at or ""),
        ("target", journal.target or ""),
        ("shop_mode", journal.shop_mode or ""),
    ]
    if journal.reason:
        props.append(("reason", journal.reason))
    knee = breaking_point(journal)
    if knee:
        props.append(("breaking_point", knee))
    return props


def render_junit(journal: JournalData, *, hostname: str | None = None) -> str:
    """The JUnit XML document (``<testsuites>``) for a run's journal."""
    host = (
        hostname or str((journal.model_extra or {}).get("hostname") or "") or socket.gethostname()
    )
    durations = _phase_durations(journal)
    suites = [
        _slo_suite(journal, durations),
        _check_suite(journal, durations),
        _finding_suite(journal),
    ]
    suites.append(_run_suite(journal, suites))
    slug = _SLUG.sub("_", journal.experiment).strip("_") or "experiment"
    timestamp = _timestamp(journal.started_at)
    # Every suite observed the whole run, so each reports the run's duration.
    run_time = _duration(journal)
    root = ET.Element("testsuites")
    for index, suite in enumerate(suites):
        package = f"resilience.{slug}"
        failures = sum(c.outcome == "failure" for c in suite.cases)
        skipped = sum(c.outcome == "skipped" for c in suite.cases)
        element = ET.SubElement(
            root,
            "testsuite",
            {
                "name": suite.name,
                "package": package,
                "id": str(index),
                "timestamp": timestamp,
                "hostname": xml_text(host or "localhost"),
                "tests": str(len(suite.cases)),
                "failures": str(failures),
                "errors": "0",
                "skipped": str(skipped),
                "time": f"{run_time:.3f}",
            },
        )
        properties = ET.SubElement(element, "properties")
        for name, value in _properties(journal):
            ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
        for case in suite.cases:
            tc = ET.SubElement(
                element,
                "testcase",
                {
                    "name": xml_text(case.name),
                    "classname": f"{package}.{suite.name}",
                    "time": f"{case.time:.3f}",
                },
            )
            if case.outcome == "failure":
                failure = ET.SubElement(
                    tc, "failure", {"message": xml_text(case.message), "type": case.kind}
                )
                failure.text = xml_text(case.details or case.message)
            elif case.outcome == "skipped":
                skipped_el = ET.SubElement(tc, "skipped", {"message": xml_text(case.message)})
                skipped_el.text = xml_text(case.message)
        ET.SubElement(element, "system-out").text = xml_text("\n".join(suite.out))
        ET.SubElement(element, "system-err").text = ""
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
