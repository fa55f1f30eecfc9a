"""A db-hang smoke run on the real stack, as people will look at it: the report in Debian's
Chromium, the load's series in the stack's Prometheus, the saved traces rooted in the load
engine's own client spans. Also writes the report screenshots of docs/reports.md.

One fragile and one hardened run (cached for the session by ``runs``). The report is
measured in a 1,400 x 900 window: the cascade's one-line explanation and its waterfall must
start within two screens after the timeline charts; a probe copy records script errors,
console errors, CSP violations and every resource the page loaded (there must be none).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from resilience.analysis.data import window_stats
from resilience.observe.prometheus import HttpPrometheusSource
from resilience.report.html import CSP
from resilience.rundir.evidence import Evidence
from resilience.rundir.journal import Journal, JournalData
from resilience.rundir.load import LoadData, read_trace_refs
from resilience.rundir.reader import read_run
from resilience.runner.orchestrator import RunResult
from tests.integration.conftest import StackHandle
from tests.integration.test_report_browser import CHROMIUM, _chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCREEN = (1400, 900)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "images"

PROBE = """
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push('error: ' + (e.message || e.type));
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  window.__errors.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI);
});
var __consoleError = console.error;
console.error = function () {
  window.__errors.push('console: ' + Array.prototype.join.call(arguments, ' '));
  __consoleError.apply(console, arguments);
};
window.addEventListener('load', function () {
  function box(el) {
    if (!el) return null;
    var r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
  }
  var cascade = Array.prototype.find.call(document.querySelectorAll('#findings article'),
    function (a) { return a.querySelector('h3').textContent.indexOf('cascading_failure') >= 0; });
  var chart = document.getElementById('chart-throughput');
  var r = chart.getBoundingClientRect();
  chart.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + r.width / 2,
    clientY: r.top + r.height / 2, bubbles: true}));
  var tip = document.querySelector('.hover-tip');
  var links = Array.prototype.map.call(cascade ? cascade.querySelectorAll('a.trace-link') : [],
    function (a) { return {href: a.getAttribute('href'), text: a.textContent}; });
  var out = document.createElement('pre');
  out.id = '__probe';
  out.textContent = JSON.stringify({
    errors: window.__errors,
    resources: performance.getEntriesByType('resource').map(function (e) { return e.name; }),
    latency: box(document.getElementById('chart-latency')),
    cascade: box(cascade),
    explanation: box(cascade && cascade.querySelector('p.explanation')),
    explanation_text: cascade && cascade.querySelector('p.explanation') ?
      cascade.querySelector('p.explanation').textContent : null,
    waterfall: box(cascade && cascade.querySelector('svg.waterfall')),
    hover: tip && !tip.hidden ? tip.textContent : null,
    links: links
  });
  document.body.appendChild(out);
});
"""


def _probe_page(report: Path) -> Path:
    """A copy of the report with the probe script, allowed by its own hash beside ours."""
    text = report.read_text(encoding="utf-8")
    assert CSP in text
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    text = text.replace(CSP, CSP + f" 'sha256-{digest}'").replace(
        "<meta charset='utf-8'>", f"<meta charset='utf-8'><script>{PROBE}</script>", 1
    )
    page = report.with_name("probe.html")
    page.write_text(text, encoding="utf-8")
    return page


def _measure(report: Path, profile: Path) -> dict[str, Any]:
    result = _chromium(
        profile,
        "--virtual-time-budget=5000",
        "--dump-dom",
        _probe_page(report).as_uri(),
        window=SCREEN,
    )
    match = re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no probe output; chromium said:\n{result.stderr[-2000:]}"
    data: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return data


def _screenshot(report: Path, profile: Path, png: Path, height: int) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    result = _chromium(profile, f"--screenshot={png}", report.as_uri(), window=(SCREEN[0], height))
    assert png.is_file(), f"no screenshot; chromium said:\n{result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def fragile(runs: Any) -> RunResult:
    result: RunResult = runs.run("db-hang", mode="fragile")
    assert result.run_dir is not None and result.exit_code == 1, result.reason
    return result


@pytest.fixture(scope="module")
def hardened(runs: Any) -> RunResult:
    result: RunResult = runs.run("db-hang", mode="hardened")
    assert result.run_dir is not None, result.reason
    return result


def _journal(result: RunResult) -> JournalData:
    assert result.run_dir is not None
    return Journal.read(result.run_dir / "journal.json")


@pytest.fixture(scope="module")
def measured(fragile: RunResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not CHROMIUM.exists():
        pytest.skip("the browser check needs /usr/bin/chromium (apt-get install -y chromium)")
    assert fragile.run_dir is not None
    return _measure(fragile.run_dir / "report.html", tmp_path_factory.mktemp("chromium"))


def test_cascade_and_its_explanation_are_within_two_screens_after_the_charts(
    measured: dict[str, Any],
) -> None:
    """In a 1,400 x 900 window, the cascade's one-line explanation and the top of its
    waterfall start less than two screens below the bottom of the timeline charts."""
    assert measured["cascade"] is not None, "no cascading_failure finding in the report"
    charts_end = measured["latency"]["y"] + measured["latency"]["h"]
    assert measured["explanation"] is not None and measured["waterfall"] is not None
    assert "Why:" in measured["explanation_text"]
    assert measured["explanation"]["y"] - charts_end < 2 * SCREEN[1]
    assert measured["waterfall"]["y"] - charts_end < 2 * SCREEN[1]
    assert measured["explanation"]["y"] < measured["waterfall"]["y"]


def test_the_page_has_no_errors_no_requests_and_hover_values(measured: dict[str, Any]) -> None:
    """No script or console errors, no CSP violation, nothing fetched; hovering the
    throughput chart shows its values."""
    assert measured["errors"] == []
    assert measured["resources"] == []
    assert measured["hover"] and "req/s:" in measured["hover"]


def test_trace_ids_link_to_the_stacks_jaeger(
    measured: dict[str, Any], fragile: RunResult, stack: StackHandle
) -> None:
    """Each trace id of the cascade links to Jaeger's page for that trace."""
    assert measured["links"]
    for link in measured["links"]:
        assert link["href"] == f"{stack.jaeger_query_url}/trace/{link['text']}"
    assert fragile.run_dir is not None
    evidence = Evidence.load(fragile.run_dir)
    assert evidence is not None
    assert evidence.trace_ui == stack.jaeger_query_url + "/trace/{trace_id}"


def test_saved_traces_are_rooted_in_the_load_engines_client_span(fragile: RunResult) -> None:
    """Every saved trace of a kept request has the load engine's CLIENT span (its own ids)
    as its root, and the report's waterfall says so."""
    assert fragile.run_dir is not None
    run = read_run(fragile.run_dir)
    refs = {r.trace_id: r for r in read_trace_refs(fragile.run_dir)}
    saved = [p.stem for p in (fragile.run_dir / "traces").glob("*.json") if p.stem in refs]
    assert len(saved) >= 20
    rooted = 0
    for trace_id in saved:
        trace = run.trace(trace_id)
        assert trace is not None
        root = trace.root()
        if root is not None and root.service == "resilience-load" and root.kind == "client":
            assert root.span_id == refs[trace_id].span_id
            assert root.parent_id is None
            rooted += 1
    assert rooted == len(saved), f"{len(saved) - rooted} of {len(saved)} traces without our root"
    report = (fragile.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Root: the load engine&#x27;s request" in report
    assert "resilience-load: " in report  # the root bar's label in the waterfall


def test_prometheus_holds_the_runs_load_and_fault_series(
    fragile: RunResult, stack: StackHandle
) -> None:
    """The stack's Prometheus scraped the run's live export: its req/s matches the run's
    own numbers in the baseline, and the fault gauge is 1 inside the fault window, 0 before."""
    assert fragile.run_dir is not None
    journal = _journal(fragile)
    run = fragile.run_dir.name
    fault = journal.faults[0]
    assert fault.applied_at is not None and fault.healed_at is not None
    baseline = next(p for p in read_run(fragile.run_dir).phases if p.name == "baseline")
    with HttpPrometheusSource(stack.prometheus_url, timeout=5.0) as prometheus:
        rps = prometheus.query_range(
            f'sum(rate(resilience_load_requests_total{{run="{run}"}}[3s]))',
            journal.t0 + baseline.start + 1, journal.t0 + baseline.end, 1.0,
        )  # fmt: skip
        active = prometheus.query_range(
            f'max(resilience_fault_active{{run="{run}",proxy="postgres"}})',
            journal.t0, journal.t0 + fault.healed_at - 0.5, 1.0,
        )  # fmt: skip
    assert rps and rps[0].points, "no resilience_load_requests_total series for the run"
    scraped = statistics.median(v for _, v in rps[0].points)
    load = LoadData.read(fragile.run_dir)
    recorded = window_stats(load, None, baseline.seconds()).rps or 0.0
    assert recorded > 0
    assert scraped == pytest.approx(recorded, rel=0.5)
    points = active[0].points
    inside = [v for t, v in points if t - journal.t0 >= fault.applied_at + 1.0]
    before = [v for t, v in points if t - journal.t0 <= fault.applied_at - 1.0]
    assert inside and set(inside) == {1.0}
    assert before and set(before) == {0.0}


def test_screenshots_of_the_reports_for_the_docs(
    fragile: RunResult, hardened: RunResult, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The first two screens of each report, as docs/reports.md shows them."""
    if not CHROMIUM.exists():
        pytest.skip("screenshots need /usr/bin/chromium")
    for name, result in (("fragile", fragile), ("hardened", hardened)):
        assert result.run_dir is not None
        png = DOCS / f"report-{name}.png"
        _screenshot(
            result.run_dir / "report.html", tmp_path_factory.mktemp(name), png, 2 * SCREEN[1]
        )
        assert png.stat().st_size > 50_000
