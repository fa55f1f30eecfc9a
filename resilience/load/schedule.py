"""Who sends what when: users per worker over the stages, and open-model send times.

Pure arithmetic on the experiment clock (seconds since t0), shared by the worker and the
tests. Closed model: each stage's users are split across workers as evenly as possible
(the first ``users % workers`` workers get one more) and the spawn rate in equal parts.
Open model: stage ``k`` with total rate ``r`` sends at ``start_k + (j / r)`` for j = 0, 1,
...; worker ``w`` of ``n`` takes every n-th of those times starting at j = w, so the workers
together send an evenly spaced stream. The send times are *intended* times: latency is
measured from them, never from when a busy client got round to sending.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


class _Timed(Protocol):
    @property
    def duration(self) -> float: ...


class _UsersStage(_Timed, Protocol):
    @property
    def users(self) -> int: ...

    @property
    def spawn_rate(self) -> float: ...


class _RateStage(_Timed, Protocol):
    @property
    def rps(self) -> float: ...


def split_evenly(total: int, parts: int, index: int) -> int:
    """The share of ``total`` that part ``index`` of ``parts`` gets; shares differ by <= 1."""
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"index {index} is not a part of {parts}")
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)


@dataclass(frozen=True)
class WorkerTarget:
    """What one worker should hold at some moment: users and the rate to ramp at."""

    users: int
    spawn_rate: float


def worker_target(
    stages: Sequence[_UsersStage], t: float, worker: int, workers: int
) -> WorkerTarget | None:
    """Users for ``worker`` at experiment time ``t``; None once the last stage has ended."""
    if t < 0:
        t = 0.0
    start = 0.0
    for stage in stages:
        end = start + stage.duration
        if t < end:
            users = split_evenly(stage.users, workers, worker)
            return WorkerTarget(users, stage.spawn_rate / workers)
        start = end
    return None


def total_duration(stages: Sequence[_Timed]) -> float:
    return float(sum(stage.duration for stage in stages))


def intended_times(
    stages: Sequence[_RateStage], worker: int, workers: int, *, start_at: float = 0.0
) -> Iterator[float]:
    """Intended send times of ``worker`` (ascending), from ``start_at`` to the end.

    Each time is computed from its stage start and index, never by adding intervals, so
    floating-point error does not accumulate over a long run.
    """
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not one of {workers}")
    stage_start = 0.0
    for stage in stages:
        stage_end = stage_start + stage.duration
        rate = stage.rps
        if rate > 0 and stage_end > start_at:
            # The first index of this worker at or after start_at.
            first = 0
            if start_at > stage_start:
                first = math.ceil((start_at - stage_start) * rate - 1e-9)
            j = first + (worker - first) % workers
            while True:
                t = stage_start + j / rate
                if t >= stage_end:
                    break
                yield t
                j += workers
        stage_start = stage_end


def rate_times(rps: float, start: float, end: float, worker: int, workers: int) -> Iterator[float]:
    """Intended send times of ``worker`` at a constant total ``rps`` from ``start`` to ``end``
    (a live rate change: the new stream starts at the moment of the change)."""
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not one of {workers}")
    if rps <= 0 or end <= start:
        return
    j = worker
    while True:
        t = start + j / rps
        if t >= end:
            return
        yield t
        j += workers


def planned_requests(stages: Sequence[_RateStage], worker: int, workers: int) -> int:
    """How many requests ``worker`` is scheduled to send in the whole open-model run."""
    return sum(1 for _ in intended_times(stages, worker, workers))
