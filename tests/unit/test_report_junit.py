"""JUnit XML: valid against the strict Ant schema, failures exactly for the failed items."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from resilience.report.junit import render_junit
from resilience.rundir.journal import Journal, JournalData
from resilience.testing.sample_run import write_sample_run

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "JUnit.xsd"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA))


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> JournalData:
    run_dir = tmp_path_factory.mktemp("fragile")
    write_sample_run(run_dir, load_files=False)
    return Journal.read(run_dir / "journal.json")


def _cases(xml: str, outcome: str) -> set[tuple[str, str]]:
    root = ET.fromstring(xml)
    return {
        (suite.get("name", ""), case.get("name", ""))
        for suite in root.iter("testsuite")
        for case in suite.iter("testcase")
        if case.find(outcome) is not None
    }


def test_validates_against_the_schema(schema: xmlschema.XMLSchema, fragile: JournalData) -> None:
    """Every suite carries what the strict schema requires (timestamp, hostname, properties...)."""
    schema.validate(render_junit(fragile))


def test_failures_exactly_for_failed_items(fragile: JournalData) -> None:
    """Failed SLOs, failed checks and run-failing findings fail; nothing else does."""
    failures = _cases(render_junit(fragile), "failure")
    slo = {
        f"{s.phase} {s.endpoint or 'all endpoints'} {s.metric}"
        for s in fragile.slo
        if s.passed is False
    }
    checks = {f"{c.name} ({c.phase})" for c in fragile.checks if c.status == "failed"}
    findings = {
        "cascading_failure GET /catalog/items",
        "timeout GET /orders/{id}, POST /orders",
        "slow_recovery",
    }
    assert len(slo) == 3
    assert len(checks) == 1
    assert {f.kind for f in fragile.findings if f.fails_run} == {
        "cascading_failure",
        "timeout",
        "slow_recovery",
    }
    expected = (
        {("slo", n) for n in slo}
        | {("checks", n) for n in checks}
        | {("findings", n) for n in findings}
    )
    # The run case does not fail: the run's failure is explained by the cases above.
    assert failures == expected


def test_counts_and_messages(fragile: JournalData) -> None:
    """Suite counts match their cases; failure messages read like the SLO they broke."""
    root = ET.fromstring(render_junit(fragile))
    for suite in root.iter("testsuite"):
        cases = list(suite.iter("testcase"))
        assert int(suite.get("tests", "-1")) == len(cases)
        assert int(suite.get("failures", "-1")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("skipped", "-1")) == sum(c.find("skipped") is not None for c in cases)
    messages = [f.get("message") for f in root.iter("failure")]
    assert "fault GET /catalog/items p95 2550 ms > 500 ms" in messages
    assert "fault GET /catalog/items error_rate 20.00% > 1.00%" in messages
    skipped = [s.get("message", "") for s in root.iter("skipped")]
    assert any("GET /health p95: not evaluated" in m for m in skipped)
    assert any(m.startswith("queue depth: not evaluated") for m in skipped)
    assert any(m.startswith("retry_amplification: not evaluated") for m in skipped)
    suites = [s.get("name") for s in root.iter("testsuite")]
    assert suites == ["slo", "checks", "findings", "run"]
    assert [s.get("id") for s in root.iter("testsuite")] == ["0", "1", "2", "3"]
    assert root.find("testsuite").get("timestamp") == "2025-11-25T14:30:00"  # type: ignore[union-attr]


def test_passed_run_has_no_failures(schema: xmlschema.XMLSchema, tmp_path: Path) -> None:
    """The hardened sample passes: no failure anywhere, still valid."""
    write_sample_run(tmp_path, variant="hardened", load_files=False)
    journal = Journal.read(tmp_path / "journal.json")
    xml = render_junit(journal)
    schema.validate(xml)
    assert journal.status == "passed"
    assert _cases(xml, "failure") == set()


def test_aborted_run_fails_the_run_case(schema: xmlschema.XMLSchema, tmp_path: Path) -> None:
    """A run that did not complete fails the run suite even with no failed item."""
    journal = Journal.start(tmp_path / "journal.json", experiment="x", profile=None, t0=1.7e9)
    journal.finish("aborted", ended=1.7e9 + 12.5, exit_code=1, reason="guard tripped: errors")
    xml = render_junit(journal.data, hostname="ci-host")
    schema.validate(xml)
    assert _cases(xml, "failure") == {("run", "status")}
    root = ET.fromstring(xml)
    failure = root.find(".//failure")
    assert failure is not None
    assert "aborted (guard tripped: errors)" in failure.get("message", "")
    assert root.find("testsuite").get("time") == "12.500"  # type: ignore[union-attr]


def test_hostile_text_stays_valid_xml(schema: xmlschema.XMLSchema, tmp_path: Path) -> None:
    """Markup, quotes and control characters in names and messages cannot break the XML."""
    hostile = '<x a="1">&amp;\x07\x1b]]></x> ok'
    write_sample_run(tmp_path, hostile=hostile, load_files=False)
    xml = render_junit(Journal.read(tmp_path / "journal.json"))
    schema.validate(xml)
    assert "\x07" not in xml
    root = ET.fromstring(xml)
    names = [c.get("name", "") for c in root.iter("testcase")]
    assert any('<x a="1">&amp;' in n for n in names)
