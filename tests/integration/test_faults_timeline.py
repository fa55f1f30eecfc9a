"""Integration tests of the fault timeline, heal_all and the sweeper on a real toxiproxy-server.

Stamps land within 100 ms of the schedule; heal_all leaves no toxic and every proxy
enabled, fast; a run killed with SIGKILL after applying faults is swept clean by the
next start; flaky's re-draws keep hitting long-lived connections.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from resilience.faults.catalogue import FaultSpec
from resilience.faults.ledger import read_ledger
from resilience.faults.sweeper import sweep
from resilience.faults.timeline import FaultEvent, FaultTimeline
from resilience.faults.toxiproxy import ToxiproxyClient
from resilience.testing.toxiproxy_server import EchoServer, ToxiproxyServer
from resilience.vocabulary import MonotonicClock

pytestmark = pytest.mark.integration

OFFSET = int(os.environ.get("RESILIENCE_FAULTS_TEST_OFFSET", "300"))
API_PORT = 8474 + OFFSET  # 8774
PROXIES = {"db": 8480 + OFFSET, "orders": 8481 + OFFSET, "catalog": 8482 + OFFSET}
ECHO_PORT = 8491 + OFFSET  # 8791
STATE_DIR = Path(os.environ.get("RESILIENCE_FAULTS_TEST_STATE", "/tmp/res-faults"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[ToxiproxyServer]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (
        pytest.MonkeyPatch.context() as env,
        ToxiproxyServer(API_PORT, log_path=STATE_DIR / "toxiproxy-timeline-tests.log") as srv,
    ):
        env.setenv("RESILIENCE_PORT_OFFSET", str(OFFSET))
        env.setenv("RESILIENCE_STATE_DIR", str(STATE_DIR))
        yield srv


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with EchoServer(ECHO_PORT) as srv:
        yield srv


@pytest.fixture
def api(server: ToxiproxyServer, echo: EchoServer) -> Iterator[ToxiproxyClient]:
    with ToxiproxyClient(server.url) as client:
        for name, port in PROXIES.items():
            client.ensure_proxy(name, f"127.0.0.1:{port}", f"127.0.0.1:{ECHO_PORT}")
        yield client
        client.reset()


def assert_clean(api: ToxiproxyClient) -> None:
    for proxy in api.proxies().values():
        assert proxy.toxics == (), f"{proxy.name} still has {proxy.toxics}"
        assert proxy.enabled, f"{proxy.name} is still disabled"


def test_stamps_land_within_100ms_of_the_schedule(api: ToxiproxyClient) -> None:
    """Every apply, change and heal on the real server is stamped within 100 ms of schedule."""
    specs = [
        FaultSpec(0, 0.2, 0.6, "db", "latency", attributes={"latency": 50}),
        FaultSpec(1, 0.3, 0.5, "orders", "outage"),
        FaultSpec(2, 0.1, 0.9, "catalog", "ramp", attributes={"from": 10, "to": 90, "steps": 3}),
        FaultSpec(3, 0.25, 0.8, "db", "flap", attributes={"period": 0.4, "duty": 0.5}),
        FaultSpec(4, 0.4, 0.3, "orders", "hang"),
    ]
    events: list[FaultEvent] = []
    clock = MonotonicClock()
    timeline = FaultTimeline(specs, api, clock, events.append)
    observed_mid_run: dict[str, object] = {}

    def peek() -> bool:
        if 0.5 < clock.now() < 0.55 and not observed_mid_run:
            observed_mid_run["db"] = sorted(t.name for t in api.toxics("db"))
            observed_mid_run["orders_enabled"] = api.proxy("orders").enabled
        return False

    try:
        timeline.run(until=1.3, should_stop=peek, max_wait=0.02)
    finally:
        report = timeline.heal_all()
    assert report.ok
    kinds = [(e.kind, e.index) for e in events]
    assert kinds.count(("applied", 2)) == 1 and kinds.count(("changed", 2)) == 2
    assert kinds.count(("changed", 3)) == 3  # up at 0.45, down at 0.65, up at 0.85
    assert {e.index for e in events if e.kind == "healed"} == {0, 1, 2, 3, 4}
    late = [(e.kind, e.index, round(e.lateness, 3)) for e in events if not 0 <= e.lateness < 0.1]
    assert late == []
    for record in timeline.records():
        assert abs(record["applied_at"] - record["scheduled_at"]) < 0.1
        assert abs(record["healed_at"] - record["scheduled_end"]) < 0.1
        wall = datetime.fromisoformat(record["applied_wall"].replace("Z", "+00:00")).timestamp()
        assert abs(wall - clock.epoch(record["applied_at"])) < 0.002
    if observed_mid_run:
        assert observed_mid_run["db"] == ["resilience-0-latency"]
        assert observed_mid_run["orders_enabled"] is False
    assert_clean(api)


def test_heal_all_leaves_nothing_and_is_fast(api: ToxiproxyClient, tmp_path: Path) -> None:
    """With every kind of fault active, heal_all removes all toxics, re-enables all proxies, < 1 s."""
    specs = [
        FaultSpec(0, 0, 60, "db", "latency", attributes={"latency": 200}),
        FaultSpec(1, 0, 60, "db", "hang"),
        FaultSpec(2, 0, 60, "orders", "outage"),
        FaultSpec(3, 0, 60, "orders", "flap", attributes={"period": 10}),
        FaultSpec(4, 0, 60, "catalog", "ramp", attributes={"to": 500}),
        FaultSpec(5, 0, 60, "catalog", "flaky", toxicity=0.5),
        FaultSpec(6, 0, 60, "catalog", "bandwidth", stream="upstream", attributes={"rate": 10}),
        FaultSpec(7, 30, 10, "db", "outage"),
    ]
    ledger = tmp_path / "faults.json"
    timeline = FaultTimeline(specs, api, MonotonicClock(), ledger=ledger)
    timeline.tick()
    assert len(api.toxics("db")) == 2 and len(api.toxics("catalog")) == 3
    assert not api.proxy("orders").enabled
    # A connection blocked by the hang must not slow the heal down.
    with socket.create_connection(("127.0.0.1", PROXIES["db"]), timeout=5) as blocked:
        blocked.sendall(b"ping")
        started = time.monotonic()
        report = timeline.heal_all()
        elapsed = time.monotonic() - started
    assert report.ok, report.failed
    assert report.healed == (0, 1, 2, 3, 4, 5, 6) and report.cancelled == (7,)
    assert elapsed < 1.0
    assert_clean(api)
    assert read_ledger(ledger) == []
    assert timeline.heal_all().healed == ()


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from resilience.faults import FaultSpec, FaultTimeline, ToxiproxyClient
    from resilience.vocabulary import MonotonicClock

    url, ledger = sys.argv[1], Path(sys.argv[2])
    specs = [
        FaultSpec(0, 0, 600, "db", "hang"),
        FaultSpec(1, 0, 600, "orders", "outage"),
        FaultSpec(2, 0, 600, "catalog", "latency", attributes={"latency": 100}),
    ]
    timeline = FaultTimeline(specs, ToxiproxyClient(url), MonotonicClock(), ledger=ledger)
    timeline.tick()
    print("applied", flush=True)
    for _ in range(600):  # bounded: the parent kills us long before
        time.sleep(0.1)
    """
)


def test_sweeper_cleans_up_after_a_killed_run(api: ToxiproxyClient, tmp_path: Path) -> None:
    """A child applies faults and is SIGKILLed; the sweep removes them and re-enables the proxy."""
    ledger = tmp_path / "faults.json"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, api.base_url, str(ledger)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child prints once the faults are applied
        assert line.strip() == b"applied", line
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert {e.key for e in read_ledger(ledger)} == {
        "resilience-0-hang",
        "resilience-1-outage",
        "resilience-2-latency",
    }
    assert not api.proxy("orders").enabled
    report = sweep(api, ledger)
    assert report.toxics == ("catalog/resilience-2-latency", "db/resilience-0-hang")
    assert report.enabled == ("orders",)
    assert report.ledger_pids == (child.pid,)
    assert "swept 2 leftover toxics from a killed run" in report.summary()
    assert_clean(api)
    assert not ledger.exists()


def reset_round(socks: list[socket.socket], port: int) -> int:
    """One request on each long-lived connection; reconnect the ones that fail. Returns failures."""
    failures = 0
    for i, sock in enumerate(socks):
        try:
            sock.sendall(b"ping")
            ok = sock.recv(16) == b"ping"
        except OSError:
            ok = False
        if not ok:
            failures += 1
            sock.close()
            socks[i] = socket.create_connection(("127.0.0.1", port), timeout=1)
    return failures


def late_failures(api: ToxiproxyClient, reroll: float) -> int:
    """Failures on 10 pooled connections in the second half of a 1.6 s flaky fault."""
    port = PROXIES["catalog"]
    socks = [socket.create_connection(("127.0.0.1", port), timeout=1) for _ in range(10)]
    clock = MonotonicClock()
    spec = FaultSpec(0, 0, 10, "catalog", "flaky", toxicity=0.5, attributes={"reroll": reroll})
    timeline = FaultTimeline([spec], api, clock)
    late = 0
    try:
        for _ in range(200):  # bounded; ends by time below
            timeline.tick()
            failures = reset_round(socks, port)
            if clock.now() > 0.8:
                late += failures
            if clock.now() > 1.6:
                break
            clock.sleep(0.03)
    finally:
        timeline.heal_all()
        for sock in socks:
            sock.close()
    return late


def test_flaky_keeps_hitting_pooled_connections_only_with_rerolls(api: ToxiproxyClient) -> None:
    """Without re-draws a pool settles on connections the coin spared; with them it keeps failing."""
    assert late_failures(api, reroll=0.25) >= 3
    assert late_failures(api, reroll=0) <= 1


def test_flaky_resets_about_its_toxicity_of_new_connections(api: ToxiproxyClient) -> None:
    """With toxicity 0.5, roughly half of 40 fresh connections are reset (binomial bounds)."""
    timeline = FaultTimeline(
        [FaultSpec(0, 0, 30, "catalog", "flaky", toxicity=0.5, attributes={"reroll": 0})],
        api,
        MonotonicClock(),
    )
    timeline.tick()
    reset = 0
    try:
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", PROXIES["catalog"]), timeout=1) as sock:
                try:
                    sock.sendall(b"ping")
                    reset += sock.recv(16) != b"ping"
                except OSError:
                    reset += 1
    finally:
        timeline.heal_all()
    assert 5 <= reset <= 35
