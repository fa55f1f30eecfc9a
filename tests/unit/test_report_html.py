"""The HTML report on synthetic run directories: content, order, escaping, self-containment, size."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resilience.report import read_run, write_reports
from resilience.report.html import HOVER_SCRIPT, render_html
from resilience.testing.sample_run import CASCADE_TRACE, write_sample_run

HOSTILE = (
    '<script>alert("x")</script><img src=x onerror=alert(1)> & "quoted" | [l](http://evil.example)'
)


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> str:
    run_dir = tmp_path_factory.mktemp("fragile")
    view = write_sample_run(run_dir, variant="fragile", load_files=False)
    return render_html(read_run(run_dir, load=view))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> str:
    run_dir = tmp_path_factory.mktemp("hostile")
    view = write_sample_run(run_dir, hostile=HOSTILE, load_files=False)
    return render_html(read_run(run_dir, load=view))


def _svg(html: str, chart_id: str) -> ET.Element:
    match = re.search(rf'<svg id="{re.escape(chart_id)}".*?</svg>', html, re.S)
    assert match, f"no chart {chart_id}"
    return ET.fromstring(match.group(0))


def test_sections_in_order_verdict_first(fragile: str) -> None:
    """Verdict, what happened, timeline, findings with evidence, then the tables, in order."""
    ids = ["verdict", "story", "timeline", "findings", "phases", "slo", "checks", "recovery"]
    ids.append("experiment")
    positions = [fragile.index(f"id='{i}'") for i in ids]
    assert positions == sorted(positions)
    verdict = fragile[positions[0] : positions[1]]
    assert "failed" in verdict
    assert "exit code <b>1</b>" in verdict
    assert "findings fail the run" in verdict


def test_what_happened_names_the_fault_the_hurt_and_the_recovery(fragile: str) -> None:
    """Two or three generated sentences: the fault, who suffered (with numbers), the recovery."""
    story = fragile[fragile.index("id='story'") : fragile.index("id='timeline'")]
    assert "A timeout of postgres from 15.0 s to 30.0 s" in story
    assert "GET /catalog/items (p95 " in story
    assert "recovered 9.0 s after the heal (budget 5.0 s)" in story


def test_expected_breach_is_labelled(tmp_path: Path) -> None:
    """An endpoint the experiment lets fail during the fault reads "expected: fails fast"."""
    view = write_sample_run(tmp_path, variant="hardened", load_files=False)
    html = render_html(read_run(tmp_path, load=view))
    story = html[html.index("id='story'") : html.index("id='timeline'")]
    assert "As the experiment allows, " in story
    assert "expected: fails fast" in story
    phases = html[html.index("id='phases'") : html.index("id='slo'")]
    assert "<span class='badge expected'>expected: fails fast</span>" in phases


def test_timeline_charts_with_fault_shading_and_stamps(fragile: str) -> None:
    """Both timeline charts exist, shade the 15.04-30.02 s fault window and mark apply/heal."""
    for chart_id in ("chart-throughput", "chart-latency"):
        svg = _svg(fragile, chart_id)
        shaded = [r for r in svg.iter("rect") if r.get("class") == "fault-window"]
        assert len(shaded) == 1
        # x axis: 64 px margin, 1020 px for 0..45 s.
        x, width = float(shaded[0].get("x", "0")), float(shaded[0].get("width", "0"))
        assert x == pytest.approx(64 + 15.04 / 45 * 1020, abs=1)
        assert width == pytest.approx(14.98 / 45 * 1020, abs=1)
        labels = [t.text or "" for t in svg.iter("text") if t.get("class") == "mark-label"]
        assert any(label.startswith("applied postgres") for label in labels)
        assert any(label.startswith("healed postgres") for label in labels)
        assert [p for p in svg.iter("path") if p.get("class") == "series"]


def test_every_svg_is_well_formed_xml(fragile: str) -> None:
    """Each inline chart parses as XML on its own (no stray markup inside)."""
    charts = re.findall(r"<svg .*?</svg>", fragile, re.S)
    assert len(charts) >= 6
    for chart in charts:
        ET.fromstring(chart)


def test_phase_tables_slo_and_checks(fragile: str) -> None:
    """Per-phase endpoint tables, the SLO table with observed vs threshold, check charts."""
    phases = fragile[fragile.index("id='phases'") : fragile.index("id='slo'")]
    assert phases.count("<table>") == 3
    assert "GET /catalog/items" in phases
    slo = fragile[fragile.index("id='slo'") : fragile.index("id='checks'")]
    assert "fault GET /catalog/items p95 2550 ms &gt; 500 ms" in slo
    assert "not evaluated" in slo
    check_chart = _svg(fragile, "check-0")
    assert [p for p in check_chart.iter("path") if p.get("class") == "series"]


def test_finding_evidence_waterfall_highlights_explaining_span(fragile: str) -> None:
    """The cascading failure shows its trace as a waterfall with the explaining span marked,
    its explanation in one line above it and its numbers in words below."""
    findings = fragile[fragile.index("id='findings'") : fragile.index("id='phases'")]
    assert CASCADE_TRACE in findings
    waterfall = _svg(fragile, "finding-0-trace")
    bars = [r for r in waterfall.iter("rect") if "span-bar" in (r.get("class") or "")]
    assert len(bars) == 5
    highlighted = [r for r in bars if "explaining-span" in (r.get("class") or "")]
    # Two spans share the name; the evidence's duration (2298 ms) picks the long one.
    assert len(highlighted) == 1
    assert highlighted[0].findtext("title", "").startswith("gateway: pool.acquire upstream")
    assert "lasts 2298 ms" in highlighted[0].findtext("title", "")
    first = findings[: findings.index('id="finding-0-trace"')]
    assert "<b>Why:</b> gateway: pool.acquire upstream (2298 ms" in first
    assert "waited 2.3 s for the gateway&#x27;s shared upstream pool" in first
    assert "{" not in findings.split("<svg")[0]  # no JSON dumps before the first chart
    assert "…" not in findings
    assert "is saved under traces/" not in findings  # the timeout's first trace id exists


def test_trace_ids_link_to_the_trace_ui(tmp_path: Path) -> None:
    """With the trace UI's URL recorded in evidence.json, every trace id is a link to it."""
    from resilience.rundir.evidence import Evidence, SourceEvidence

    view = write_sample_run(tmp_path, load_files=False)
    own = SourceEvidence(status="gathered", run_trace_id="ab" * 16)
    Evidence(trace_ui="http://127.0.0.1:16686/trace/{trace_id}", client_spans=own).save(tmp_path)
    html = render_html(read_run(tmp_path, load=view))
    assert f"href='http://127.0.0.1:16686/trace/{CASCADE_TRACE}'" in html
    header = html[: html.index("id='verdict'")]
    assert (
        "run trace: <a class='trace-link' href='http://127.0.0.1:16686/trace/" + "ab" * 16 in header
    )
    links = re.findall(r"<a class='trace-link' href='([^']*)'", html)
    assert links and all(u.startswith("http://127.0.0.1:16686/trace/") for u in links)


def test_charts_carry_hover_values(fragile: str) -> None:
    """Each line of a line chart carries its times and formatted values for the hover script."""
    chart = _svg(fragile, "chart-latency")
    assert chart.get("data-x", "").count(",") == 3
    paths = [p for p in chart.iter("path") if p.get("class") == "series"]
    for path in paths:
        times, values = path.get("data-t", "").split("|"), path.get("data-v", "").split("|")
        assert len(times) == len(values) > 10
    assert any(v.endswith(" ms") for v in paths[1].get("data-v", "").split("|"))


def test_recovery_section(fragile: str) -> None:
    """Recovery shows seconds against the budget, over budget, and the degradation area."""
    recovery = fragile[fragile.index("id='recovery'") : fragile.index("id='experiment'")]
    assert "recovered after 9.0 s" in recovery
    assert "over budget" in recovery
    assert "s of lost good service" in recovery
    bar = _svg(fragile, "recovery-bar")
    assert [r for r in bar.iter("rect") if r.get("class") == "budget-recovery"]


def test_self_contained_no_external_resources(fragile: str) -> None:
    """No links, images or URLs to fetch; one inline script, allowed by its hash in a CSP
    that forbids every fetch."""
    lowered = fragile.lower()
    for tag in ("<link", "<img", "<iframe", "<object", "<embed", "@import", "url("):
        assert tag not in lowered
    assert lowered.count("<script") == 1
    assert f"<script>{HOVER_SCRIPT}</script>" in fragile
    assert not re.search(r"\b(?:src|action|xlink:href)\s*=", lowered)
    assert all(h.startswith("#") for h in re.findall(r"href='([^']*)'", fragile))
    assert "default-src 'none'" in fragile
    digest = base64.b64encode(hashlib.sha256(HOVER_SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in fragile
    # The target URL appears only as text, never as something to load.
    assert "http://127.0.0.1:18000" in fragile


def test_hostile_strings_are_escaped(hostile: str) -> None:
    """Experiment names, endpoints, check names, span names and labels are all escaped."""
    assert HOSTILE not in hostile
    assert hostile.lower().count("<script") == 1  # the report's own hover script
    assert "<img" not in hostile.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in hostile
    for chart in re.findall(r"<svg .*?</svg>", hostile, re.S):
        ET.fromstring(chart)


def test_report_without_load_data(tmp_path: Path) -> None:
    """A run directory without load data still gets a report that says so."""
    write_sample_run(tmp_path, load_files=False)
    html = render_html(read_run(tmp_path))
    assert "No load data in this run directory" in html
    assert 'id="chart-throughput"' not in html
    assert "id='verdict'" in html


def test_smoke_report_size_bound(tmp_path: Path) -> None:
    """A smoke run's report stays far below 2 MB; a 10-minute run too."""
    smoke = write_sample_run(tmp_path / "smoke", load_files=False)
    paths = write_reports(tmp_path / "smoke", load=smoke)
    assert paths.html.stat().st_size < 2_000_000
    longer = write_sample_run(
        tmp_path / "long", duration=600, fault=(200.0, 300.0), rate=1, load_files=False
    )
    paths = write_reports(tmp_path / "long", load=longer)
    assert paths.html.stat().st_size < 2_000_000
