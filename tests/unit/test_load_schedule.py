"""Users per worker over the stages, and the open model's intended send times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.load.plan import ArrivalStage, Stage
from resilience.load.schedule import (
    intended_times,
    planned_requests,
    split_evenly,
    total_duration,
    worker_target,
)


@given(total=st.integers(0, 10_000), parts=st.integers(1, 64))
def test_split_is_complete_and_even(total: int, parts: int) -> None:
    """Shares add up to the total and differ by at most one, larger shares first."""
    shares = [split_evenly(total, parts, i) for i in range(parts)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


def test_split_rejects_a_bad_index() -> None:
    """An index outside the parts is a programming error."""
    with pytest.raises(ValueError):
        split_evenly(10, 2, 2)


def test_worker_target_follows_the_stages() -> None:
    """Each worker holds its share of the current stage; None after the last stage."""
    stages = [
        Stage(duration=10, users=5, spawn_rate=2),
        Stage(duration=5, users=100, spawn_rate=10),
    ]
    assert worker_target(stages, 0.0, 0, 2) == worker_target(stages, 9.99, 0, 2)
    first = [worker_target(stages, 3.0, w, 2) for w in range(2)]
    assert [t.users for t in first if t] == [3, 2]
    assert [t.spawn_rate for t in first if t] == [1.0, 1.0]
    second = [worker_target(stages, 10.0, w, 2) for w in range(2)]
    assert [t.users for t in second if t] == [50, 50]
    assert worker_target(stages, 15.0, 0, 2) is None
    assert total_duration(stages) == 15.0


def test_one_worker_open_times_are_evenly_spaced() -> None:
    """One worker at 4 rps for 2 s sends at 0, 0.25, ..., 1.75."""
    times = list(intended_times([ArrivalStage(duration=2, rps=4)], 0, 1))
    assert times == pytest.approx([i * 0.25 for i in range(8)])


@given(
    rates=st.lists(st.floats(0, 200), min_size=1, max_size=4),
    workers=st.integers(1, 6),
)
def test_workers_together_send_the_global_stream(rates: list[float], workers: int) -> None:
    """The union of every worker's intended times is the evenly spaced stream of each stage."""
    stages = [ArrivalStage(duration=1.5, rps=r) for r in rates]
    merged = sorted(t for w in range(workers) for t in intended_times(stages, w, workers))
    expected = []
    for k, stage in enumerate(stages):
        if stage.rps > 0:
            start = 1.5 * k
            j = 0
            while start + j / stage.rps < start + 1.5:
                expected.append(start + j / stage.rps)
                j += 1
    assert merged == pytest.approx(sorted(expected))
    assert sum(planned_requests(stages, w, workers) for w in range(workers)) == len(expected)


def test_start_at_skips_past_times_but_keeps_the_workers_phase() -> None:
    """Starting late skips the past; the remaining times are this worker's own slots."""
    stages = [ArrivalStage(duration=10, rps=10)]
    full = list(intended_times(stages, 1, 3))
    late = list(intended_times(stages, 1, 3, start_at=4.05))
    assert late == [t for t in full if t >= 4.05 - 1e-9]
    assert late[0] == pytest.approx(4.3)  # slots 1, 4, 7, ... of 0.1 s: 43 is the next


def test_zero_rate_stage_sends_nothing() -> None:
    """A stage at 0 rps is a pause: no times inside it."""
    stages = [
        ArrivalStage(duration=1, rps=2),
        ArrivalStage(duration=5, rps=0),
        ArrivalStage(duration=1, rps=2),
    ]
    assert list(intended_times(stages, 0, 1)) == pytest.approx([0.0, 0.5, 6.0, 6.5])
