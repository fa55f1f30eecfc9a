"""A game day's fault windows, each judged as a run: its own baseline, fault and recovery
phases over the session's marks, and only its own requests."""

from __future__ import annotations

import json
from pathlib import Path

from resilience.analysis.phases import OUTSIDE, Mark, PhasedLoad, window_rule
from resilience.analysis.windows import analyse_windows, session_windows
from resilience.rundir.load import LoadData
from resilience.testing.sample_session import CATALOG, ORDERS, write_sample_session
from resilience.vocabulary import FaultWindow, Phase

MARKS = (Mark(10, "apply", 0), Mark(18, "heal", 0), Mark(40, "apply", 1), Mark(48, "heal", 1))


def test_each_window_places_requests_by_its_own_marks() -> None:
    """Window 1's baseline is what ended between the two windows; a request of window 0
    is outside window 1; one sent after window 0's heal that ended in window 1 is not
    window 0's recovery but window 1's fault."""
    first = window_rule(MARKS, [0], baseline_start=2.0)
    second = window_rule(MARKS, [1], baseline_start=23.0)
    assert first is not None and second is not None
    assert [first.phase_of(k) for k in ("0-0", "0-1", "1-2", "2-2", "2-3", "3-4")] == [
        "baseline", "fault", "fault", "recovery", OUTSIDE, OUTSIDE,
    ]  # fmt: skip
    assert [second.phase_of(k) for k in ("1-2", "2-2", "2-3", "0-3", "3-4", "4-4")] == [
        OUTSIDE, "baseline", "fault", "fault", "fault", "recovery",
    ]  # fmt: skip
    never_healed = window_rule(MARKS[:3], [1], baseline_start=23.0)
    assert never_healed is not None and never_healed.phase_of("3-3") == "fault"
    assert window_rule((), [0], baseline_start=0.0) is None


def test_the_first_baseline_stands_in_when_a_window_follows_too_soon() -> None:
    """A window whose baseline is the session's first: before = 0 marks."""
    rule = window_rule(MARKS, [1], baseline_start=2.0)
    assert rule is not None and rule.phase_of("0-0") == "baseline"
    assert rule.phase_of("2-2") == OUTSIDE


def test_overlapping_faults_make_one_window_and_the_next_ends_its_recovery() -> None:
    """Faults 0 and 1 overlap: one window until the later heal; window 2's start ends its
    recovery phase; a fault never healed leaves its window open."""
    faults = [
        FaultWindow(0, "postgres", "hang", 10.0, 20.0),
        FaultWindow(1, "catalog", "latency", 15.0, 25.0),
        FaultWindow(2, "postgres", "outage", 40.0, None),
    ]
    first, second = session_windows(faults, end=60.0)
    assert (first.start, first.end, first.until) == (10.0, 25.0, 40.0)
    assert [f.index for f in first.faults] == [0, 1]
    assert first.label == "#0 hang on postgres + #1 latency on catalog"
    assert (second.start, second.end, second.until) == (40.0, None, 60.0)


def test_a_session_judges_each_window_with_its_own_phases(tmp_path: Path) -> None:
    """Window 0 recovers at once (its hung orders count in the fault, window 1's errors are
    not its recovery); window 1 gets its own baseline after window 0's recovery and
    recovers 5 s after its heal, over the 3 s budget: a slow-recovery finding of its own."""
    session = write_sample_session(tmp_path / "session")
    first, second = analyse_windows(session)
    assert first.verdict.phases[0] == Phase("baseline", 2.0, 10.0)
    assert first.verdict.recovery is not None and first.verdict.recovery.recovered
    assert first.verdict.recovery.seconds == 0.0
    assert first.verdict.analysis["phase_rule"] == "overlap"
    assert second.own_baseline and second.baseline == Phase("baseline", 23.0, 40.0)
    recovery = second.verdict.recovery
    assert recovery is not None and recovery.recovered and recovery.seconds == 5.0
    assert recovery.within_budget is False
    # Window 0's fault judged only order errors; catalog held there, not in window 1.
    fault_slo = {(r.phase, r.endpoint, r.metric): r for r in first.verdict.slo}
    assert fault_slo[("fault", CATALOG, "error_rate")].passed is True
    second_slo = {(r.phase, r.endpoint, r.metric): r for r in second.verdict.slo}
    assert second_slo[("fault", CATALOG, "error_rate")].passed is False
    assert second_slo[("baseline", None, "error_rate")].passed is True
    # The detectors ran per window: the slow recovery is window 1's alone.
    found = {
        w.window.index: {f.kind for f in w.verdict.findings if f.status == "found"}
        for w in (first, second)
    }
    assert "slow_recovery" in found[1] and "slow_recovery" not in found[0]


def test_hung_requests_belong_to_the_fault_of_their_window(tmp_path: Path) -> None:
    """Orders sent in the half second before window 0's heal ended after it: fault, never
    recovery; by send time (a session without marks) the same second reads differently."""
    session = write_sample_session(tmp_path / "session")
    first, _ = analyse_windows(session)
    rule = window_rule(MARKS, [0], baseline_start=2.0)
    phased = PhasedLoad(LoadData.read(session), first.verdict.phases, rule, warmup=2.0)
    assert phased.view("fault").counts(ORDERS, 17)["5xx"] == 10
    assert 17 not in phased.seconds("recovery")
    unmarked = write_sample_session(tmp_path / "unmarked", marks=False)
    old_first, _ = analyse_windows(unmarked)
    assert old_first.verdict.analysis["phase_rule"] == "send_time"


def test_a_killed_session_is_judged_up_to_its_last_evidence(tmp_path: Path) -> None:
    """A session killed during its second fault (no load_end, the fault never healed, its
    heal mark never sent, a max_duration of hours): the open window runs to the last
    second with load data, a fault phase with no recovery."""
    session = write_sample_session(tmp_path / "session")
    path = session / "journal.json"
    journal = json.loads(path.read_text())
    journal.pop("load_end")
    journal.pop("ended_at")
    journal.update(status="aborted", max_duration=14400.0)
    journal["faults"][1]["healed_at"] = None
    journal["marks"] = journal["marks"][:3]
    path.write_text(json.dumps(journal))
    first, second = analyse_windows(session)
    assert first.verdict.recovery is not None and first.verdict.recovery.recovered
    assert second.window.end is None and second.window.until == 70.0
    assert [p.name for p in second.verdict.phases] == ["baseline", "fault"]
    assert second.verdict.recovery is None
