"""The HTML report in a real browser (Debian's headless Chromium): charts drawn, no errors.

Two page loads: the report itself, screenshotted at a fixed window size, and a probe copy
with a tiny script that records window errors, console errors and Content-Security-Policy
violations (an attempt to fetch anything) and writes them, with every chart's position,
into the DOM that ``--dump-dom`` prints. The chart positions tell which screenshot pixels
to inspect.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from resilience.report import write_reports
from resilience.report.html import CSP
from resilience.testing.sample_run import write_sample_run

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1400, 3000)
TIMEOUT_S = 120

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var what = e.message || (e.target && e.target.outerHTML ? e.target.outerHTML.slice(0, 120) : e.type);
  window.__errors.push('error: ' + what);
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
  var charts = Array.prototype.map.call(document.querySelectorAll('svg.chart'), function (s) {
    var r = s.getBoundingClientRect();
    return {id: s.id, x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
  });
  var out = document.createElement('pre');
  out.id = '__probe';
  out.textContent = JSON.stringify({errors: window.__errors, charts: charts});
  document.body.appendChild(out);
});
</script>"""


def _chromium(
    profile: Path, *args: str, window: tuple[int, int] = WINDOW
) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium in its own process group; the whole group dies on timeout."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={window[0]},{window[1]}",
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            "headless browser check needs /usr/bin/chromium "
            "(apt-get install -y chromium, or scripts/bootstrap --browser)"
        )
    run_dir = tmp_path_factory.mktemp("run")
    view = write_sample_run(run_dir, load_files=False)
    return write_reports(run_dir, load=view).html


@pytest.fixture(scope="module")
def probe(report: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Errors and chart boxes from a copy of the report with the probe script."""
    text = report.read_text(encoding="utf-8")
    assert CSP in text
    # The probe's own inline script must run (allowed by its hash beside the report's own
    # script's); every other restriction stays in force.
    body = PROBE.removeprefix("<script>").removesuffix("</script>")
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    text = text.replace(CSP, CSP + f" 'sha256-{digest}'").replace(
        "<meta charset='utf-8'>", "<meta charset='utf-8'>" + PROBE, 1
    )
    page = report.with_name("probe.html")
    page.write_text(text, encoding="utf-8")
    profile = tmp_path_factory.mktemp("chromium-probe")
    result = _chromium(profile, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    match = re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no probe output; chromium said:\n{result.stderr[-2000:]}"
    data: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return data


@pytest.fixture(scope="module")
def screenshot(report: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Image.Image, str]:
    profile = tmp_path_factory.mktemp("chromium-shot")
    png = profile.parent / f"{profile.name}.png"
    result = _chromium(
        profile, "--enable-logging=stderr", "--v=0", f"--screenshot={png}", report.as_uri()
    )
    assert png.is_file(), f"no screenshot; chromium said:\n{result.stderr[-2000:]}"
    return Image.open(png).convert("RGB"), result.stderr


def _saturated(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Pixels with clear colour (lines, bars), as opposed to white, greys and black text."""
    pixels = np.asarray(image.crop(box), dtype=np.int16)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return int((spread > 60).sum())


def test_page_has_no_errors(probe: dict[str, Any]) -> None:
    """No script errors, no console errors, no blocked fetches (the page is self-contained)."""
    assert probe["errors"] == []


def test_charts_are_laid_out_at_their_size(probe: dict[str, Any]) -> None:
    """Every chart is rendered at its declared size; the timeline charts come first."""
    charts = {c["id"]: c for c in probe["charts"]}
    assert {"chart-throughput", "chart-latency", "check-0", "finding-0-trace"} <= set(charts)
    assert charts["chart-throughput"]["w"] == 1100
    assert charts["chart-throughput"]["h"] == 240
    assert (
        charts["chart-throughput"]["y"]
        < charts["chart-latency"]["y"]
        < charts["finding-0-trace"]["y"]
    )
    assert charts["check-0"]["y"] > charts["finding-0-trace"]["y"]  # the tables come later


def test_chart_areas_are_not_blank(
    probe: dict[str, Any], screenshot: tuple[Image.Image, str]
) -> None:
    """Inside each chart visible in the screenshot there are coloured lines or bars."""
    image, _ = screenshot
    assert image.size == WINDOW
    visible = [c for c in probe["charts"] if c["y"] + c["h"] <= WINDOW[1] and c["h"] > 0]
    assert {c["id"] for c in visible} >= {"chart-throughput", "chart-latency"}
    for chart in visible:
        box = (
            round(chart["x"]),
            round(chart["y"]),
            round(chart["x"] + chart["w"]),
            round(chart["y"] + chart["h"]),
        )
        assert _saturated(image, box) > 300, f"chart {chart['id']} looks blank"


def test_fault_window_is_shaded(probe: dict[str, Any], screenshot: tuple[Image.Image, str]) -> None:
    """The fault window (15.04-30.02 s) is tinted red in the throughput chart, the rest is not."""
    image, _ = screenshot
    chart = next(c for c in probe["charts"] if c["id"] == "chart-throughput")
    left, top = chart["x"] + 64, chart["y"] + 30  # the plot area inside the chart's margins

    pixels = np.asarray(image, dtype=np.int16)

    def tint(second: float) -> float:
        """Share of a pixel column in the plot area that is tinted red."""
        x = round(left + second / 45 * 1020)
        column = pixels[round(top) + 20 : round(top) + 150, x]
        return float(((column[:, 0] - column[:, 1]) > 12).mean())

    assert tint(22.0) > 0.8
    assert tint(7.0) < 0.1
    assert tint(40.0) < 0.1


def test_browser_logged_no_console_errors(screenshot: tuple[Image.Image, str]) -> None:
    """Chromium's own log of the report load has no console messages or refused loads."""
    _, log = screenshot
    lines = [line for line in log.splitlines() if "CONSOLE" in line or "Refused to" in line]
    assert lines == []
