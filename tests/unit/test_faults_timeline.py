"""Unit tests for the fault timeline: ordering, overlaps, flap/ramp/flaky, stamps, heal_all, ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resilience.errors import FaultError
from resilience.faults.catalogue import FaultSpec
from resilience.faults.ledger import read_ledger
from resilience.faults.timeline import FaultEvent, FaultTimeline, HealReport
from resilience.testing.toxiproxy_fake import FakeCall, FakeToxiproxy
from resilience.vocabulary import FakeClock


def make_api(*names: str) -> FakeToxiproxy:
    api = FakeToxiproxy()
    for i, name in enumerate(names or ("db",)):
        api.create_proxy(name, f"127.0.0.1:{20000 + i}", f"127.0.0.1:{21000 + i}")
    api.calls.clear()
    return api


def toxic_names(api: FakeToxiproxy, proxy: str = "db") -> list[str]:
    return sorted(t.name for t in api.proxy(proxy).toxics)


def enabled(api: FakeToxiproxy, proxy: str = "db") -> bool:
    return api.proxy(proxy).enabled


def latency(index: int, at: float, duration: float, ms: int = 100, proxy: str = "db") -> FaultSpec:
    return FaultSpec(index, at, duration, proxy, "latency", attributes={"latency": ms})


def outage(index: int, at: float, duration: float, proxy: str = "db") -> FaultSpec:
    return FaultSpec(index, at, duration, proxy, "outage")


class Recorder:
    def __init__(self) -> None:
        self.events: list[FaultEvent] = []

    def __call__(self, event: FaultEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[tuple[str, int]]:
        return [(e.kind, e.index) for e in self.events]


def test_fault_is_applied_at_its_time_and_healed_at_its_end() -> None:
    """Nothing before `at`; the toxic exists from `at`; it is gone at `at + duration`."""
    api, clock, rec = make_api(), FakeClock(), Recorder()
    timeline = FaultTimeline([latency(0, 5, 10)], api, clock, rec)
    clock.t = 4.99
    assert timeline.tick() == []
    assert toxic_names(api) == []
    clock.t = 5.0
    timeline.tick()
    assert toxic_names(api) == ["resilience-0-latency"]
    clock.t = 14.9
    assert timeline.tick() == []
    clock.t = 15.0
    timeline.tick()
    assert toxic_names(api) == []
    assert rec.kinds() == [("applied", 0), ("healed", 0)]
    assert timeline.done()


def test_events_and_records_carry_both_clocks() -> None:
    """Stamps are experiment seconds plus ISO 8601 UTC wall time derived from the origin."""
    api, clock, rec = make_api(), FakeClock(origin_epoch=1_767_225_600.0), Recorder()
    timeline = FaultTimeline([latency(0, 2, 3)], api, clock, rec)
    clock.t = 2.25
    (applied,) = timeline.tick()
    assert applied.kind == "applied"
    assert applied.t == 2.25 and applied.scheduled_at == 2.0
    assert applied.lateness == pytest.approx(0.25)
    assert applied.wall == "2026-01-01T00:00:02.250Z"
    clock.t = 5.0
    timeline.tick()
    (record,) = timeline.records()
    assert record["proxy"] == "db" and record["type"] == "latency"
    assert record["attributes"] == {"latency": 100, "jitter": 0}
    assert record["scheduled_at"] == 2.0 and record["scheduled_end"] == 5.0
    assert record["applied_at"] == 2.25 and record["healed_at"] == 5.0
    assert record["applied_wall"] == "2026-01-01T00:00:02.250Z"
    assert record["healed_wall"] == "2026-01-01T00:00:05.000Z"
    assert record["status"] == "healed"
    assert rec.events[-1].record == record


def test_next_event_time_walks_the_schedule() -> None:
    """next_event_time names the next apply, step or heal, then None when all is done."""
    api, clock = make_api(), FakeClock()
    specs = [
        latency(0, 10, 5),
        FaultSpec(1, 2, 4, "db", "ramp", attributes={"to": 300, "steps": 2}),
    ]
    timeline = FaultTimeline(specs, api, clock)
    seen = []
    for _ in range(10):
        t = timeline.next_event_time()
        if t is None:
            break
        seen.append(t)
        clock.t = t
        timeline.tick()
    assert seen == [2.0, 4.0, 6.0, 10.0, 15.0]


def test_a_late_tick_applies_and_heals_in_time_order() -> None:
    """A tick long after the window still applies before healing, in schedule order."""
    api, clock, rec = make_api(), FakeClock(), Recorder()
    timeline = FaultTimeline([latency(1, 3, 1), latency(0, 1, 1)], api, clock, rec)
    clock.t = 10
    timeline.tick()
    assert rec.kinds() == [("applied", 0), ("healed", 0), ("applied", 1), ("healed", 1)]
    assert toxic_names(api) == []


def test_overlapping_toxics_on_one_proxy_coexist_under_distinct_names() -> None:
    """Two latency faults overlapping on one proxy are two toxics, healed independently."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([latency(0, 0, 10), latency(1, 5, 10, ms=300)], api, clock)
    clock.t = 6
    timeline.tick()
    assert toxic_names(api) == ["resilience-0-latency", "resilience-1-latency"]
    clock.t = 10
    timeline.tick()
    assert toxic_names(api) == ["resilience-1-latency"]
    clock.t = 15
    timeline.tick()
    assert toxic_names(api) == []


def test_overlapping_outages_reenable_only_when_none_is_left() -> None:
    """With two overlapping outages the proxy comes back only after the second ends."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([outage(0, 0, 10), outage(1, 5, 10)], api, clock)
    timeline.tick()
    assert not enabled(api)
    clock.t = 5
    timeline.tick()
    clock.t = 10
    timeline.tick()
    assert not enabled(api), "fault 1 still holds the outage"
    clock.t = 15
    timeline.tick()
    assert enabled(api)
    assert [c.args for c in api.calls_to("set_enabled")] == [("db", False), ("db", True)]


def test_outage_ending_when_another_starts_keeps_the_proxy_down() -> None:
    """Back-to-back outages do not blink the proxy up between them (apply before heal)."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([outage(0, 0, 5), outage(1, 5, 5)], api, clock)
    timeline.tick()
    clock.t = 5
    timeline.tick()
    assert not enabled(api)
    assert [c.args for c in api.calls_to("set_enabled")] == [("db", False)]


def test_outages_on_different_proxies_are_independent() -> None:
    """An outage on one proxy never re-enables or disables another."""
    api, clock = make_api("db", "orders"), FakeClock()
    timeline = FaultTimeline([outage(0, 0, 10, "db"), outage(1, 0, 5, "orders")], api, clock)
    timeline.tick()
    clock.t = 5
    timeline.tick()
    assert enabled(api, "orders") and not enabled(api, "db")


def test_flap_toggles_the_proxy_on_schedule() -> None:
    """flap disables, re-enables after duty*period, disables again at each period."""
    api, clock, rec = make_api(), FakeClock(), Recorder()
    spec = FaultSpec(0, 0, 4, "db", "flap", attributes={"period": 2, "duty": 0.5})
    timeline = FaultTimeline([spec], api, clock, rec)
    states = []
    for t in (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4):
        clock.t = t
        timeline.tick()
        states.append(enabled(api))
    assert states == [False, False, True, True, False, False, True, True, True]
    assert [e.kind for e in rec.events] == ["applied", "changed", "changed", "changed", "healed"]
    assert rec.events[1].detail == {"action": "enable"}
    assert timeline.records()[0]["changes"] == 3


def test_flap_up_phase_does_not_end_a_concurrent_outage() -> None:
    """While an outage holds the proxy, flap's 'up' half leaves it disabled."""
    api, clock = make_api(), FakeClock()
    flap = FaultSpec(0, 0, 4, "db", "flap", attributes={"period": 2, "duty": 0.5})
    timeline = FaultTimeline([flap, outage(1, 0, 10)], api, clock)
    timeline.tick()
    clock.t = 1
    timeline.tick()
    assert not enabled(api)
    clock.t = 10
    timeline.tick()
    assert enabled(api)


def test_ramp_raises_the_latency_at_each_step() -> None:
    """ramp creates one latency toxic and updates its latency at each step."""
    api, clock = make_api(), FakeClock()
    spec = FaultSpec(0, 0, 30, "db", "ramp", attributes={"from": 100, "to": 300, "steps": 3})
    timeline = FaultTimeline([spec], api, clock)
    observed = []
    for t in (0, 10, 20):
        clock.t = t
        timeline.tick()
        observed.append(api.proxy("db").toxics[0].attributes["latency"])
    assert observed == [100, 200, 300]
    clock.t = 30
    timeline.tick()
    assert toxic_names(api) == []


def test_flaky_redraws_by_updating_the_toxicity() -> None:
    """flaky adds reset_peer with its toxicity and re-sends it every reroll seconds."""
    api, clock = make_api(), FakeClock()
    spec = FaultSpec(0, 0, 3, "db", "flaky", toxicity=0.3, attributes={"reroll": 1})
    timeline = FaultTimeline([spec], api, clock)
    clock.t = 2.5
    timeline.tick()
    (toxic,) = api.proxy("db").toxics
    assert (toxic.type, toxic.toxicity) == ("reset_peer", 0.3)
    updates = api.calls_to("update_toxic")
    assert [c.args for c in updates] == [("db", "resilience-0-flaky", {}, 0.3)] * 2


def test_apply_failure_marks_the_fault_failed_and_raises() -> None:
    """When Toxiproxy refuses an apply, the fault is failed, reported, and FaultError raised."""
    api, clock, rec = make_api(), FakeClock(), Recorder()
    api.fail_on("add_toxic", times=5)
    timeline = FaultTimeline([latency(0, 0, 5)], api, clock, rec)
    with pytest.raises(FaultError, match="injected failure"):
        timeline.tick()
    (record,) = timeline.records()
    assert record["status"] == "failed" and "apply" in record["error"]
    assert rec.kinds() == [("failed", 0)]
    report = timeline.heal_all()
    assert report.ok
    (record,) = timeline.records()
    assert (record["status"], record["applied_at"], record["healed_at"]) == ("failed", None, None)
    assert rec.kinds() == [("failed", 0)], "a fault never applied is not reported healed"


def test_unknown_proxy_is_a_fault_error() -> None:
    """Applying to a proxy Toxiproxy does not have fails with FaultError."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([outage(0, 0, 5, proxy="nope")], api, clock)
    with pytest.raises(FaultError, match="not found"):
        timeline.tick()


def test_heal_all_heals_everything_and_tolerates_individual_failures() -> None:
    """One heal fails (even after retries): the others are healed and the failure reported."""
    api, clock = make_api("db", "orders"), FakeClock()
    specs = [
        latency(0, 0, 100),
        FaultSpec(1, 0, 100, "db", "hang"),
        outage(2, 0, 100, "orders"),
        FaultSpec(3, 50, 10, "db", "slow_close", attributes={"delay": 5}),
    ]
    timeline = FaultTimeline(specs, api, clock)
    timeline.tick()
    api.fail_on("remove_toxic", times=1, when=lambda args: args[1] == "resilience-0-latency")
    report = timeline.heal_all()
    assert report.healed == (1, 2)
    assert [i for i, _ in report.failed] == [0]
    assert "injected failure" in report.failed[0][1]
    assert report.cancelled == (3,)
    assert toxic_names(api) == ["resilience-0-latency"]
    assert enabled(api, "orders")
    again = timeline.heal_all()
    assert again.healed == (0,) and again.ok
    assert toxic_names(api) == []
    third = timeline.heal_all()
    assert (third.healed, third.failed, third.cancelled) == ((), (), ())


def test_nothing_is_applied_after_heal_all() -> None:
    """After heal_all the timeline is closed: ticks do nothing, next_event_time is None."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([latency(0, 5, 5)], api, clock)
    timeline.heal_all()
    clock.t = 6
    assert timeline.tick() == []
    assert timeline.next_event_time() is None
    assert toxic_names(api) == []
    assert timeline.records()[0]["status"] == "cancelled"


def test_heal_all_keeps_going_when_a_listener_fails() -> None:
    """A failing on_event listener does not stop heal_all from healing the rest."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([latency(0, 0, 10), FaultSpec(1, 0, 10, "db", "hang")], api, clock)
    timeline.tick()

    def broken(event: FaultEvent) -> None:
        raise RuntimeError("journal disk full")

    timeline.on_event = broken
    report = timeline.heal_all()
    assert report.healed == (0, 1)
    assert toxic_names(api) == []


def test_heal_all_from_a_signal_during_an_apply_leaves_nothing_behind() -> None:
    """heal_all re-entered mid-apply (as from a signal handler) still ends with no toxic."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([latency(0, 0, 10), outage(1, 0, 10)], api, clock)
    reports: list[HealReport] = []

    def interrupt(call: FakeCall) -> None:
        if call.method == "add_toxic" and not reports:
            reports.append(timeline.heal_all())

    api.before_call = interrupt
    timeline.tick()
    assert reports and reports[0].ok
    assert toxic_names(api) == []
    assert enabled(api)
    first, second = timeline.records()
    assert (first["status"], first["applied_at"], first["healed_at"]) == ("cancelled", None, None)
    assert second["status"] == "cancelled"


def test_ledger_is_written_before_the_apply_and_cleared_after_the_heal(tmp_path: Path) -> None:
    """The ledger already lists the toxic while Toxiproxy is being asked to add it."""
    ledger_path = tmp_path / "faults.json"
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([latency(0, 0, 5), outage(1, 0, 5)], api, clock, ledger=ledger_path)
    seen_during_calls: dict[str, list[str]] = {}

    def snapshot(call: FakeCall) -> None:
        if call.method in ("add_toxic", "set_enabled"):
            seen_during_calls[f"{call.method}{call.args[1:2]}"] = [
                e.key for e in read_ledger(ledger_path)
            ]

    api.before_call = snapshot
    timeline.tick()
    assert seen_during_calls["add_toxic('resilience-0-latency',)"] == ["resilience-0-latency"]
    assert seen_during_calls["set_enabled(False,)"] == [
        "resilience-0-latency",
        "resilience-1-outage",
    ]
    entries = {e.key: e for e in read_ledger(ledger_path)}
    assert entries["resilience-0-latency"].toxic == "resilience-0-latency"
    assert (
        entries["resilience-1-outage"].disabled_proxy
        and entries["resilience-1-outage"].toxic is None
    )
    clock.t = 5
    timeline.tick()
    assert not ledger_path.exists()


def test_failed_heal_stays_in_the_ledger(tmp_path: Path) -> None:
    """A fault that could not be healed stays in the ledger for the sweeper."""
    ledger_path = tmp_path / "faults.json"
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline(
        [latency(0, 0, 5), FaultSpec(1, 0, 5, "db", "hang")], api, clock, ledger=ledger_path
    )
    timeline.tick()
    api.fail_on("remove_toxic", times=1, when=lambda args: args[1] == "resilience-1-hang")
    timeline.heal_all()
    raw = json.loads(ledger_path.read_text())
    assert [e["key"] for e in raw["entries"]] == ["resilience-1-hang"]


def test_leftover_toxic_with_our_name_is_replaced() -> None:
    """A stale toxic with the same name (an unswept run) is replaced, not a failure."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([latency(0, 0, 5, ms=250)], api, clock)
    from resilience.faults.toxiproxy import Toxic

    api.add_toxic("db", Toxic("resilience-0-latency", "latency", attributes={"latency": 9}))
    timeline.tick()
    assert api.proxy("db").toxics[0].attributes["latency"] == 250


def test_run_sleeps_exactly_to_each_action() -> None:
    """run() on a fake clock stamps every action exactly on schedule, then stops at `until`."""
    api, clock, rec = make_api(), FakeClock(), Recorder()
    specs = [latency(0, 1.5, 2), outage(1, 2, 1)]
    timeline = FaultTimeline(specs, api, clock, rec)
    timeline.run(until=6, max_wait=10)
    assert [(e.kind, e.index, e.t) for e in rec.events] == [
        ("applied", 0, 1.5),
        ("applied", 1, 2.0),
        ("healed", 1, 3.0),
        ("healed", 0, 3.5),
    ]
    assert clock.t == 6


def test_run_returns_when_asked_to_stop() -> None:
    """should_stop is checked between waits, which are at most max_wait long."""
    api, clock = make_api(), FakeClock()
    timeline = FaultTimeline([latency(0, 100, 5)], api, clock)
    timeline.run(until=1000, should_stop=lambda: clock.t >= 2, max_wait=0.5)
    assert clock.t == 2
    assert max(clock.slept) <= 0.5


def test_duplicate_indexes_are_refused() -> None:
    """Two faults with one index would share a toxic name: refused."""
    with pytest.raises(ValueError, match="unique"):
        FaultTimeline([latency(0, 0, 1), latency(0, 2, 1)], make_api(), FakeClock())


def test_event_timing_is_words_never_a_negative_lateness() -> None:
    """A late stamp reads "12 ms late"; a heal before its scheduled end reads how much
    earlier and why, never "(-25616 ms)"."""
    from resilience.faults.timeline import FaultEvent

    def event(kind: str, scheduled: float, t: float) -> FaultEvent:
        return FaultEvent(kind, 0, "postgres", "hang", scheduled, t, "")  # type: ignore[arg-type]

    assert event("applied", 6.0, 6.012).timing() == "12 ms late"
    assert event("healed", 14.0, 14.0).timing() == "on time"
    early = event("healed", 40.0, 14.384)
    assert early.early
    assert early.timing() == "25.6 s before its scheduled end (the run stopped early)"
    assert "-" not in early.timing()
