"""Phases, SLOs and recovery time on synthetic per-second load data."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hdrh.histogram import HdrHistogram

from resilience.analysis.data import MemoryLoadView, window_stats
from resilience.analysis.recovery import measure_recovery
from resilience.analysis.slo import evaluate_slos
from resilience.histogram import new_histogram
from resilience.vocabulary import FaultWindow, Phase, phases_from_faults


def _hist(latency_ms: float, n: int) -> HdrHistogram:
    h = new_histogram()
    for _ in range(n):
        h.record_value(int(latency_ms * 1000))
    return h


def _view(profile: dict[int, tuple[float, int, int]], endpoint: str = "GET /x") -> MemoryLoadView:
    """profile[second] = (latency ms, ok count, error count)."""
    view = MemoryLoadView()
    for second, (latency, ok, errors) in profile.items():
        view.add(endpoint, second, _hist(latency, ok + errors), {"ok": ok, "5xx": errors})
    return view


def test_phases_from_stamps_merge_overlaps() -> None:
    """Overlapping faults make one fault phase from first apply to last heal."""
    phases = phases_from_faults(
        [FaultWindow(0, "p", "hang", 10.2, 20.0), FaultWindow(1, "p", "hang", 15.0, 25.5)],
        start=0.0,
        end=40.0,
    )
    assert [(p.name, p.start, p.end) for p in phases] == [
        ("baseline", 0.0, 10.2),
        ("fault", 10.2, 25.5),
        ("recovery", 25.5, 40.0),
    ]


def test_phases_without_faults_and_unhealed() -> None:
    """No faults: all baseline. A fault never healed: no recovery phase."""
    assert [p.name for p in phases_from_faults([], start=0, end=30)] == ["baseline"]
    unhealed = phases_from_faults([FaultWindow(0, "p", "hang", 5.0, None)], start=0, end=30)
    assert [(p.name, p.end) for p in unhealed] == [("baseline", 5.0), ("fault", 30)]


def test_phase_seconds_use_midpoints() -> None:
    """Second s is in a phase when s + 0.5 is inside it."""
    assert list(Phase("fault", 10.2, 13.7).seconds()) == [10, 11, 12, 13]
    assert list(Phase("fault", 10.6, 13.4).seconds()) == [11, 12]


def test_window_stats_merge_histograms() -> None:
    """Phase percentiles come from the merged histogram, not averaged per-second values."""
    view = _view({0: (10, 99, 0), 1: (1000, 1, 0)})
    stats = window_stats(view, None, [0, 1])
    assert stats.requests == 100
    assert stats.p50 == pytest.approx(10, rel=0.01)
    assert stats.max == pytest.approx(1000, rel=0.01)


@dataclass
class _T:
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    error_rate: float | None = None
    min_rps: float | None = None
    endpoints: dict[str, _T] = field(default_factory=dict)


def test_slo_per_phase_and_endpoint() -> None:
    """A fault-phase p95 breach on one endpoint fails only that SLO."""
    profile = dict.fromkeys(range(10), (20.0, 50, 0)) | dict.fromkeys(
        range(10, 20), (900.0, 40, 10)
    )
    view = _view(profile)
    phases = [Phase("baseline", 0, 10), Phase("fault", 10, 20)]
    results = evaluate_slos(
        view,
        phases,
        {"baseline": _T(p95=0.5), "fault": _T(endpoints={"GET /x": _T(p95=0.5, error_rate=0.01)})},
    )
    by_key = {(r.phase, r.endpoint, r.metric): r for r in results}
    assert by_key[("baseline", None, "p95")].passed is True
    assert by_key[("fault", "GET /x", "p95")].passed is False
    assert by_key[("fault", "GET /x", "error_rate")].observed == pytest.approx(0.2)


@pytest.mark.parametrize("slow_seconds", [0, 4, 9])
def test_recovery_time_measures_the_slow_tail(slow_seconds: int) -> None:
    """Recovery time equals the seconds of errors after the heal, to the second."""
    profile = dict.fromkeys(range(40), (20.0, 50, 0))
    for s in range(15, 25):
        profile[s] = (20.0, 0, 50)  # fault
    for s in range(25, 25 + slow_seconds):
        profile[s] = (20.0, 25, 25)  # still failing after the heal
    view = _view(profile)
    phases = [Phase("baseline", 0, 15), Phase("fault", 15, 25), Phase("recovery", 25, 40)]
    result = measure_recovery(view, phases, stable_seconds=5, budget_seconds=5)
    assert result is not None
    assert result.recovered
    assert result.seconds == pytest.approx(slow_seconds, abs=0.01)
    assert result.within_budget is (slow_seconds <= 5)
    assert result.degradation_area > 0


def test_recovery_never_returns_is_metastable() -> None:
    """A target that stays degraded after the heal is recovered=false with seconds None."""
    profile = dict.fromkeys(range(15), (20.0, 50, 0)) | dict.fromkeys(
        range(15, 40), (3000.0, 10, 0)
    )
    view = _view(profile)
    phases = [Phase("baseline", 0, 15), Phase("fault", 15, 20), Phase("recovery", 20, 40)]
    result = measure_recovery(view, phases)
    assert result is not None
    assert result.recovered is False
    assert result.seconds is None
    assert result.out_of_band


def test_seconds_without_requests_sent_after_the_heal_are_not_judged() -> None:
    """Seconds with no requests (every closed-model user still blocked) prove nothing either
    way: recovery starts at the first judged second that stays in band."""
    profile = dict.fromkeys(range(15), (20.0, 50, 0)) | dict.fromkeys(range(28, 40), (20.0, 50, 0))
    view = _view(profile)
    phases = [Phase("baseline", 0, 15), Phase("fault", 15, 20), Phase("recovery", 20, 40)]
    result = measure_recovery(view, phases)
    assert result is not None and result.seconds == pytest.approx(8)


def test_count_above_matches_the_recorded_values() -> None:
    """count_above counts the values above a threshold, at histogram resolution."""
    from resilience.histogram import count_above

    hist = new_histogram()
    for value in (100, 200, 5_000, 5_000_000, 6_000_000):
        hist.record_value(value)
    assert count_above(hist, 1_000) == 3
    assert count_above(hist, 5_500_000) == 1
    assert count_above(hist, 10_000_000) == 0
    assert count_above(new_histogram(), 10) == 0


def _phases() -> list[Phase]:
    return [Phase("baseline", 0, 15), Phase("fault", 15, 20), Phase("recovery", 20, 40)]


def test_a_single_out_of_band_second_does_not_restart_the_clock() -> None:
    """One slow second inside the stable run is forgiven; recovery stays at the heal."""
    profile = dict.fromkeys(range(15), (20.0, 50, 0)) | dict.fromkeys(range(20, 40), (20.0, 50, 0))
    profile[22] = (900.0, 50, 0)
    result = measure_recovery(_view(profile), _phases(), stable_seconds=5)
    assert result is not None and result.recovered
    assert result.seconds == 0.0
    assert [s for s, _ in result.out_of_band] == [22]


def test_a_persisting_out_of_band_stretch_restarts_the_clock() -> None:
    """Two out-of-band seconds in a row restart the count: recovery after them."""
    profile = dict.fromkeys(range(15), (20.0, 50, 0)) | dict.fromkeys(range(20, 40), (20.0, 50, 0))
    profile[22] = profile[23] = (900.0, 50, 0)
    result = measure_recovery(_view(profile), _phases(), stable_seconds=5)
    assert result is not None and result.recovered
    assert result.seconds == 4.0


def test_a_baseline_too_short_makes_recovery_inconclusive_never_failed() -> None:
    """Three baseline seconds cannot make a band: recovered is None, with the reason."""
    profile = dict.fromkeys(range(12, 15), (20.0, 50, 0)) | dict.fromkeys(
        range(20, 40), (3000.0, 50, 50)
    )
    result = measure_recovery(_view(profile), _phases())
    assert result is not None
    assert result.recovered is None and result.seconds is None
    assert "baseline is too short" in result.note


def test_same_inputs_same_recovery() -> None:
    """Recovery is a function of the data: the same view gives the same result twice."""
    profile = dict.fromkeys(range(15), (20.0, 50, 0)) | {
        s: (20.0 if s % 3 else 400.0, 50, s % 2) for s in range(20, 40)
    }
    first = measure_recovery(_view(profile), _phases())
    second = measure_recovery(_view(profile), _phases())
    assert first == second


def _two_endpoints(light: dict[int, tuple[int, int]]) -> MemoryLoadView:
    """A busy endpoint always healthy after the heal (50 ok a second) and a light one whose
    recovery seconds are ``light[second] = (ok, errors)`` (2 ok a second elsewhere)."""
    view = MemoryLoadView()
    for second in [*range(15), *range(20, 40)]:
        view.add("GET /busy", second, _hist(20.0, 50), {"ok": 50, "5xx": 0})
        ok, errors = light.get(second, (2, 0))
        view.add("POST /light", second, _hist(20.0, ok + errors), {"ok": ok, "5xx": errors})
    return view


def test_a_light_endpoint_still_failing_is_not_hidden_by_the_busy_ones() -> None:
    """A breaker half-open lets its probe through and fails the rest: one or a few errors a
    second on a light endpoint stay inside the whole load's per-second tolerance, but over
    the stable run that endpoint failed most of its requests: it has not recovered yet."""
    light = {20: (1, 1), 21: (1, 4), 22: (1, 1), 23: (1, 1)}
    result = measure_recovery(_two_endpoints(light), _phases(), stable_seconds=5)
    assert result is not None and result.recovered
    assert result.seconds == 3.0  # second 23's one error is tolerated, 20-22 are not
    assert [s for s, _ in result.out_of_band] == [21]  # the only second out of band
    assert [(lag.endpoint, lag.first) for lag in result.lagging] == [
        ("POST /light", 20),
        ("POST /light", 22),
    ]
    assert "POST /light: 3 of 10 requests failed in seconds 20-25" in result.lagging[0].describe()


def test_one_stray_error_on_a_light_endpoint_does_not_delay_recovery() -> None:
    """One error over the stable run is tolerated per endpoint, as one a second is overall."""
    result = measure_recovery(_two_endpoints({21: (1, 1)}), _phases(), stable_seconds=5)
    assert result is not None and result.seconds == 0.0


def test_a_light_endpoint_failing_to_the_end_is_not_recovered() -> None:
    """The whole load in band every second, one light endpoint failing half its requests
    to the end of the window: not recovered."""
    light = dict.fromkeys(range(20, 40), (1, 1))
    result = measure_recovery(_two_endpoints(light), _phases(), stable_seconds=5)
    assert result is not None and result.recovered is False
    assert result.judged_seconds == 20  # every second after the heal was looked at


def test_the_forgiven_second_is_forgiven_for_every_endpoint() -> None:
    """One bad second of the busy endpoint inside a stable run is forgiven, whether or not
    the load has other endpoints: its errors do not count against that endpoint either."""
    light = dict.fromkeys(range(20, 40), (2, 0))
    view = _two_endpoints(light)
    view.add("GET /busy", 22, _hist(20.0, 50), {"ok": 30, "5xx": 20})
    result = measure_recovery(view, _phases(), stable_seconds=5)
    assert result is not None and result.seconds == 0.0
    assert result.lagging == []


def test_a_light_endpoint_with_its_usual_errors_has_recovered() -> None:
    """An endpoint that fails 5 % of its requests in the baseline too (here 10 a second,
    one error every other second, two now and then) is not held back after the heal for
    doing the same: the allowance follows its baseline's rate."""
    view = MemoryLoadView()
    for second in [*range(15), *range(20, 40)]:
        view.add("GET /busy", second, _hist(20.0, 50), {"ok": 50, "5xx": 0})
        errors = 2 if second % 7 == 0 else second % 2
        view.add("GET /flaky", second, _hist(20.0, 10), {"ok": 10 - errors, "5xx": errors})
    result = measure_recovery(view, _phases(), stable_seconds=5)
    assert result is not None and result.seconds == 0.0
    assert result.lagging == []
