"""Coordinated omission: what a closed-model run's stalls hid, put back and said aloud."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from resilience import histogram as hist
from resilience.analysis.omission import estimate_omission
from resilience.experiment.loader import parse_experiment
from resilience.vocabulary import Phase

EXPERIMENT = """
name: stall
load:
  {shape}
  workload:
    requests:
      - {{name: GET /, path: /}}
"""


class View:
    """A LoadView of one endpoint: per second, latencies in microseconds (all OK)."""

    def __init__(self, seconds: Mapping[int, list[int]]) -> None:
        self._seconds = dict(seconds)

    @property
    def endpoints(self) -> Sequence[str]:
        return ["GET /"]

    @property
    def seconds(self) -> Sequence[int]:
        return sorted(self._seconds)

    def histogram(self, endpoint: str | None, second: int) -> hist.Histogram | None:
        values = self._seconds.get(second)
        return hist.Histogram.from_values(values) if values else None

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]:
        return {"ok": len(self._seconds.get(second, []))}


def test_each_slow_value_gets_the_values_its_user_did_not_send() -> None:
    """1 s at a 100 ms interval hid nine requests: 900, 800, ..., 100 ms."""
    one = hist.Histogram.from_values([1_000_000, 5_000])
    corrected, added = hist.corrected_for_omission(one, 100_000)
    assert added == 9
    assert corrected.total == 11
    values_ms = sorted(
        round(value / 1000)
        for value, count in zip(
            corrected.highest_values_us().tolist(), corrected.counts.tolist(), strict=True
        )
        for _ in range(count)
    )
    expected = [5, *range(100, 1001, 100)]
    assert len(values_ms) == len(expected)
    assert all(abs(got - want) <= 1 for got, want in zip(values_ms, expected, strict=True)), (
        values_ms
    )
    untouched, none = hist.corrected_for_omission(hist.Histogram.from_values([50_000] * 3), 100_000)
    assert none == 0 and untouched.total == 3


def test_a_closed_model_stall_is_estimated_near_what_an_open_model_measures() -> None:
    """10 users at 100 req/s, the server frozen 3 s: the recorded p99 is tiny, the estimate
    counts ~300 requests not sent and puts p99 near the schedule's 2.8 s, and says so."""
    experiment = parse_experiment(
        EXPERIMENT.format(shape="stages: [{duration: 20s, users: 10, spawn_rate: 10}]")
    )
    seconds: dict[int, list[int]] = {s: [2_000] * 100 for s in range(20)}
    seconds[8] = [2_000] * 50 + [3_000_000 - 100_000 * i for i in range(10)]
    for s in (9, 10):
        seconds[s] = []
    phases = [Phase("baseline", 2.0, 8.0), Phase("fault", 8.0, 14.0), Phase("recovery", 14.0, 20.0)]
    omission = estimate_omission(View(seconds), phases, experiment)
    assert omission is not None
    assert omission.users == 10 and abs(omission.interval - 0.1) < 1e-9
    fault = next(p for p in omission.phases if p.phase == "fault")
    assert fault.p99_ms is not None and fault.p99_corrected_ms is not None
    # Each user waited 3.0 .. 2.1 s: 29 + 28 + ... + 20 requests; a value that sits on an
    # interval's edge may fall one short at the histogram's resolution (3 digits).
    assert sum(range(20, 30)) - 10 <= omission.not_sent <= sum(range(20, 30))
    assert 2400 <= fault.p99_corrected_ms <= 3000 < fault.p99_ms * 2 + 3000
    text = omission.statement()
    assert "understated" in text and "more requests" in text
    assert f"{fault.p99_corrected_ms:,.0f} ms" in text


def test_the_open_model_needs_no_estimate() -> None:
    """An open-model run measures from the intended send time: no estimate, no warning."""
    experiment = parse_experiment(
        EXPERIMENT.format(shape="arrival_rate: [{duration: 10s, rps: 10}]")
    )
    view = View({s: [2_000] * 10 for s in range(10)})
    assert estimate_omission(view, [Phase("run", 0.0, 10.0)], experiment) is None


def test_a_closed_model_without_stalls_says_nothing_hid() -> None:
    """No request slower than a user's interval: nothing was omitted, said plainly."""
    experiment = parse_experiment(
        EXPERIMENT.format(shape="stages: [{duration: 10s, users: 5, spawn_rate: 5}]")
    )
    view = View({s: [20_000] * 50 for s in range(10)})
    omission = estimate_omission(view, [Phase("run", 0.0, 10.0)], experiment)
    assert omission is not None and omission.not_sent == 0
    assert "no latency hid" in omission.statement()


def test_stalls_already_in_the_measured_tail_change_no_p99() -> None:
    """Every phase's p99 already set by its slowest requests (a client timeout caps them):
    the requests not sent are counted, and no "p99 could be X instead of X" is claimed."""
    experiment = parse_experiment(
        EXPERIMENT.format(shape="stages: [{duration: 20s, users: 10, spawn_rate: 10}]")
    )
    seconds: dict[int, list[int]] = {s: [2_000] * 100 for s in range(20)}
    seconds[8] = [5_000_000] * 40
    phases = [Phase("baseline", 2.0, 8.0), Phase("fault", 8.0, 14.0), Phase("recovery", 14.0, 20.0)]
    omission = estimate_omission(View(seconds), phases, experiment)
    assert omission is not None and omission.not_sent > 0
    text = omission.statement()
    fault = next(p for p in omission.phases if p.phase == "fault")
    assert fault.p99_ms == fault.p99_corrected_ms  # the 40 timeouts are the top 1 % either way
    assert "no phase's p99 would change" in text and "could be" not in text
