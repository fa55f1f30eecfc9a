"""Distributed load without processes: addresses, options, lost workers and missing load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resilience import histogram as hist
from resilience.errors import ExperimentError
from resilience.load.distributed import Distributed, format_address, is_loopback, parse_address
from resilience.load.plan import ArrivalStage, LoadPlan, RequestPlan, Stage
from resilience.load.recorder import LoadRecorder, missing_requests
from resilience.load.samples import (
    EndpointSecond,
    LoadEvent,
    MasterReady,
    RemoteWorker,
    SecondSample,
    WorkerExit,
    decode_event,
    empty_counts,
    encode_event,
)
from resilience.runner.orchestrator import RunOptions

T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5", ("10.0.0.5", 5557)),
        ("10.0.0.5:6000", ("10.0.0.5", 6000)),
        ("master.example:7000", ("master.example", 7000)),
        ("[::1]:6001", ("::1", 6001)),
        ("[fe80::1]", ("fe80::1", 5557)),
        ("::1", ("::1", 5557)),
        (" 0.0.0.0:5557 ", ("0.0.0.0", 5557)),
    ],
)
def test_addresses_parse_with_the_default_port(text: str, expected: tuple[str, int]) -> None:
    """HOST, HOST:PORT and bracketed IPv6 give (host, port); the port defaults."""
    assert parse_address(text, default_port=5557, option="--master") == expected


@pytest.mark.parametrize(
    "text", ["", "*", "*:5557", "host:", "host:0", "host:70000", "[::1", "a b"]
)
def test_bad_addresses_name_the_option(text: str) -> None:
    """A malformed address is an ExperimentError naming the option and the text."""
    with pytest.raises(ExperimentError) as caught:
        parse_address(text, default_port=5557, option="--master-bind")
    assert "--master-bind" in str(caught.value)
    assert caught.value.exit_code == 2


def test_loopback_is_told_from_other_interfaces() -> None:
    """Only loopback addresses (and localhost) count as this machine alone."""
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "master.example"))
    assert Distributed(workers=2).loopback
    assert Distributed(workers=2).address == "127.0.0.1:5557"
    assert format_address("::1", 6000) == "[::1]:6000"


def test_the_master_binds_loopback_by_default() -> None:
    """Nobody has to say 127.0.0.1: it is the default bind of a distributed run."""
    assert Distributed(workers=1).bind == "127.0.0.1"
    with pytest.raises(ExperimentError):
        Distributed(workers=0)


def test_run_options_refuse_workers_with_expected_workers_and_bad_binds() -> None:
    """--workers with --expect-workers, or a bind that is no address, is invalid input."""
    with pytest.raises(ExperimentError, match="do not go together"):
        RunOptions(workers=2, expect_workers=2)
    with pytest.raises(ExperimentError, match="--master-bind"):
        RunOptions(expect_workers=2, master_bind="*")
    assert RunOptions(expect_workers=2, master_bind="10.0.0.5:6000").master_bind


def test_master_events_travel_as_lines() -> None:
    """MasterReady, RemoteWorker and a lost WorkerExit survive encoding."""
    events: list[LoadEvent] = [
        MasterReady(address="127.0.0.1:5557", pid=42),
        RemoteWorker(
            worker=1, client="h_1", host="h", pid=7, state="assigned", offset=0.002, rtt=0.001
        ),
        WorkerExit(worker=1, reason="lost", at=12.5, message="nothing heard for 4.0 s"),
    ]
    assert [decode_event(encode_event(e)) for e in events] == events


def _second(worker: int, second: int, n: int) -> SecondSample:
    counts = empty_counts()
    counts["ok"] = n
    histogram = hist.encode(hist.from_values([1000] * n))
    return SecondSample(worker, second, {"GET /": EndpointSecond(counts, histogram)})


def _plan(**shape: object) -> LoadPlan:
    return LoadPlan(
        target="http://127.0.0.1:1",
        t0=T0,
        workers=2,
        requests=[RequestPlan(name="GET /", path="/")],
        **shape,
    )


def test_open_model_missing_load_is_the_lost_workers_schedule() -> None:
    """Open model: what a lost worker would have sent is exactly its share of the schedule."""
    plan = _plan(arrival=[ArrivalStage(duration=10, rps=10)])
    # 10 req/s for 10 s over 2 workers: 5 a second each; after second 3, seconds 4-9 remain.
    assert missing_requests(plan, 1, 3, sent=20) == (30, False)
    assert missing_requests(plan, 0, 9, sent=50) == (0, False)


def test_closed_model_missing_load_is_estimated_from_its_own_rate() -> None:
    """Closed model: the worker's own requests per second so far, times the seconds left."""
    plan = _plan(stages=[Stage(duration=10, users=4, spawn_rate=4)])
    assert missing_requests(plan, 0, 4, sent=50) == (50, True)


def test_a_lost_worker_is_missing_load_and_the_seconds_go_on(tmp_path: Path) -> None:
    """After a loss the survivor's seconds are written alone, and load.json says what is
    missing, from whom and from when."""
    plan = _plan(arrival=[ArrivalStage(duration=6, rps=4)])
    recorder = LoadRecorder(tmp_path, t0=T0, workers=2, endpoints=["GET /"], plan=plan)
    for second in range(2):
        recorder.handle(_second(0, second, 2))
        recorder.handle(_second(1, second, 2))
    recorder.handle(WorkerExit(worker=1, reason="lost", at=2.2, message="nothing heard for 4.0 s"))
    for second in range(2, 6):
        recorder.handle(_second(0, second, 2))
    recorder.handle(WorkerExit(worker=0, reason="end"))
    recorder.close()
    per_second = {}
    for line in (tmp_path / "load.jsonl").read_text().splitlines():
        body = json.loads(line)
        per_second[body["second"]] = body["n"]
    assert per_second == {0: 4, 1: 4, 2: 2, 3: 2, 4: 2, 5: 2}
    meta = json.loads((tmp_path / "load.json").read_text())
    assert meta["missing_requests"] == 8  # worker 1's share of seconds 2-5: 2 a second
    [lost] = meta["lost_workers"]
    assert lost["worker"] == 1 and lost["last_second"] == 1 and lost["at"] == 2.2
    assert not lost["estimated"]
    assert "load worker 1 was lost at 2.2 s" in recorder.lost[0].text()


def test_min_rps_is_not_judged_where_a_worker_was_lost() -> None:
    """A phase reaching past a lost worker's last second has its min_rps unjudged (None);
    phases before it and every other metric keep their verdict."""
    from resilience.analysis.slo import SloResult, missing_load_from, without_missing_load
    from resilience.vocabulary import Phase

    phases = [Phase("baseline", 2.0, 10.0), Phase("fault", 10.0, 20.0)]
    results = [
        SloResult("baseline", None, "min_rps", 10.0, 4.0, False, "rps"),
        SloResult("fault", None, "min_rps", 10.0, 4.0, False, "rps"),
        SloResult("fault", None, "p95", 500.0, 900.0, False, "ms"),
    ]
    since = missing_load_from({"lost_workers": [{"worker": 1, "last_second": 11}]})
    assert since == 12
    judged = without_missing_load(results, phases, since)
    assert [r.passed for r in judged] == [False, None, False]
    assert without_missing_load(results, phases, missing_load_from({})) == results
