"""Unit tests for guards: `for` and grace, not-evaluated paths, load guards, non-blocking ticks."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from resilience.experiment.expectation import Expectation
from resilience.observe import (
    GuardMonitor,
    HttpPrometheusSource,
    LoadGuard,
    LoadSnapshot,
    PrometheusQueryError,
    PrometheusUnavailable,
    PromqlGuard,
    Series,
    Target,
)
from resilience.stack.config import Ports
from resilience.testing.observe_fakes import FakePrometheusSource
from resilience.vocabulary import FakeClock


class Switchable:
    """A Prometheus fake whose current value (or error) the test sets."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {"a": 0.0}
        self.error: Exception | None = None
        self.endpoint = "fake"

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        if self.error is not None:
            raise self.error
        return [Series({"svc": k}, [(0.0, v)]) for k, v in self.values.items()]

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        return []

    def targets(self) -> list[Target]:
        return []


def run(monitor: GuardMonitor, clock: FakeClock, seconds: int, poll: bool = True) -> list[str]:
    """Advance one second at a time; poll PromQL guards then tick; collect trip names."""
    trips: list[str] = []
    for _ in range(seconds):
        clock.t += 1
        if poll:
            monitor.poll_promql()
        trip = monitor.tick(clock.t)
        if trip is not None:
            trips.append(trip.guard)
    return trips


def promql_monitor(
    source: Switchable, clock: FakeClock, for_s: float = 3, grace_s: float = 0
) -> GuardMonitor:
    guard = PromqlGuard("errors", "sum(rate(e[5s]))", Expectation("<", 10), for_s, grace_s)
    monitor = GuardMonitor([guard], source, None, clock)
    monitor.start(background=False)
    return monitor


def test_guard_trips_after_failing_continuously_for_its_duration() -> None:
    """A breach trips only once it has lasted `for` seconds, and reports value and labels."""
    source, clock = Switchable(), FakeClock()
    monitor = promql_monitor(source, clock, for_s=3)
    assert run(monitor, clock, 2) == []
    source.values = {"a": 50.0, "b": 1.0}
    assert run(monitor, clock, 3) == []  # breached at t=3, t=4, t=5: 2 s so far
    assert run(monitor, clock, 1) == ["errors"]  # t=6: 3 s
    (trip,) = monitor.trips
    assert trip.value == 50.0
    assert 'svc="a"' in trip.where
    assert (trip.breached_since, trip.tripped_at) == (3.0, 6.0)
    assert "continuously for 3.0s" in trip.message
    assert trip.to_dict()["expect"] == "< 10"


def test_a_passing_evaluation_resets_the_streak() -> None:
    """Breaches interrupted by a good reading never add up to a trip."""
    source, clock = Switchable(), FakeClock()
    monitor = promql_monitor(source, clock, for_s=3)
    for _ in range(4):
        source.values = {"a": 50.0}
        assert run(monitor, clock, 2) == []
        source.values = {"a": 0.0}
        assert run(monitor, clock, 1) == []
    assert monitor.trips == []


def test_zero_for_trips_on_first_failing_evaluation_and_only_once() -> None:
    """for=0 trips at the first failing reading; a tripped guard does not trip again."""
    source, clock = Switchable(), FakeClock()
    monitor = promql_monitor(source, clock, for_s=0)
    source.values = {"a": 99.0}
    assert run(monitor, clock, 5) == ["errors"]


def test_breaches_during_grace_are_ignored() -> None:
    """Readings in the grace period neither trip nor start the streak."""
    source, clock = Switchable(), FakeClock()
    monitor = promql_monitor(source, clock, for_s=2, grace_s=5)
    source.values = {"a": 99.0}
    assert run(monitor, clock, 4) == []
    assert monitor.status()[0].state == "grace"
    assert run(monitor, clock, 2) == []  # t=5 and t=6: streak starts at 5
    assert run(monitor, clock, 1) == ["errors"]  # t=7


def test_unavailable_prometheus_never_trips_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mid-breach, Prometheus goes away: the guard is not evaluated, logged once, no trip."""
    source, clock = Switchable(), FakeClock()
    monitor = promql_monitor(source, clock, for_s=3)
    source.values = {"a": 99.0}
    run(monitor, clock, 2)
    source.error = PrometheusUnavailable("cannot reach Prometheus at x", endpoint="x")
    with caplog.at_level(logging.WARNING, logger="resilience.observe.guards"):
        assert run(monitor, clock, 10) == []
    status = monitor.status()[0]
    assert status.state == "not_evaluated"
    assert "cannot reach Prometheus" in status.reason
    warnings = [r for r in caplog.records if "not evaluated" in r.getMessage()]
    assert len(warnings) == 1
    source.error = None  # back, still failing: the streak starts afresh
    assert run(monitor, clock, 3) == []
    assert run(monitor, clock, 1) == ["errors"]


def test_rejected_query_is_not_evaluated() -> None:
    """A query Prometheus refuses leaves the guard not evaluated with Prometheus's reason."""
    source, clock = Switchable(), FakeClock()
    monitor = promql_monitor(source, clock, for_s=0)
    source.error = PrometheusQueryError("refused: bad_data", endpoint="x")
    assert run(monitor, clock, 3) == []
    assert "bad_data" in monitor.status()[0].reason


def test_empty_result_is_no_data_not_a_breach() -> None:
    """An empty vector (metric absent) is 'no data': never a trip."""
    clock = FakeClock()
    source = FakePrometheusSource()
    guard = PromqlGuard("g", "absent_metric", Expectation("<", 1))
    monitor = GuardMonitor([guard], source, None, clock)
    monitor.start(background=False)
    assert run(monitor, clock, 5) == []
    assert monitor.status()[0].reason == "no data"


def test_stale_readings_make_the_guard_not_evaluated() -> None:
    """When readings stop arriving (poller stuck), the breach is dropped, not tripped."""
    source, clock = Switchable(), FakeClock()
    guard = PromqlGuard("errors", "q", Expectation("<", 10), for_s=3)
    monitor = GuardMonitor([guard], source, None, clock, stale_after=2.5)
    monitor.start(background=False)
    source.values = {"a": 99.0}
    run(monitor, clock, 2)
    assert monitor.status()[0].state == "breached"
    assert run(monitor, clock, 10, poll=False) == []
    assert monitor.status()[0].state == "not_evaluated"
    assert "no reading from Prometheus" in monitor.status()[0].reason


def test_load_guard_trips_on_live_stats_for_its_endpoint() -> None:
    """A load guard reads the live stats of its endpoint and trips after `for` seconds."""
    clock = FakeClock()
    p95 = {"GET /catalog/items": 0.1}
    asked: list[str | None] = []

    def live(endpoint: str | None) -> LoadSnapshot:
        asked.append(endpoint)
        return LoadSnapshot(rps=50, p95=p95["GET /catalog/items"], p99=None, error_rate=0.0)

    guard = LoadGuard("catalog p95", "p95", Expectation("<", 0.5), "GET /catalog/items", for_s=2)
    monitor = GuardMonitor([guard], None, live, clock)
    monitor.start(background=False)
    assert run(monitor, clock, 3, poll=False) == []
    p95["GET /catalog/items"] = 2.0
    assert run(monitor, clock, 2, poll=False) == []
    assert run(monitor, clock, 1, poll=False) == ["catalog p95"]
    assert set(asked) == {"GET /catalog/items"}
    assert "GET /catalog/items" in monitor.trips[0].where


def test_load_guard_without_data_is_not_evaluated() -> None:
    """No live stats yet (None, or a None metric) never trips a load guard."""
    clock = FakeClock()
    guard = LoadGuard("errors", "error_rate", Expectation("<", 0.01))
    monitor = GuardMonitor([guard], None, lambda endpoint: None, clock)
    assert run(monitor, clock, 3, poll=False) == []
    assert monitor.status()[0].state == "not_evaluated"


def test_failing_live_stats_callable_does_not_break_the_monitor() -> None:
    """An exception from live stats makes the guard not evaluated instead of propagating."""

    def broken(endpoint: str | None) -> LoadSnapshot:
        raise RuntimeError("collector gone")

    clock = FakeClock()
    monitor = GuardMonitor([LoadGuard("g", "rps", Expectation(">", 1))], None, broken, clock)
    assert run(monitor, clock, 2, poll=False) == []
    assert "collector gone" in monitor.status()[0].reason


class BlockingSource(Switchable):
    """A Prometheus whose queries block until released (a server that never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        self.entered.set()
        self.release.wait(10)
        raise PrometheusUnavailable("did not answer within 10s", endpoint="x")


def test_tick_never_waits_for_a_hanging_prometheus() -> None:
    """With the background poller stuck in a query, tick still returns at once."""
    source = BlockingSource()
    guard = PromqlGuard("g", "q", Expectation("<", 1))
    monitor = GuardMonitor([guard], source, None, interval=0.05, stale_after=0.2)
    with monitor:
        assert source.entered.wait(5)
        began = time.monotonic()
        for _ in range(20):
            assert monitor.tick() is None
        assert time.monotonic() - began < 0.5
        deadline = time.monotonic() + 5
        while monitor.status()[0].state != "not_evaluated" and time.monotonic() < deadline:
            monitor.tick()
            time.sleep(0.05)
        assert monitor.status()[0].state == "not_evaluated"
        source.release.set()


def test_background_poller_feeds_ticks_with_real_readings() -> None:
    """Started as a context manager, the poller's readings reach tick and trip the guard."""
    source = Switchable()
    source.values = {"a": 99.0}
    monitor = GuardMonitor(
        [PromqlGuard("g", "q", Expectation("<", 1), for_s=0.1)], source, None, interval=0.05
    )
    trip = None
    with monitor:
        deadline = time.monotonic() + 5
        while trip is None and time.monotonic() < deadline:
            trip = monitor.tick()
            time.sleep(0.02)
    assert trip is not None and trip.value == 99.0


def test_monitor_rejects_guards_it_cannot_evaluate() -> None:
    """PromQL guards need a source, load guards a live_stats callable, names are unique."""
    with pytest.raises(ValueError, match="Prometheus source"):
        GuardMonitor([PromqlGuard("g", "q", Expectation("<", 1))])
    with pytest.raises(ValueError, match="live_stats"):
        GuardMonitor([LoadGuard("g", "rps", Expectation("<", 1))])
    with pytest.raises(ValueError, match="unique"):
        GuardMonitor(
            [
                LoadGuard("g", "rps", Expectation("<", 1)),
                LoadGuard("g", "p95", Expectation("<", 1)),
            ],
            live_stats=lambda e: None,
        )


def test_real_client_against_a_silent_prometheus_never_blocks_tick() -> None:
    """With HttpPrometheusSource on a server that never answers, ticks stay instant and the
    guard ends up not evaluated."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", Ports().shifted(400).orders_proxy))
    sock.listen(64)
    try:
        port = sock.getsockname()[1]
        source = HttpPrometheusSource(f"http://127.0.0.1:{port}", timeout=0.3)
        guard = PromqlGuard("g", "up", Expectation("==", 1))
        with GuardMonitor([guard], source, interval=0.1, stale_after=5) as monitor:
            deadline = time.monotonic() + 5
            slowest = 0.0
            while monitor.status()[0].state != "not_evaluated" and time.monotonic() < deadline:
                began = time.monotonic()
                assert monitor.tick() is None
                slowest = max(slowest, time.monotonic() - began)
                time.sleep(0.05)
        source.close()
    finally:
        sock.close()
    assert monitor.status()[0].state == "not_evaluated"
    assert "did not answer" in monitor.status()[0].reason
    assert slowest < 0.1


def test_oldest_in_flight_guard_catches_a_total_hang() -> None:
    """When nothing completes (p95 has no data), oldest_in_flight still trips a guard."""
    clock = FakeClock()
    stats = {"oldest": 0.2}

    def live(endpoint: str | None) -> LoadSnapshot:
        return LoadSnapshot(rps=0.0, p95=None, oldest_in_flight=stats["oldest"])

    guards = [
        LoadGuard("p95", "p95", Expectation("<", 1)),
        LoadGuard("hang", "oldest_in_flight", Expectation("<", 5), for_s=1),
    ]
    monitor = GuardMonitor(guards, None, live, clock)
    assert run(monitor, clock, 2, poll=False) == []
    stats["oldest"] = 8.0
    assert run(monitor, clock, 2, poll=False) == ["hang"]
    assert monitor.status()[0].state == "not_evaluated"
