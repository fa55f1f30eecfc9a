"""Histograms as the engine records them, and the events' JSON-lines encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import histogram as hist
from resilience.errors import LoadError
from resilience.load.samples import (
    EndpointSecond,
    LiveTick,
    SecondSample,
    WorkerExit,
    WorkerReady,
    decode_event,
    empty_counts,
    encode_event,
)
from resilience.rundir.records import TraceRef, WriteAck
from resilience.vocabulary import OUTCOMES


@settings(max_examples=200)
@given(st.lists(st.integers(0, hist.HIGHEST_US), max_size=300))
def test_record_many_equals_record_value(values: list[int]) -> None:
    """The vectorised recorder fills exactly the buckets record_value would."""
    one_by_one = hist.new_histogram()
    for value in values:
        one_by_one.record_value(value)
    at_once = hist.from_values(values)
    assert list(at_once.counts) == list(one_by_one.counts)
    assert at_once.get_total_count() == one_by_one.get_total_count()
    if values:
        assert at_once.get_min_value() == one_by_one.get_min_value()
        assert at_once.get_max_value() == one_by_one.get_max_value()
    assert hist.encode(at_once) == hist.encode(one_by_one)


def test_values_beyond_the_range_are_clamped() -> None:
    """Seconds convert to microseconds inside 0 .. 1 h; longer values land at the top."""
    assert hist.clamp_us(-1.0) == 0
    assert hist.clamp_us(0.0015) == 1500
    assert hist.clamp_us(10_000.0) == hist.HIGHEST_US
    h = hist.from_values([hist.HIGHEST_US * 2])
    assert h.get_total_count() == 1


def test_encode_decode_round_trip_and_merge() -> None:
    """A histogram survives encoding, and merged histograms add their counts."""
    a = hist.from_values([1_000, 2_000, 3_000])
    b = hist.decode(hist.encode(a))
    assert list(b.counts) == list(a.counts)
    merged = hist.merge([a, b, hist.new_histogram()])
    assert merged.get_total_count() == 6
    p = hist.percentiles_s(merged, [50.0, 100.0])
    assert p[50.0] == pytest.approx(0.002, rel=0.01)
    assert p[100.0] == pytest.approx(0.003, rel=0.01)
    assert hist.percentiles_s(hist.new_histogram(), [50.0]) == {50.0: None}


def _examples() -> list[object]:
    counts = empty_counts()
    counts["ok"] = 3
    counts["5xx"] = 1
    endpoint = EndpointSecond(counts=counts, histogram=hist.encode(hist.from_values([5, 6])))
    return [
        SecondSample(worker=1, second=7, endpoints={"GET /a b,c": endpoint}),
        SecondSample(worker=0, second=0),
        LiveTick(
            worker=0,
            second=3,
            completions=counts,
            p50=0.001,
            p95=None,
            p99=0.5,
            in_flight=4,
            users=10,
            oldest_in_flight=2.5,
            endpoints={"x": endpoint},
        ),
        TraceRef(
            worker=0,
            trace_id="ab" * 16,
            span_id="cd" * 8,
            endpoint="GET /",
            t=1.25,
            latency=0.75,
            outcome="timeout",
            status=0,
            reason="failed",
        ),
        WriteAck(worker=1, id="o-17", endpoint="POST /orders", t=3.5, status=201),
        WriteAck(worker=1, id=17, endpoint="POST /orders", t=3.5, status=201),
        WorkerReady(worker=2, pid=1234),
        WorkerExit(worker=2, reason="end", returncode=0, requests=10, dropped_traces=1),
    ]


@pytest.mark.parametrize("event", _examples(), ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: object) -> None:
    """Each event encodes to one line of JSON and decodes to an equal object."""
    line = encode_event(event)  # type: ignore[arg-type]
    assert "\n" not in line
    assert decode_event(line) == event
    assert decode_event(line.encode()) == event


def test_endpoint_second_counts_and_decodes() -> None:
    """n sums the outcomes; the histogram decodes to the recorded values."""
    counts = dict.fromkeys(OUTCOMES, 1)
    sample = EndpointSecond(counts=counts, histogram=hist.encode(hist.from_values([10, 20])))
    assert sample.n == len(OUTCOMES)
    assert sample.decode().total == 2


@pytest.mark.parametrize(
    "line",
    ["", "not json", "[]", '{"type": "nope"}', '{"type": "trace", "worker": 0}', '{"worker": 1}'],
)
def test_malformed_lines_raise_load_error(line: str) -> None:
    """Anything that is not one of our events is a LoadError naming the line."""
    with pytest.raises(LoadError):
        decode_event(line)
