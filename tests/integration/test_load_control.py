"""Live load control: commands on a running worker's stdin change users and rate in place.

The same local test server as test_load_engine; two workers each time. The workers are
never restarted: their pids stay the same and their recording carries on across changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resilience.errors import LoadError
from resilience.load import (
    ArrivalStage,
    LiveTick,
    LoadEngine,
    LoadPlan,
    LoadRecorder,
    RequestPlan,
    Stage,
)
from resilience.load.commands import SetRate, SetUsers
from resilience.load.samples import CommandAck, LoadEvent
from resilience.rundir.load import LoadData
from tests.integration.test_load_engine import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    srv.start()
    yield srv
    srv.stop()


class Watch:
    """Feeds a recorder and remembers acks and each worker's latest user count."""

    def __init__(self, engine: LoadEngine, recorder: LoadRecorder) -> None:
        self.engine = engine
        self.recorder = recorder
        self.acks: list[CommandAck] = []
        self.users: dict[int, int] = {}

    def pump(self, timeout: float = 0.2) -> None:
        events: list[LoadEvent] = self.engine.poll(timeout)
        for event in events:
            if isinstance(event, CommandAck):
                self.acks.append(event)
            elif isinstance(event, LiveTick):
                self.users[event.worker] = event.users
        self.recorder.consume(events)

    def until(self, condition: Callable[[], bool], timeout: float) -> float:
        """Pump until ``condition()``; the seconds it took (fails the test at the timeout)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            self.pump()
            if condition():
                return time.monotonic() - began
        pytest.fail(f"condition not met within {timeout}s (users {self.users}, acks {self.acks})")


def test_users_change_live_without_restarting_workers(server: Server, tmp_path: Path) -> None:
    """2 -> 12 -> 2 users by command: both workers ack, hold their share within 3 s, keep
    their pids, and the recording has every second with no gap."""
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=60, users=2, spawn_rate=10)],
        requests=[RequestPlan(name="GET /x", path="/x")],
        wait_min=0.05,
        wait_max=0.1,
    )
    run_dir = tmp_path / "run"
    with LoadEngine(plan, workers=2, log_dir=run_dir / "logs") as engine:
        with pytest.raises(LoadError, match="not running"):
            engine.send(SetUsers(4, 4.0))
        engine.prepare()
        t0 = time.time() + 0.5
        engine.start(t0=t0)
        pids = engine.pids
        recorder = LoadRecorder(run_dir, t0=t0, workers=2, endpoints=plan.endpoints())
        watch = Watch(engine, recorder)
        watch.until(lambda: sum(watch.users.values()) == 2, timeout=10)

        assert engine.send(SetUsers(12, 100.0)) == 2
        took_up = watch.until(lambda: watch.users == {0: 6, 1: 6}, timeout=5)
        assert [a.ok for a in watch.acks] == [True, True]
        assert sorted(a.detail for a in watch.acks) == ["users=6 spawn_rate=50"] * 2

        engine.send(SetUsers(2, 100.0))
        took_down = watch.until(lambda: watch.users == {0: 1, 1: 1}, timeout=5)
        engine.send(SetRate(5.0))  # the wrong model: refused, the load goes on
        watch.until(lambda: len(watch.acks) == 6, timeout=5)
        refused = watch.acks[4:]
        assert not any(a.ok for a in refused)
        assert all("closed" in a.detail for a in refused)
        assert engine.pids == pids and engine.running
        engine.stop(grace=3.0)
        watch.pump(0)
        recorder.close()
    assert took_up < 3.0 and took_down < 3.0, (took_up, took_down)
    data = LoadData.read(run_dir)
    assert list(data.seconds) == list(range(len(data.seconds)))
    # A stop may end a request in flight: it is counted as abandoned, never as a latency.
    assert data.total_requests() + recorder.abandoned == server.total > 0


def test_arrival_rate_changes_live(server: Server, tmp_path: Path) -> None:
    """Open model 20/s, then 60/s, then 0 by command: the seconds after each change carry
    the new rate (from the intended send times), without restarting the workers."""
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        arrival=[ArrivalStage(duration=60, rps=20)],
        requests=[RequestPlan(name="GET /x", path="/x")],
    )
    run_dir = tmp_path / "run"
    with LoadEngine(plan, workers=2, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        t0 = time.time() + 0.5
        engine.start(t0=t0)
        recorder = LoadRecorder(run_dir, t0=t0, workers=2, endpoints=plan.endpoints())
        watch = Watch(engine, recorder)
        watch.until(lambda: time.time() - t0 > 3.0, timeout=10)
        engine.send(SetRate(60.0))
        watch.until(lambda: len(watch.acks) == 2, timeout=5)
        faster_from = max(a.t for a in watch.acks)
        watch.until(lambda: time.time() - t0 > faster_from + 3.5, timeout=10)
        engine.send(SetRate(0.0))
        watch.until(lambda: len(watch.acks) == 4, timeout=5)
        paused_from = max(a.t for a in watch.acks[2:])
        watch.until(lambda: time.time() - t0 > paused_from + 3.0, timeout=10)
        assert engine.running
        engine.stop(grace=3.0)
        watch.pump(0)
        recorder.close()
    assert all(a.ok for a in watch.acks)
    data = LoadData.read(run_dir)
    per_second = {s: sum(data.counts(None, s).values()) for s in data.seconds}
    assert per_second[1] == per_second[2] == 20
    first_fast = int(faster_from) + 1
    assert per_second[first_fast] == per_second[first_fast + 1] == 60
    first_paused = int(paused_from) + 1
    assert per_second.get(first_paused, 0) == per_second.get(first_paused + 1, 0) == 0
