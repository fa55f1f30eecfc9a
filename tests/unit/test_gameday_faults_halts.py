"""Hand-injected faults and halt conditions, with a fake Toxiproxy and a fake clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resilience.experiment.model import Guard
from resilience.faults.timeline import FaultEvent
from resilience.gameday.faults import FaultBoard, FaultRefused
from resilience.gameday.halts import HaltBoard
from resilience.observe.guards import LoadSnapshot
from resilience.observe.prometheus import Series, Target
from resilience.testing.toxiproxy_fake import FakeToxiproxy
from resilience.vocabulary import FakeClock


def make_board(
    tmp_path: Path, clock: FakeClock
) -> tuple[FaultBoard, FakeToxiproxy, list[FaultEvent]]:
    api = FakeToxiproxy()
    api.create_proxy("postgres", "127.0.0.1:20000", "127.0.0.1:21000")
    api.create_proxy("catalog", "127.0.0.1:20001", "127.0.0.1:21001")
    events: list[FaultEvent] = []
    board = FaultBoard(
        api,
        clock,
        ledger=tmp_path / "faults.json",
        on_event=events.append,
        end_of_session=lambda: 3600.0,
    )
    return board, api, events


def leftovers(api: FakeToxiproxy) -> list[str]:
    out = []
    for name, proxy in api.proxies().items():
        out += [f"{name}/{t.name}" for t in proxy.toxics]
        if not proxy.enabled:
            out.append(f"{name} disabled")
    return sorted(out)


def test_inject_heal_and_ledger(tmp_path: Path) -> None:
    """Each injection gets its own id and toxic, is in the ledger while active, and heals alone."""
    clock = FakeClock(start=10.0)
    board, api, events = make_board(tmp_path, clock)
    hang = board.inject(proxy="postgres", type="hang")
    slow = board.inject(proxy="catalog", type="latency", attributes={"latency": "250ms"})
    assert (hang, slow) == (0, 1)
    assert leftovers(api) == ["catalog/resilience-1-latency", "postgres/resilience-0-hang"]
    ledger = json.loads((tmp_path / "faults.json").read_text())
    assert {e["key"] for e in ledger["entries"]} == {"resilience-0-hang", "resilience-1-latency"}
    clock.advance(4.0)
    assert [(a["index"], a["age"]) for a in board.active()] == [(0, 4.0), (1, 4.0)]
    board.heal(hang)
    assert leftovers(api) == ["catalog/resilience-1-latency"]
    records = {r["index"]: r for r in board.records()}
    assert records[0]["applied_at"] == 10.0 and records[0]["healed_at"] == 14.0
    assert records[1]["attributes"] == {"latency": 250, "jitter": 0}
    assert [e.kind for e in events] == ["applied", "applied", "healed"]


def test_a_duration_heals_by_itself_on_tick(tmp_path: Path) -> None:
    """A fault injected with a duration is healed by the board's tick when it is over."""
    clock = FakeClock()
    board, api, _ = make_board(tmp_path, clock)
    board.inject(proxy="postgres", type="outage", duration=30.0)
    clock.advance(29.0)
    board.tick()
    assert leftovers(api) == ["postgres disabled"]
    clock.advance(1.0)
    board.tick()
    assert leftovers(api) == [] and board.active() == []


def test_bad_injections_are_refused(tmp_path: Path) -> None:
    """Unknown types, bad attributes and a second outage on a disabled proxy are refused."""
    clock = FakeClock()
    board, api, _ = make_board(tmp_path, clock)
    with pytest.raises(FaultRefused, match="unknown fault type"):
        board.inject(proxy="postgres", type="earthquake")
    with pytest.raises(FaultRefused, match="latency"):
        board.inject(proxy="postgres", type="latency")
    board.inject(proxy="postgres", type="outage")
    with pytest.raises(FaultRefused, match="already disabled by fault 0"):
        board.inject(proxy="postgres", type="flap")
    assert leftovers(api) == ["postgres disabled"]


class Live:
    """Live load numbers that a test sets."""

    def __init__(self) -> None:
        self.error_rate: float | None = 0.0

    def __call__(self, endpoint: str | None) -> Any:
        return LoadSnapshot(rps=50.0, error_rate=self.error_rate)


def guard(**raw: Any) -> Guard:
    return Guard.model_validate(raw)


def test_a_halt_trips_after_its_for_and_heals_every_fault(tmp_path: Path) -> None:
    """Error rate over 50 % for 5 s trips at exactly 5 s of breach (not before), and the
    session's response, heal everything, leaves Toxiproxy clean."""
    clock = FakeClock()
    board, api, _ = make_board(tmp_path, clock)
    live = Live()
    halts = HaltBoard(clock, live, background=False)
    halts.add(guard(name="errors", load="error_rate", expect="< 50%", **{"for": "5s"}))
    board.inject(proxy="postgres", type="hang")
    board.inject(proxy="catalog", type="outage")
    assert halts.tick(0.0) == []
    live.error_rate = 0.8
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        clock.t = t
        assert halts.tick(t) == [], t
    clock.t = 6.0
    (trip,) = halts.tick(6.0)
    assert trip.guard == "errors" and trip.breached_since == 1.0 and trip.tripped_at == 6.0
    result = board.heal_all()
    assert leftovers(api) == [] and sorted(result.healed) == [0, 1]
    assert halts.tick(7.0) == []  # tripped once; it stays tripped
    assert halts.status()[0]["state"] == "tripped"


def test_a_breach_that_ends_early_does_not_trip() -> None:
    """A breach shorter than 'for' resets; missing data never trips."""
    clock = FakeClock()
    live = Live()
    halts = HaltBoard(clock, live, background=False)
    halts.add(guard(name="errors", load="error_rate", expect="< 50%", **{"for": "3s"}))
    for t, rate in (
        (0, 0.9),
        (1, 0.9),
        (2, 0.1),
        (3, 0.9),
        (4, 0.9),
        (5, None),
        (6, 0.9),
        (7, 0.9),
    ):
        live.error_rate = rate
        assert halts.tick(float(t)) == [], t
    halts.add(guard(name="errors", load="error_rate", expect="< 95%"), origin="live")  # re-armed
    assert [h["origin"] for h in halts.status()] == ["live"]


class Pool:
    """A Prometheus fake: one series whose value the test sets."""

    endpoint = "fake"

    def __init__(self) -> None:
        self.value = 0.0

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        return [Series({"service": "orders"}, [(0.0, self.value)])]

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        return []

    def targets(self) -> list[Target]:
        return []


def test_a_promql_halt_trips_on_prometheus_readings() -> None:
    """A PromQL condition reads Prometheus (one source shared by all conditions) and trips
    after its 'for'; a condition without Prometheus configured is refused."""
    clock = FakeClock()
    pool = Pool()
    made: list[Pool] = []

    def factory() -> Pool:
        made.append(pool)
        return pool

    halts = HaltBoard(clock, Live(), factory, background=False)
    halts.add(guard(name="pool", promql="max(shop_db_pool_waiting)", expect="< 5", **{"for": "2s"}))
    halts.add(guard(name="pool2", promql="max(shop_db_pool_waiting)", expect="< 50"))
    assert len(made) == 1
    trips = []
    for t, value in ((0.0, 0.0), (1.0, 9.0), (2.0, 9.0), (3.0, 9.0)):
        clock.t, pool.value = t, value
        halts.poll_promql()
        trips += halts.tick(t)
    assert [(trip.guard, trip.breached_since, trip.tripped_at) for trip in trips] == [
        ("pool", 1.0, 3.0)
    ]
    with pytest.raises(ValueError, match="need Prometheus"):
        HaltBoard(clock, Live(), None, background=False).add(guard(promql="up", expect="== 1"))
