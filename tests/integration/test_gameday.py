"""Game days on the real stack: the console in Debian's Chromium, halts, and SIGKILL.

Each test starts `resilience gameday start` as a child process against the session's stack
(fragile shop, one load worker, at most a few minutes), drives it, and ends it. The browser
is Debian's Chromium driven by Playwright (never `playwright install`). Set
RESILIENCE_GAMEDAY_SCREENSHOTS=DIR to keep the walk-through's screenshots (docs/images).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration._runs import RESILIENCE, cli, cli_env, leftovers, wait_for
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLAN = """
name: test-gameday
experiment: db-hang
max_duration: {max_duration}
load: {{users: 20, spawn_rate: 20, client_timeout: 3s, workers: 1}}
halt: {halt}
steps:
  - name: database hang
    hypothesis: Orders fail fast, catalog unaffected, back within 30 s.
    faults: [db-hang]
    duration: 20s
    watch: [GET /catalog/items error rate]
"""


class Running:
    """A `gameday start` child process and what its session file says."""

    def __init__(self, process: subprocess.Popen[bytes], state: Path, out: Path, log: Path) -> None:
        self.process = process
        self.state = state
        self.out = out
        self.log = log
        self.info: dict[str, Any] = {}

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                raise AssertionError(f"gameday start exited: {self.log.read_text()}")
            try:
                info: dict[str, Any] = json.loads((self.state / "gameday.json").read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == self.process.pid else None

        self.info = wait_for(ready, timeout=timeout, every=0.2)

    @property
    def url(self) -> str:
        return f"{self.info['url_base']}/?token={self.info['token']}"

    def journal(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "journal.json").read_text())
        return data


@pytest.fixture
def start_session(fragile_shop: StackHandle, tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(halt: str = "[]", max_duration: str = "4m") -> Running:
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN.format(halt=halt, max_duration=max_duration), encoding="utf-8")
        out = tmp_path / "session"
        log = tmp_path / "gameday-start.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    RESILIENCE,
                    "gameday",
                    "start",
                    str(plan),
                    "--shop-mode",
                    "fragile",
                    "--out",
                    str(out),
                ],
                env=cli_env(fragile_shop),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = Running(process, fragile_shop.state, out, log)
        started.append(running)
        running.wait_ready()
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGINT)
            try:
                running.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(running.process.pid, signal.SIGKILL)
    assert leftovers(fragile_shop) == []


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"gameday-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("RESILIENCE_GAMEDAY_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(keep) / path.name)


def _error_rate(page: Any, endpoint: str) -> float:
    value = page.evaluate(
        """(name) => { const row = [...document.querySelectorAll('#live-table tbody tr')]
             .find(r => r.dataset.endpoint === name);
           return row ? row.querySelector('td.err').dataset.value : ''; }""",
        endpoint,
    )
    return float(value) if value not in ("", None) else 0.0


def _visible_within(page: Any, selector: str, text: str, timeout_s: float) -> float:
    """Seconds until ``text`` shows in ``selector`` on ``page`` (fails after the timeout)."""
    started = time.monotonic()
    page.locator(selector, has_text=text).first.wait_for(timeout=timeout_s * 1000)
    return time.monotonic() - started


def test_a_game_day_in_the_browser(  # noqa: PLR0915 (one walk-through, step by step)
    start_session: Any, fragile_shop: StackHandle, tmp_path: Path
) -> None:
    """Join, hypothesis, inject db-hang, catalog errors rise on the chart, observation (seen by
    a second browser and a terminal note seen by the first within 2 s), raise the load,
    heal, end: the report holds the window, the notes, the load change and the recovery."""
    from playwright.sync_api import sync_playwright

    running = start_session()
    base = running.info["url_base"]
    assert base.startswith("http://127.0.0.1:")
    assert httpx.get(f"{base}/", timeout=5).status_code == 401
    assert httpx.get(f"{base}/api/state", timeout=5).status_code == 401

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            facilitator = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            facilitator.on("dialog", lambda dialog: dialog.accept())
            facilitator.goto(running.url)
            facilitator.wait_for_selector("#connection:text('live')", timeout=15000)
            facilitator.fill("#join-name", "Ada")
            facilitator.select_option("#join-role", "facilitator")
            facilitator.click("#join-btn")
            facilitator.wait_for_selector("#people li:text('Ada — facilitator')", timeout=5000)
            facilitator.select_option("#note-kind", "hypothesis")
            facilitator.fill(
                "#note-text", "Orders fail fast, catalog unaffected, back within 30 s."
            )
            facilitator.click("#note-btn")
            facilitator.wait_for_selector("#notes li[data-kind='hypothesis']", timeout=5000)
            # a few seconds of baseline for the recovery band
            wait_for(
                lambda: (
                    facilitator.evaluate("document.querySelectorAll('#live-table tbody tr').length")
                    > 1
                ),
                timeout=20,
            )
            time.sleep(6)  # the baseline: the report's recovery band needs clean seconds
            _shot(facilitator, tmp_path, "baseline")

            facilitator.click("#named-faults button[data-name='db-hang']")
            facilitator.wait_for_selector("#active-faults li[data-id='0']", timeout=5000)
            wait_for(
                lambda: _error_rate(facilitator, "GET /catalog/items") > 0.2, timeout=40, every=0.5
            )
            errors_chart = facilitator.inner_html("#chart-errors-box")
            assert "fault-window" in errors_chart and "GET /catalog/items" in errors_chart
            _shot(facilitator, tmp_path, "fault")

            observer = browser.new_context().new_page()
            observer.goto(running.url)
            observer.wait_for_selector("#connection:text('live')", timeout=15000)
            facilitator.select_option("#note-kind", "observation")
            facilitator.fill("#note-text", "Catalog fails too: the shared pool cascades.")
            facilitator.click("#note-btn")
            seen_by_observer = _visible_within(observer, "#notes li", "shared pool cascades", 2.0)

            terminal = cli(
                fragile_shop,
                "gameday",
                "note",
                "Pool waiters pile up in Grafana",
                "--kind",
                "observation",
                "--author",
                "Bo",
            )
            assert terminal.returncode == 0, terminal.stderr
            seen_from_terminal = _visible_within(
                facilitator, "#notes li", "Pool waiters pile up", 2.0
            )

            facilitator.fill("#load-users", "30")
            facilitator.click("#load-btn")
            facilitator.wait_for_selector("#timeline li[data-kind='load']", timeout=5000)
            facilitator.click("#heal-all")
            facilitator.wait_for_selector("#active-faults li.muted", timeout=5000)
            assert leftovers(fragile_shop) == []
            time.sleep(25)  # fragile orders pause 10 s before reconnecting; the report measures it
            facilitator.select_option("#note-kind", "action")
            facilitator.fill("#note-text", "Give catalog its own connection pool.")
            facilitator.click("#note-btn")
            _shot(facilitator, tmp_path, "recovered")
            facilitator.click("#end-btn")
            facilitator.wait_for_selector("#ended:not([hidden])", timeout=60000)
            _shot(facilitator, tmp_path, "ended")
            report = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            report.goto((running.out / "report.html").resolve().as_uri())
            report.wait_for_selector("#window-0 .finding", timeout=5000)
            _shot(report, tmp_path, "report")
        finally:
            browser.close()
    assert running.process.wait(timeout=60) == 0, running.log.read_text()
    assert seen_by_observer < 2.0 and seen_from_terminal < 2.0, (
        seen_by_observer,
        seen_from_terminal,
    )

    journal = running.journal()
    assert journal["status"] == "passed" and journal["kind"] == "gameday"
    (window,) = journal["windows"]
    assert window["faults"] == [0] and window["end"] is not None
    recovery = window["recovery"]
    assert recovery["recovered"] is True and recovery["seconds"] is not None, recovery
    # Judged as a run is: by the session's phase marks, with the detectors' findings.
    assert window["analysis"]["phase_rule"] == "overlap"
    assert [(m["kind"], m["fault"]) for m in journal["marks"]] == [("apply", 0), ("heal", 0)]
    found = {f["kind"] for f in window["findings"] if f["status"] == "found"}
    assert "cascading_failure" in found, window["findings"]
    evidence = json.loads((running.out / "evidence.json").read_text())
    assert evidence["prometheus"]["status"] == "gathered", evidence["prometheus"]
    assert evidence["traces"]["status"] in ("gathered", "partial"), evidence["traces"]
    assert [n["text"] for n in journal["hypotheses"]] == [
        "Orders fail fast, catalog unaffected, back within 30 s."
    ]
    assert len(journal["observations"]) == 2 and len(journal["action_items"]) == 1
    assert any(e["kind"] == "load" and "-> 30 users" in e["text"] for e in journal["timeline"])
    fault = journal["faults"][0]
    assert fault["type"] == "hang" and fault["applied_at"] < fault["healed_at"]
    report = (running.out / "report.html").read_text()
    for text in (
        "hang on postgres",
        "Measured recovery: recovered",
        "data-kind='cascading_failure'",
        "Orders fail fast",
        "shared pool cascades",
        "Pool waiters pile up",
        "-&gt; 30 users",
        "own connection pool",
    ):
        assert text in report, text
    summary = (running.out / "summary.md").read_text()
    assert "Hypothesis (Ada" in summary and "## Action items" in summary
    print(
        f"note seen by a second browser after {seen_by_observer:.2f}s, from the terminal after "
        f"{seen_from_terminal:.2f}s; recovery {recovery['seconds']}s; found {sorted(found)}"
    )


def test_a_halt_condition_heals_every_fault_within_a_second(
    start_session: Any, fragile_shop: StackHandle
) -> None:
    """Catalog errors over 20 % for 2 s trip the halt: every fault is healed within 1 s of
    the trip and the timeline says why."""
    running = start_session(
        halt="[{name: catalog errors, load: error_rate, endpoint: GET /catalog/items, "
        "expect: '< 20%', for: 2s}]"
    )
    time.sleep(5)
    assert cli(fragile_shop, "gameday", "inject", "db-hang").returncode == 0
    assert (
        cli(
            fragile_shop,
            "gameday",
            "inject",
            "--proxy",
            "catalog",
            "--type",
            "latency",
            "-a",
            "latency=50ms",
        ).returncode
        == 0
    )

    def halted() -> dict[str, Any] | None:
        entries = [
            e
            for e in running.journal().get("timeline", [])
            if e["kind"] == "halt" and "tripped" in e["text"]
        ]
        return entries[0] if entries else None

    entry = wait_for(halted, timeout=60, every=0.2)
    assert leftovers(fragile_shop) == []
    detail = entry["detail"]
    assert sorted(detail["healed"]) == [0, 1] and detail["failed"] == []
    assert detail["healed_at"] - entry["t"] < 1.0, detail
    assert "catalog errors" in entry["text"]
    status = cli(fragile_shop, "gameday", "status", "--json")
    assert json.loads(status.stdout)["active_faults"] == []
    assert cli(fragile_shop, "gameday", "end", timeout=90).returncode == 0
    assert running.process.wait(timeout=60) == 0
    print(
        f"healed {detail['healed_at'] - entry['t']:.3f}s after the trip ({detail['heal_seconds']}s of heal calls)"
    )


def test_a_promql_halt_condition_reads_the_real_prometheus(
    start_session: Any, fragile_shop: StackHandle
) -> None:
    """A halt written in PromQL is judged on the stack's Prometheus: it holds (with a value
    read from Prometheus) while the database answers, trips once the fragile orders' pool
    waiters pile up under db-hang, and every fault is healed within 1 s of the trip."""
    running = start_session(
        halt="[{name: db pool waits, promql: 'max(shop_db_pool_waiting)', expect: '< 2', for: 1s}]"
    )

    def held() -> dict[str, Any] | None:
        status = json.loads(cli(fragile_shop, "gameday", "status", "--json").stdout)
        (halt,) = status["halts"]
        return halt if halt["state"] == "ok" and halt["value"] is not None else None

    before = wait_for(held, timeout=20, every=0.5)
    assert before["watch"] == "max(shop_db_pool_waiting)" and before["value"] < 2, before
    assert cli(fragile_shop, "gameday", "inject", "db-hang").returncode == 0

    def halted() -> dict[str, Any] | None:
        entries = [
            e
            for e in running.journal().get("timeline", [])
            if e["kind"] == "halt" and "tripped" in e["text"]
        ]
        return entries[0] if entries else None

    entry = wait_for(halted, timeout=60, every=0.2)
    assert leftovers(fragile_shop) == []
    detail = entry["detail"]
    assert detail["healed"] == [0] and detail["failed"] == []
    assert detail["healed_at"] - entry["t"] < 1.0, detail
    assert detail["halt"]["kind"] == "promql" and detail["halt"]["value"] >= 2, detail
    assert "db pool waits" in entry["text"]
    assert cli(fragile_shop, "gameday", "end", timeout=90).returncode == 0
    assert running.process.wait(timeout=60) == 0
    print(
        f"PromQL halt: {before['value']} waiting before the fault, tripped at "
        f"{detail['halt']['value']}; healed {detail['healed_at'] - entry['t']:.3f}s after the trip"
    )


def test_a_killed_session_is_swept_by_the_next_stack_status(
    start_session: Any, fragile_shop: StackHandle
) -> None:
    """SIGKILL during a fault leaves the toxic; `stack status` heals it, says so, and marks
    the session's journal aborted; the lock is free for the next session."""
    running = start_session()
    assert cli(fragile_shop, "gameday", "inject", "db-hang").returncode == 0
    assert leftovers(fragile_shop) == ["postgres/resilience-0-hang"]
    os.killpg(running.process.pid, signal.SIGKILL)
    running.process.wait(timeout=10)
    assert leftovers(fragile_shop) == ["postgres/resilience-0-hang"]
    assert running.journal()["status"] == "running"
    refused = cli(fragile_shop, "gameday", "status")
    assert refused.returncode == 3 and "is gone" in refused.stderr

    status = cli(fragile_shop, "stack", "status", timeout=60)
    assert "resilience-0-hang" in status.stderr and "aborted" in status.stderr, status.stderr
    assert leftovers(fragile_shop) == []
    assert running.journal()["status"] == "aborted"


def test_one_session_per_state_directory_and_it_ends_by_itself(
    start_session: Any, fragile_shop: StackHandle, tmp_path: Path
) -> None:
    """A second `gameday start` on the same state directory is refused (exit 3); a session
    ends by itself at its max_duration, healed and reported, its directory private."""
    running = start_session(max_duration="15s")
    second = cli(
        fragile_shop,
        "gameday",
        "start",
        "--experiment",
        "db-hang",
        "--out",
        str(tmp_path / "second"),
        timeout=60,
    )
    assert second.returncode == 3 and "already running" in second.stderr, second.stderr
    assert cli(fragile_shop, "gameday", "status").returncode == 0  # the first is untouched
    assert running.process.wait(timeout=60) == 0
    journal = running.journal()
    assert journal["status"] == "passed" and "maximum length" in journal["reason"]
    assert (running.out / "report.html").is_file()
    # Kept as a run directory is: private, whatever the umask (the session's own log too).
    assert stat.S_IMODE(running.out.stat().st_mode) == 0o700
    for name in ("journal.json", "report.html", "summary.md", "experiment.yaml", "logs/run.log"):
        assert stat.S_IMODE((running.out / name).stat().st_mode) == 0o600, name


def test_sigterm_ends_the_session_healing_first(
    start_session: Any, fragile_shop: StackHandle
) -> None:
    """SIGTERM during a fault: healed within a second, then the load stops and the report
    is written, like the End button."""
    running = start_session()
    assert cli(fragile_shop, "gameday", "inject", "db-hang").returncode == 0
    assert leftovers(fragile_shop) == ["postgres/resilience-0-hang"]
    running.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    wait_for(lambda: not leftovers(fragile_shop), timeout=5, every=0.01)
    healed_after = time.monotonic() - sent
    assert running.process.wait(timeout=60) == 0
    assert healed_after < 1.0, healed_after
    journal = running.journal()
    assert journal["reason"] == "ended by SIGTERM" and journal["faults"][0]["healed_at"] is not None
    assert (running.out / "summary.md").is_file()
