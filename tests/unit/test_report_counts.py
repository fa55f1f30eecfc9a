"""The three reports of one run tell the same counts: report.html, summary.md and junit.xml."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resilience.report import write_reports
from resilience.rundir.journal import CheckRecord, FindingRecord, Journal
from resilience.testing.sample_run import write_sample_run


def _with_every_kind_of_result(run_dir: Path) -> None:
    """Add checks and findings of every status to the sample run's journal."""
    path = run_dir / "journal.json"
    data = Journal.read(path)

    def check(name: str, status: str, severity: str, fails: bool) -> CheckRecord:
        return CheckRecord(
            name=name, phase="fault", promql="max(x)", expect="== 0", status=status,  # type: ignore[arg-type]
            passed={"passed": True, "failed": False}.get(status), severity=severity,
            fails_run=fails, observed={"max": 3.0},
        )  # fmt: skip

    data.checks += [
        check("critical miss", "failed", "critical", True),
        check("informational miss", "failed", "info", False),
        check("warning miss", "failed", "warning", False),
        check("no data", "not_evaluated", "info", False),
        check("fine", "passed", "critical", False),
    ]
    data.findings += [
        FindingRecord(kind="held_one", severity="info", summary="held", status="held"),
        FindingRecord(kind="nothing", severity="critical", summary="n/e", status="not_evaluated"),
        FindingRecord(kind="maybe", severity="info", summary="?", status="inconclusive"),
    ]
    Journal(path, data)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, ET.Element]:
    run_dir = tmp_path_factory.mktemp("counts")
    view = write_sample_run(run_dir, load_files=False)
    _with_every_kind_of_result(run_dir)
    paths = write_reports(run_dir, load=view)
    return (
        paths.html.read_text(encoding="utf-8"),
        paths.markdown.read_text(encoding="utf-8"),
        ET.parse(paths.junit).getroot(),
    )


def _suite(junit: ET.Element, name: str) -> dict[str, int]:
    suite = next(s for s in junit.iter("testsuite") if s.get("name") == name)
    return {k: int(suite.get(k, "0")) for k in ("tests", "failures", "skipped")}


def _numbers(pattern: str, text: str) -> tuple[int, ...]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the text"
    return tuple(int(g) for g in match.groups())


SLO = r"(\d+) of (\d+) SLOs failed"
CHECKS = r"(\d+) of (\d+) checks held, (\d+) failed, (\d+) did not hold \(informational\), (\d+) not evaluated"
FINDINGS = (
    r"(\d+) of (\d+) findings fail the run, (\d+) more found, (\d+) not evaluated or inconclusive"
)


def test_slo_counts_agree(reports: tuple[str, str, ET.Element]) -> None:
    """Failed and total SLOs: the HTML header, the Markdown summary and JUnit's slo suite."""
    html, markdown, junit = reports
    verdict = html[: html.index("id='story'")]
    failed, total = _numbers(SLO, verdict)
    assert _numbers(SLO, markdown) == (failed, total)
    suite = _suite(junit, "slo")
    assert (suite["failures"], suite["tests"]) == (failed, total)
    table = html[html.index("id='slo'") : html.index("id='checks'")]
    assert failed == table.count("<span class='badge fail'>failed</span></td>") > 0


def test_check_counts_agree(reports: tuple[str, str, ET.Element]) -> None:
    """Held, failed, informational misses and not evaluated: the same in all three reports,
    and the HTML's badges in the checks table count the same."""
    html, markdown, junit = reports
    verdict = html[: html.index("id='story'")]
    held, total, failed, observed, skipped = _numbers(CHECKS, verdict)
    assert _numbers(CHECKS, markdown) == (held, total, failed, observed, skipped)
    assert held + failed + observed + skipped == total
    suite = _suite(junit, "checks")
    assert (suite["tests"], suite["failures"], suite["skipped"]) == (total, failed, skipped)
    table = html[html.index("id='checks'") : html.index("id='check-charts'")]
    assert table.count("<span class='badge fail'>failed</span>") == failed >= 1
    assert table.count("did not hold (informational)</span>") == observed == 2
    assert table.count(">held</span>") == held
    assert table.count(">not evaluated</span>") == skipped


def test_finding_counts_agree(reports: tuple[str, str, ET.Element]) -> None:
    """Findings that fail the run, warn, and were not evaluated: the same in all three."""
    html, markdown, junit = reports
    verdict = html[: html.index("id='story'")]
    failing, total, warning, unsure = _numbers(FINDINGS, verdict)
    assert _numbers(FINDINGS, markdown) == (failing, total, warning, unsure)
    suite = _suite(junit, "findings")
    assert (suite["tests"], suite["failures"], suite["skipped"]) == (total, failing, unsure)
    findings = html[html.index("id='findings'") : html.index("id='phases'")]
    assert findings.count("(fails the run)</span>") == failing
    assert findings.count("(does not fail the run)</span>") == warning
