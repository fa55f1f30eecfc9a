"""A worker's recording: seconds by send time, final only when complete; live ticks; traces."""

from __future__ import annotations

import random

import pytest

from resilience.load.collector import (
    C5XX,
    OK,
    TIMEOUT,
    UNEXPECTED,
    Collector,
    new_trace_ids,
    outcome_of_status,
    traceparent,
)
from resilience.load.samples import LiveTick, LoadEvent, SecondSample
from resilience.rundir.records import TraceRef, WriteAck

TID = "1" * 32
SID = "2" * 16


def make(
    *, sample: float = 0.0, cap: int = 50, slow: float = 1.0
) -> tuple[Collector, list[LoadEvent]]:
    events: list[LoadEvent] = []
    collector = Collector(
        worker=3,
        emit=events.append,
        slow_threshold=slow,
        trace_sample=sample,
        trace_cap=cap,
        rng=random.Random(1),
    )
    return collector, events


def request(
    c: Collector, send: float, done: float, outcome: int = OK, endpoint: str = "GET /"
) -> None:
    second = c.begin(send)
    c.end(second, endpoint, send, done, outcome, status=200, trace_id=TID, span_id=SID)


def seconds(events: list[LoadEvent]) -> list[SecondSample]:
    return [e for e in events if isinstance(e, SecondSample)]


def test_outcome_classes() -> None:
    """Expected statuses are ok; others are 4xx, 5xx, or unexpected (e.g. 200 for 201)."""
    assert outcome_of_status(404, True) == OK
    assert outcome_of_status(404, False) == 1
    assert outcome_of_status(503, False) == C5XX
    assert outcome_of_status(200, False) == UNEXPECTED


def test_trace_ids_are_w3c_shaped() -> None:
    """Trace and span ids are lowercase hex of 32 and 16 digits in a sampled traceparent."""
    trace_id, span_id = new_trace_ids(random.Random(4))
    header = traceparent(trace_id, span_id)
    assert len(trace_id) == 32 and len(span_id) == 16
    assert header == f"00-{trace_id}-{span_id}-01"
    assert int(trace_id, 16) and int(span_id, 16)


def test_a_second_is_emitted_once_final_and_counts_by_send_time() -> None:
    """A request sent in second 1 that ends in second 4 counts in second 1, emitted after it ends."""
    c, events = make()
    request(c, 0.2, 0.3)
    slow = c.begin(1.5)
    request(c, 2.1, 2.2)
    c.tick(3.01, users=1, send_floor=3.01)
    assert [s.second for s in seconds(events)] == [0]  # second 1 still has one in flight
    c.end(slow, "GET /", 1.5, 4.0, OK, status=200, trace_id=TID, span_id=SID)
    c.tick(4.01, users=1, send_floor=4.01)
    done = seconds(events)
    assert [s.second for s in done] == [0, 1, 2, 3]
    assert done[1].endpoints["GET /"].n == 1
    latency = done[1].endpoints["GET /"].decode().max_us
    assert latency == pytest.approx(2_500_000, rel=0.001)
    assert done[3].endpoints == {}


def test_no_second_is_final_before_the_send_floor_passes_it() -> None:
    """Open model: while the scheduler may still send into second 5, it is not emitted."""
    c, events = make()
    request(c, 5.0, 5.01)
    c.tick(7.0, users=0, send_floor=5.9)
    assert [s.second for s in seconds(events)] == [0, 1, 2, 3, 4]
    c.tick(7.5, users=0, send_floor=6.0)
    assert seconds(events)[-1].second == 5


def test_live_ticks_count_completions_per_second_including_quiet_ones() -> None:
    """Live ticks go by completion time, one per second, empty seconds included."""
    c, events = make()
    request(c, 0.1, 0.2, endpoint="a")
    request(c, 0.3, 0.9, C5XX, endpoint="b")
    hanging = c.begin(0.5)
    c.tick(3.05, users=2, send_floor=3.05)
    ticks = [e for e in events if isinstance(e, LiveTick)]
    assert [t.second for t in ticks] == [0, 1, 2]
    assert ticks[0].completions["ok"] == 1 and ticks[0].completions["5xx"] == 1
    assert ticks[0].p99 == pytest.approx(0.6, rel=0.01)
    assert ticks[1].completions["ok"] == 0 and ticks[1].p50 is None
    assert ticks[2].in_flight == 1 and ticks[2].users == 2
    assert ticks[2].oldest_in_flight == pytest.approx(3.05)
    assert set(ticks[0].endpoints) == {"a", "b"}
    assert hanging == 0


def test_failed_and_slow_requests_keep_their_trace_ids() -> None:
    """Failures and slow requests are always kept; OK requests only by sampling."""
    c, events = make(sample=0.0, slow=0.5)
    request(c, 0.0, 0.1)
    request(c, 0.0, 0.1, TIMEOUT)
    request(c, 0.0, 0.8)
    c.tick(1.0, users=1, send_floor=1.0)
    refs = [e for e in events if isinstance(e, TraceRef)]
    assert [(r.reason, r.outcome) for r in refs] == [("failed", "timeout"), ("slow", "ok")]
    assert refs[0].trace_id == TID and refs[0].worker == 3
    assert refs[1].latency == pytest.approx(0.8)


def test_trace_ids_are_capped_per_second_and_drops_counted() -> None:
    """At most trace_cap per second (sampled ones half of it); the excess is counted."""
    c, events = make(sample=1.0, cap=10)
    for i in range(30):
        request(c, 0.01 * i, 0.5)  # 30 sampled OK requests in second 0
    for _ in range(30):
        request(c, 1.0, 1.5, C5XX)  # 30 failures in second 1
    c.tick(2.0, users=1, send_floor=2.0)
    refs = [e for e in events if isinstance(e, TraceRef)]
    assert sum(r.reason == "sampled" for r in refs) == 5
    assert sum(r.reason == "failed" for r in refs) == 10
    assert c.dropped_traces == 25 + 20


def test_finish_emits_partial_seconds_and_counts_abandoned() -> None:
    """At the end every second through the last is emitted; requests in flight are abandoned."""
    c, events = make()
    request(c, 0.5, 0.6)
    c.begin(1.2)
    c.write_ack("o-1", "POST /orders", 0.5, 201)
    c.finish(2.5, users=0, last_second=3)
    assert [s.second for s in seconds(events)] == [0, 1, 2, 3]
    assert c.abandoned == 1 and c.in_flight == 0
    assert next(e for e in events if isinstance(e, WriteAck)).id == "o-1"


def test_abandon_releases_a_second() -> None:
    """A request killed mid-flight no longer holds its second back."""
    c, events = make()
    second = c.begin(0.5)
    c.abandon(second)
    c.tick(1.5, users=0, send_floor=1.5)
    assert [s.second for s in seconds(events)] == [0]
    assert seconds(events)[0].endpoints == {}


def test_reports_after_the_fact_are_final_after_the_lag_and_late_ones_counted() -> None:
    """Locustfile requests (no begin) land in their send second; too-late ones are counted."""
    c, events = make()
    c.end(0, "GET /x", 0.4, 0.6, OK, status=200, trace_id="", span_id="", begun=False)
    c.tick(2.0, users=1, send_floor=1.0)
    assert [s.endpoints["GET /x"].n for s in seconds(events)] == [1]
    c.end(0, "GET /x", 0.9, 2.1, OK, status=200, trace_id="", span_id="", begun=False)
    assert c.late == 1
    assert not [e for e in events if isinstance(e, TraceRef)]
