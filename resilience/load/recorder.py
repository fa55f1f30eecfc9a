"""Merges the load workers' per-second data and writes it to the run directory as it goes.

``LoadRecorder`` consumes the engine's events. A second is written (through
``resilience.rundir.load.LoadFiles``) once every worker has reported it or ended, so the
files grow in order and stay valid if the run dies. ``live()`` gives rolling numbers by
completion time for the console and the load guards. Reading a run directory back is
``resilience.rundir.load.LoadData``'s job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from resilience import histogram as hist
from resilience.load.plan import LoadPlan
from resilience.load.samples import (
    EndpointSecond,
    LiveTick,
    LoadEvent,
    SecondSample,
    WorkerExit,
    empty_counts,
)
from resilience.load.schedule import intended_times
from resilience.redact import Redactor
from resilience.rundir.load import LoadFiles, Segment
from resilience.rundir.records import TraceRef, WriteAck
from resilience.vocabulary import ERROR_OUTCOMES, OUTCOMES

logger = logging.getLogger(__name__)

LIVE_KEEP_S = 120


@dataclass(frozen=True)
class LostWorker:
    """A worker of a distributed run that stopped answering (or ended early unasked): the
    seconds after ``last_second`` hold none of its load. ``missing_requests`` is what its
    share of the plan would have sent from then to the end: exact in the open model (its
    schedule), in the closed model estimated from its own rate before (``estimated``)."""

    worker: int
    at: float | None
    last_second: int
    missing_requests: int | None
    estimated: bool
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "worker": self.worker,
            "at": self.at,
            "last_second": self.last_second,
            "missing_requests": self.missing_requests,
            "estimated": self.estimated,
            "message": self.message,
        }

    def text(self) -> str:
        when = f" at {self.at:.1f} s" if self.at is not None else ""
        missing = ""
        if self.missing_requests is not None:
            about = "about " if self.estimated else ""
            missing = f"; {about}{self.missing_requests} requests of its share were not sent"
        return f"load worker {self.worker} was lost{when} ({self.message}){missing}"


def missing_requests(plan: LoadPlan, worker: int, after_second: int, sent: int) -> tuple[int, bool]:
    """What ``worker``'s share of ``plan`` would have sent after ``after_second`` (its last
    second recorded): its schedule's count in the open model; in the closed model its own
    rate so far (``sent`` requests over its recorded seconds) times the seconds left."""
    start = float(after_second + 1)
    if plan.model == "open":
        count = sum(1 for _ in intended_times(plan.arrival, worker, plan.workers, start_at=start))
        return count, False
    left = max(0.0, plan.duration - start)
    rate = sent / (after_second + 1) if after_second >= 0 else 0.0
    return round(rate * left), True


@dataclass(frozen=True)
class LiveStats:
    """Rolling numbers over the last ``window_s`` seconds of completions.

    Latencies in seconds (None when nothing completed); ``oldest_in_flight`` is about how
    long the oldest unanswered request has waited — the number that moves during a hang.
    """

    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    error_rate: float | None
    in_flight: int
    users: int
    completions: int = 0
    errors: int = 0
    oldest_in_flight: float | None = None
    window_s: int = 0
    second: int | None = None
    max: float | None = None
    """The slowest completion's latency (the top bucket's highest value)."""


@dataclass
class _Second:
    """One second's data from every worker, kept as the workers sent it (compact
    histograms, merged once when the second is written or read)."""

    histograms: dict[str, list[hist.Histogram]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    unsent: dict[str, int] = field(default_factory=dict)
    parts: dict[str, dict[str, tuple[dict[str, int], list[hist.Histogram]]]] = field(
        default_factory=dict
    )
    """Per endpoint, per phase-mark segment (``i-j``): its counts and histograms."""

    def add(
        self, sample_endpoints: Mapping[str, EndpointSecond], *, segments: bool = False
    ) -> None:
        for name, data in sample_endpoints.items():
            counts = self.counts.setdefault(name, empty_counts())
            for key, value in data.counts.items():
                counts[key] = counts.get(key, 0) + value
            self.unsent[name] = self.unsent.get(name, 0) + data.unsent
            whole = data.decode() if data.histogram else None
            if whole is not None and whole.total:
                self.histograms.setdefault(name, []).append(whole)
            if not segments:
                continue
            mine = self.parts.setdefault(name, {})
            if data.parts:
                for key, part in data.parts.items():
                    _merge(mine, key, part.counts, part.decode())
            else:
                _merge(mine, data.segment or "0-0", data.counts, whole)

    def histogram(self, name: str) -> hist.Histogram:
        return hist.merge_all(self.histograms.get(name, ()))

    def merged(self) -> dict[str, hist.Histogram]:
        return {name: self.histogram(name) for name in self.histograms}

    def segments(self) -> dict[str, dict[str, Segment]]:
        return {
            name: {
                key: Segment(counts, hist.merge_all(histograms))
                for key, (counts, histograms) in per_key.items()
            }
            for name, per_key in self.parts.items()
        }


def _merge(
    into: dict[str, tuple[dict[str, int], list[hist.Histogram]]],
    key: str,
    counts: Mapping[str, int],
    histogram: hist.Histogram | None,
) -> None:
    segment = into.get(key)
    if segment is None:
        segment = into[key] = (empty_counts(), [])
    for outcome, value in counts.items():
        segment[0][outcome] = segment[0].get(outcome, 0) + value
    if histogram is not None and histogram.total:
        segment[1].append(histogram)


class LoadRecorder:
    """Merges the workers' per-second data and writes the run directory's load files."""

    def __init__(
        self,
        run_dir: Path,
        *,
        t0: float,
        workers: int,
        endpoints: Sequence[str] = (),
        redactor: Redactor | None = None,
        plan: LoadPlan | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.plan = plan
        self.t0 = t0
        self.workers = workers
        self._endpoints: list[str] = list(endpoints)
        self._lock = threading.Lock()
        self._pending: dict[int, _Second] = {}
        self._reported: dict[int, int] = dict.fromkeys(range(workers), -1)
        self._ended: set[int] = set()
        self._next = 0
        self._live: dict[int, _Second] = {}
        self._live_state: dict[int, LiveTick] = {}
        self.requests = 0
        self.traces = 0
        self.writes = 0
        self.dropped_traces = 0
        self.abandoned = 0
        self.setup_failed = 0
        """Users whose on_start steps failed (summed over the workers)."""
        self.setup_errors: list[str] = []
        self.capture_missed = 0
        """OK answers without a value to capture or a written id (summed over the workers)."""
        self.capture_errors: list[str] = []
        self.exits: dict[int, WorkerExit] = {}
        self.lost: list[LostWorker] = []
        """Workers of a distributed run lost mid-run (``WorkerExit`` reason ``lost``)."""
        self._sent: dict[int, int] = dict.fromkeys(range(workers), 0)
        self._closed = False
        self._listeners: list[Callable[[LoadEvent], None]] = []
        self._files = LoadFiles(self.run_dir, t0=t0, redactor=redactor)
        self._write_meta()

    # -- consuming --------------------------------------------------------------------

    def add_listener(self, listener: Callable[[LoadEvent], None]) -> None:
        """Also hand every event to ``listener`` (after recording it), e.g. a live export.
        A listener that raises is logged and dropped from nothing else."""
        self._listeners.append(listener)

    def consume(self, events: Iterable[LoadEvent]) -> None:
        for event in events:
            self.handle(event)
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("a load event listener failed")

    def handle(self, event: LoadEvent) -> None:
        with self._lock:
            if isinstance(event, SecondSample):
                self._on_second(event)
            elif isinstance(event, LiveTick):
                self._on_live(event)
            elif isinstance(event, TraceRef):
                self._files.write_trace(event)
                self.traces += 1
            elif isinstance(event, WriteAck):
                self._files.write_ack(event)
                self.writes += 1
            elif isinstance(event, WorkerExit):
                if event.reason == "lost" and event.worker not in self.exits:
                    self._on_lost(event)
                self.exits[event.worker] = event
                self.dropped_traces += event.dropped_traces
                self.abandoned += event.abandoned
                self.setup_failed += event.setup_failed
                for reason in event.setup_errors:
                    if reason not in self.setup_errors and len(self.setup_errors) < 5:
                        self.setup_errors.append(reason)
                self.capture_missed += event.capture_missed
                for reason in event.capture_errors:
                    if reason not in self.capture_errors and len(self.capture_errors) < 5:
                        self.capture_errors.append(reason)
                self._ended.add(event.worker)
                self._write_complete()

    def _on_second(self, sample: SecondSample) -> None:
        if sample.second < self._next:
            logger.warning(
                "worker %d reported second %d after it was written; ignored",
                sample.worker,
                sample.second,
            )
            return
        self._pending.setdefault(sample.second, _Second()).add(sample.endpoints, segments=True)
        self._sent[sample.worker] = self._sent.get(sample.worker, 0) + sum(
            e.n for e in sample.endpoints.values()
        )
        self._reported[sample.worker] = max(self._reported.get(sample.worker, -1), sample.second)
        self._write_complete()

    def _on_lost(self, event: WorkerExit) -> None:
        last = self._reported.get(event.worker, -1)
        missing: int | None = None
        estimated = False
        if self.plan is not None and 0 <= event.worker < self.plan.workers:
            missing, estimated = missing_requests(
                self.plan, event.worker, last, self._sent.get(event.worker, 0)
            )
        lost = LostWorker(event.worker, event.at, last, missing, estimated, event.message)
        self.lost.append(lost)
        logger.warning("%s", lost.text())

    def _write_complete(self) -> None:
        active = [w for w in self._reported if w not in self._ended]
        if active:
            upto = min(self._reported[w] for w in active)
        else:
            upto = max(self._pending, default=self._next - 1)
        while self._next <= upto:
            self._write_second(self._next, self._pending.pop(self._next, _Second()))
            self._next += 1

    def _write_second(self, second: int, data: _Second) -> None:
        for name in sorted(data.counts):
            if name not in self._endpoints:
                self._endpoints.append(name)
        self.requests += self._files.write_second(
            second, data.counts, data.merged(), data.unsent, data.segments()
        )

    def _on_live(self, tick: LiveTick) -> None:
        entry = self._live.setdefault(tick.second, _Second())
        entry.add(tick.endpoints)
        previous = self._live_state.get(tick.worker)
        if previous is None or tick.second >= previous.second:
            self._live_state[tick.worker] = tick
        for old in [s for s in self._live if s < tick.second - LIVE_KEEP_S]:
            del self._live[old]

    # -- live numbers -----------------------------------------------------------------

    def live(self, window_s: int = 5, endpoint: str | None = None) -> LiveStats:
        """Completions over the last ``window_s`` seconds reported (all workers merged)."""
        with self._lock:
            users = sum(t.users for t in self._live_state.values())
            in_flight = sum(t.in_flight for t in self._live_state.values())
            oldest = [
                t.oldest_in_flight
                for t in self._live_state.values()
                if t.oldest_in_flight is not None
            ]
            if not self._live:
                return LiveStats(0.0, None, None, None, None, in_flight, users)
            latest = max(self._live)
            seconds = [s for s in self._live if latest - window_s < s <= latest]
            parts: list[hist.Histogram] = []
            counts = empty_counts()
            for s in seconds:
                entry = self._live[s]
                names = [endpoint] if endpoint is not None else list(entry.counts)
                for name in names:
                    for key, value in entry.counts.get(name, {}).items():
                        counts[key] = counts.get(key, 0) + value
                    parts.extend(entry.histograms.get(name, ()))
        completions = sum(counts.values())
        errors = sum(counts.get(k, 0) for k in ERROR_OUTCOMES)
        merged = hist.merge_all(parts)
        p = merged.percentiles_s((50.0, 95.0, 99.0))
        return LiveStats(
            rps=completions / window_s,
            p50=p[50.0],
            p95=p[95.0],
            p99=p[99.0],
            error_rate=errors / completions if completions else None,
            in_flight=in_flight,
            users=users,
            completions=completions,
            errors=errors,
            oldest_in_flight=max(oldest) if oldest else None,
            window_s=window_s,
            second=latest,
            max=merged.max_us / 1e6 if merged.total else None,
        )

    # -- closing ----------------------------------------------------------------------

    @property
    def seconds_written(self) -> int:
        return self._next

    def _write_meta(self) -> None:
        meta = {
            "t0": self.t0,
            "workers": self.workers,
            "endpoints": self._endpoints,
            "seconds": self._next,
            "requests": self.requests,
            "trace_ids": self.traces,
            "writes": self.writes,
            "dropped_trace_ids": self.dropped_traces,
            "abandoned": self.abandoned,
            "setup_failed": self.setup_failed,
            "setup_errors": self.setup_errors,
            "capture_missed": self.capture_missed,
            "capture_errors": self.capture_errors,
            "lost_workers": [lost.to_dict() for lost in self.lost],
            "missing_requests": sum(lost.missing_requests or 0 for lost in self.lost),
            "outcomes": list(OUTCOMES),
            "closed": self._closed,
        }
        self._files.write_meta(meta)

    def close(self) -> None:
        """Write every second still held (workers that never reported count as ended)."""
        with self._lock:
            if self._closed:
                return
            self._ended.update(self._reported)
            self._write_complete()
            self._closed = True
            self._files.close()
            self._write_meta()

    def __enter__(self) -> LoadRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
