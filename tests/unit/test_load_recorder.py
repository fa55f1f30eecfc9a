"""The recorder merges workers per second, writes the run directory, and reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader
from hypothesis import given
from hypothesis import strategies as st

from resilience import histogram as hist
from resilience.errors import LoadError
from resilience.load.recorder import LoadRecorder
from resilience.load.samples import EndpointSecond, LiveTick, SecondSample, WorkerExit, empty_counts
from resilience.rundir.load import LoadData, decode_tag, encode_tag
from resilience.rundir.records import TraceRef, WriteAck

T0 = 1_700_000_000.0


def endpoint(values_us: list[int], errors: dict[str, int] | None = None) -> EndpointSecond:
    """Latencies of one endpoint in one second; all ok except the ``errors`` given."""
    counts = empty_counts()
    counts.update(errors or {})
    counts["ok"] = len(values_us) - sum((errors or {}).values())
    return EndpointSecond(counts=counts, histogram=hist.encode(hist.from_values(values_us)))


def sample(worker: int, second: int, **endpoints: EndpointSecond) -> SecondSample:
    return SecondSample(worker=worker, second=second, endpoints=dict(endpoints))


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@given(st.text())
def test_endpoint_tags_are_reversible_and_safe(name: str) -> None:
    """Any endpoint name becomes a tag without comma, space or line break, and comes back."""
    tag = encode_tag(name)
    assert not set(tag) & {",", " ", "\r", "\n", "\t"}
    assert decode_tag(tag) == name


def test_seconds_are_written_once_every_worker_reported_them(tmp_path: Path) -> None:
    """Second s is written, merged, only when both workers reported it; in order."""
    recorder = LoadRecorder(tmp_path, t0=T0, workers=2)
    recorder.handle(sample(0, 0, a=endpoint([1000, 2000])))
    recorder.handle(sample(0, 1, a=endpoint([3000])))
    assert lines(tmp_path / "load.jsonl") == []
    recorder.handle(sample(1, 0, a=endpoint([4000], {"5xx": 1}), b=endpoint([5000])))
    written = lines(tmp_path / "load.jsonl")
    assert [(r["second"], r["endpoint"], r["n"]) for r in written] == [(0, "a", 3), (0, "b", 1)]
    assert written[0]["ok"] == 2 and written[0]["5xx"] == 1
    recorder.handle(WorkerExit(worker=1, reason="end", returncode=0))
    assert [r["second"] for r in lines(tmp_path / "load.jsonl")] == [0, 0, 1]
    recorder.close()


def test_run_directory_reads_back_per_endpoint_and_aggregate(tmp_path: Path) -> None:
    """LoadData.read returns per-second histograms and counts, and the all-endpoints view."""
    with LoadRecorder(tmp_path, t0=T0, workers=2) as recorder:
        recorder.consume(
            [
                sample(0, 0, **{"GET /a b,c": endpoint([1000, 2000])}),
                sample(
                    1,
                    0,
                    **{"GET /a b,c": endpoint([3000]), "POST /x": endpoint([9000], {"timeout": 1})},
                ),
                sample(0, 1),
                sample(1, 1, **{"POST /x": endpoint([7000])}),
                TraceRef(0, "a" * 32, "b" * 16, "POST /x", 0.5, 0.009, "timeout", 0, "failed"),
                WriteAck(1, 42, "POST /x", 1.2, 201),
            ]
        )
    data = LoadData.read(tmp_path)
    assert data.t0 == T0
    assert list(data.seconds) == [0, 1]
    assert set(data.endpoints) == {"GET /a b,c", "POST /x"}
    h = data.histogram("GET /a b,c", 0)
    assert h is not None and h.total == 3
    assert data.counts("POST /x", 0)["timeout"] == 1
    assert data.counts(None, 0)["ok"] == 3
    assert sum(data.counts(None, 1).values()) == 1
    everything = data.histogram(None, 0)
    assert everything is not None and everything.total == 4
    assert data.merged("POST /x", [0, 1]).total == 2
    assert data.total_requests() == 5
    assert data.traces[0].trace_id == "a" * 32
    assert data.writes[0].id == 42
    meta = json.loads((tmp_path / "load.json").read_text())
    assert meta["closed"] is True and meta["requests"] == 5 and meta["seconds"] == 2


def test_hlog_is_readable_by_the_hdrh_log_reader(tmp_path: Path) -> None:
    """Other HdrHistogram tools read latency.hlog: tags, relative timestamps, counts."""
    with LoadRecorder(tmp_path, t0=T0, workers=1) as recorder:
        recorder.handle(sample(0, 0, **{"GET /x": endpoint([1500, 2500])}))
        recorder.handle(sample(0, 1, **{"GET /x": endpoint([500])}))
    reader = HistogramLogReader(str(tmp_path / "latency.hlog"), hist.new_histogram())
    found = []
    while (h := reader.get_next_interval_histogram()) is not None:
        found.append(
            (h.get_tag(), h.get_total_count(), round(h.get_start_time_stamp() / 1000 - T0))
        )
    reader.close()
    assert found == [("GET%20/x", 2, 0), (None, 2, 0), ("GET%20/x", 1, 1), (None, 1, 1)]


def test_live_stats_roll_over_the_window(tmp_path: Path) -> None:
    """live() merges the last seconds of completions across workers, per endpoint or all."""
    recorder = LoadRecorder(tmp_path, t0=T0, workers=2)

    def tick(worker: int, second: int, in_flight: int, **endpoints: EndpointSecond) -> LiveTick:
        counts = empty_counts()
        for e in endpoints.values():
            for k, v in e.counts.items():
                counts[k] += v
        return LiveTick(
            worker, second, counts, None, None, None, in_flight, 5, 1.5, dict(endpoints)
        )

    recorder.consume(
        [
            tick(0, 0, 0, a=endpoint([100_000] * 10)),
            tick(0, 1, 1, a=endpoint([200_000] * 10, {"5xx": 5})),
            tick(1, 1, 2, b=endpoint([900_000] * 10)),
        ]
    )
    live = recorder.live(window_s=2)
    assert live.rps == pytest.approx(15.0)
    assert live.error_rate == pytest.approx(5 / 30)
    assert live.in_flight == 3 and live.users == 10 and live.second == 1
    assert live.oldest_in_flight == 1.5
    assert live.p99 == pytest.approx(0.9, rel=0.01)
    only_a = recorder.live(window_s=1, endpoint="a")
    assert only_a.completions == 10 and only_a.p50 == pytest.approx(0.2, rel=0.01)
    recorder.close()


def test_live_stats_before_any_tick_are_empty(tmp_path: Path) -> None:
    """Before the first tick there is nothing: zero rate and no percentiles."""
    with LoadRecorder(tmp_path, t0=T0, workers=1) as recorder:
        live = recorder.live()
    assert live.rps == 0.0 and live.p95 is None and live.error_rate is None


def test_close_writes_what_a_dead_worker_left_pending(tmp_path: Path) -> None:
    """A worker that never reports does not hold the data back forever: close writes it."""
    recorder = LoadRecorder(tmp_path, t0=T0, workers=2)
    recorder.handle(sample(0, 0, a=endpoint([1000])))
    recorder.close()
    assert [r["second"] for r in lines(tmp_path / "load.jsonl")] == [0]


def test_works_as_the_analysis_load_view(tmp_path: Path) -> None:
    """LoadData plugs into the analysis' window statistics as a LoadView."""
    from resilience.analysis.data import window_stats

    with LoadRecorder(tmp_path, t0=T0, workers=1) as recorder:
        for second in range(3):
            recorder.handle(sample(0, second, a=endpoint([10_000 * (second + 1)] * 4, {"5xx": 1})))
    stats = window_stats(LoadData.read(tmp_path), "a", range(3))
    assert stats.requests == 12 and stats.errors == 3
    assert stats.p50 == pytest.approx(20.0, rel=0.01)


def test_reading_a_directory_without_load_data_fails_clearly(tmp_path: Path) -> None:
    """No latency.hlog: a LoadError that says so."""
    with pytest.raises(LoadError, match=r"latency\.hlog"):
        LoadData.read(tmp_path)


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    """A run killed mid-write leaves a partial line; reading skips it."""
    with LoadRecorder(tmp_path, t0=T0, workers=1) as recorder:
        recorder.handle(sample(0, 0, a=endpoint([1000])))
    with (tmp_path / "load.jsonl").open("a") as handle:
        handle.write('{"second": 1, "endp')
    with (tmp_path / "latency.hlog").open("a") as handle:
        handle.write("Tag=a,1.000,1.000,0.0,HISTFAAAA")
    data = LoadData.read(tmp_path)
    assert list(data.seconds) == [0]
