"""Phases by overlap: a request belongs to the fault phase when its [sent, ended] interval
touches a fault; the baseline holds only requests that ended before the fault began; recovery
only requests sent after the heal. Pinned on synthetic requests straddling apply and heal,
from the worker's recording through the run directory to the SLOs and recovery."""

from __future__ import annotations

import random
from pathlib import Path

from resilience.analysis.phases import Mark, PhasedLoad, PhaseRule
from resilience.analysis.recovery import measure_recovery
from resilience.analysis.slo import evaluate_slos
from resilience.load.collector import C5XX, OK, TIMEOUT, Collector
from resilience.load.commands import PhaseMarks, decode_command, encode_command
from resilience.load.recorder import LoadRecorder
from resilience.load.samples import LoadEvent, SecondSample, decode_event, encode_event
from resilience.rundir.load import LoadData
from resilience.vocabulary import Phase

APPLY, HEAL = 6.0, 14.0
MARKS = (Mark(APPLY, "apply", 0), Mark(HEAL, "heal", 0))
PHASES = [Phase("baseline", 0.0, APPLY), Phase("fault", APPLY, HEAL), Phase("recovery", HEAL, 30.0)]


def collector(events: list[LoadEvent]) -> Collector:
    return Collector(
        worker=0,
        emit=events.append,
        slow_threshold=10.0,
        trace_sample=0.0,
        trace_cap=10,
        rng=random.Random(1),
        track_phases=True,
    )


def send(
    c: Collector, sent: float, done: float, outcome: int = OK, endpoint: str = "GET /a"
) -> None:
    second = c.begin(sent)
    c.end(second, endpoint, sent, done, outcome, status=200, trace_id="", span_id="")


def samples(events: list[LoadEvent]) -> dict[int, SecondSample]:
    return {e.second: e for e in events if isinstance(e, SecondSample)}


def test_rule_places_segments_by_overlap() -> None:
    """Ended before the first mark: baseline; sent after the last heal: recovery; else fault."""
    rule = PhaseRule(MARKS)
    assert rule.phase_of("0-0") == "baseline"
    assert rule.phase_of("0-1") == "fault"  # sent before the fault, ended during it
    assert rule.phase_of("1-1") == "fault"
    assert rule.phase_of("1-2") == "fault"  # sent during the fault, ended after the heal
    assert rule.phase_of("0-2") == "fault"  # hung through the whole fault
    assert rule.phase_of("2-2") == "recovery"
    assert rule.phase_of_interval(5.3, 5.9) == "baseline"
    assert rule.phase_of_interval(5.5, 6.4) == "fault"
    assert rule.phase_of_interval(14.0, 14.2) == "recovery"


def test_overlapping_faults_recover_only_after_the_last_heal() -> None:
    """Two overlapping faults: between the first heal and the last, still the fault phase;
    a fault never healed leaves no recovery at all."""
    rule = PhaseRule(
        (Mark(5, "apply", 0), Mark(7, "apply", 1), Mark(9, "heal", 0), Mark(12, "heal", 1))
    )
    assert rule.phase_of("3-3") == "fault"
    assert rule.phase_of("4-4") == "recovery"
    unhealed = PhaseRule((Mark(5, "apply", 0),))
    assert unhealed.recovery_from is None
    assert unhealed.phase_of("1-1") == "fault"


def test_the_worker_splits_a_second_straddling_the_apply_and_the_heal() -> None:
    """Second 5 holds one request that ended before the fault and one that ended after it
    began: two parts; second 13's request ended after the heal (1-2); 14's came after (2-2)."""
    events: list[LoadEvent] = []
    c = collector(events)
    c.start(0.0)
    send(c, 5.3, 5.9)
    send(c, 5.5, 6.4, C5XX)
    send(c, 13.5, 14.2, TIMEOUT)
    send(c, 14.3, 14.5)
    c.set_marks([APPLY, HEAL], None)
    c.tick(16.0, users=1, send_floor=16.0)
    got = samples(events)
    second5 = got[5].endpoints["GET /a"]
    assert set(second5.parts) == {"0-0", "0-1"}
    assert second5.parts["0-0"].counts["ok"] == 1
    assert second5.parts["0-1"].counts["5xx"] == 1
    assert got[13].endpoints["GET /a"].segment == "1-2"
    assert got[14].endpoints["GET /a"].segment == "2-2"
    # The wire format carries it all (and the common case stays small).
    line = encode_event(got[5])
    assert decode_event(line) == got[5]


def test_a_finished_second_waits_until_the_marks_are_known_past_it() -> None:
    """A second whose requests all ended is held back until ``upto`` passes its last end:
    a mark may still come that falls inside one of them."""
    events: list[LoadEvent] = []
    c = collector(events)
    c.start(0.0)
    send(c, 5.5, 6.4)
    c.set_marks([], upto=6.0)
    c.tick(7.0, users=1, send_floor=7.0)
    assert 5 not in samples(events)
    c.set_marks([6.2], upto=6.5)
    c.tick(7.1, users=1, send_floor=7.0)
    assert samples(events)[5].endpoints["GET /a"].segment == "0-1"


def test_without_phase_tracking_nothing_waits_and_nothing_is_split() -> None:
    """A run without faults records exactly as before: no parts, no hold-back."""
    events: list[LoadEvent] = []
    c = Collector(
        worker=0, emit=events.append, slow_threshold=10.0, trace_sample=0.0, trace_cap=10,
        rng=random.Random(1),
    )  # fmt: skip
    c.start(0.0)
    send(c, 5.5, 6.4)
    c.tick(7.0, users=1, send_floor=7.0)
    sample = samples(events)[5].endpoints["GET /a"]
    assert sample.segment == "0-0" and not sample.parts


def test_phase_marks_travel_as_a_command() -> None:
    """The parent's PhaseMarks round-trip through the command channel; bad ones are refused."""
    marks = PhaseMarks((6.0, 14.0), upto=15.5)
    assert decode_command(encode_command(marks)) == marks
    final = PhaseMarks((6.0,), upto=None)
    assert decode_command(encode_command(final)) == final


def recorded_run(tmp_path: Path) -> LoadData:
    """30 s of one endpoint: 10 requests a second of 10 ms; around the fault (6-14 s) the
    straddling requests of second 5 fail, the fault's requests fail, second 13's requests
    hang past the heal; after the heal everything is fine again."""
    events: list[LoadEvent] = []
    c = collector(events)
    c.start(0.0)
    for second in range(30):
        for k in range(10):
            sent = second + k / 10
            if second == 5 and k >= 8:
                send(c, sent, APPLY + 0.3, C5XX)  # in flight when the fault began
            elif APPLY <= sent < HEAL:
                send(c, sent, sent + (HEAL - sent) + 0.2 if second == 13 else sent + 0.5, C5XX)
            else:
                send(c, sent, sent + 0.01)
    c.set_marks([APPLY, HEAL], None)
    c.finish(31.0, users=0, last_second=29)
    with LoadRecorder(tmp_path, t0=1_000.0, workers=1, endpoints=["GET /a"]) as recorder:
        recorder.consume(events)
    return LoadData.read(tmp_path)


def test_slos_judge_each_request_in_the_phase_it_overlaps(tmp_path: Path) -> None:
    """The two requests of second 5 failed by the fault count in the fault phase: the
    baseline holds (0 % errors, where send time said 2 %)."""
    load = recorded_run(tmp_path)
    phased = PhasedLoad(load, PHASES, PhaseRule(MARKS))
    limits = {"baseline": _Limits(error_rate=0.001), "fault": _Limits(error_rate=1.0)}
    results = {(r.phase, r.metric): r for r in evaluate_slos(phased, PHASES, limits)}
    assert results[("baseline", "error_rate")].observed == 0.0
    assert results[("baseline", "error_rate")].passed
    by_send_time = {(r.phase, r.metric): r for r in evaluate_slos(load, PHASES, limits)}
    assert by_send_time[("baseline", "error_rate")].observed == 2 / 60
    assert 5 in phased.seconds("baseline") and 5 in phased.seconds("fault")
    assert phased.view("fault").counts("GET /a", 5)["5xx"] == 2


def test_recovery_counts_only_requests_sent_after_the_heal(tmp_path: Path) -> None:
    """Second 13's requests hung past the heal belong to the fault; the first seconds after
    the heal are clean, so recovery is immediate."""
    load = recorded_run(tmp_path)
    phased = PhasedLoad(load, PHASES, PhaseRule(MARKS))
    result = measure_recovery(phased, PHASES, stable_seconds=3)
    assert result is not None and result.recovered
    assert result.seconds == 0.0
    assert 13 not in phased.seconds("recovery")


class _Limits:
    """Thresholds in the shape analysis.slo reads."""

    def __init__(self, **values: float) -> None:
        self.p50 = self.p95 = self.p99 = self.max = None
        self.error_rate: float | None = values.get("error_rate")
        self.min_rps: float | None = None
        self.endpoints: dict[str, _Limits] = {}
