"""A worker's recording state: per-second buckets by send time, live ticks, kept trace ids.

The request path calls ``begin`` when a request is due (its intended send time) and
``end`` when it completes; both are a few dictionary and list operations, nothing more.
Once a second, ``tick`` turns what is complete into events: the live tick of the second
that just ended (by completion time), and every send-second that is final (no request
can still be sent in it and none of its requests is in flight), in order, as
``SecondSample``.

When the run has faults, the parent sends **phase marks** (``set_marks``): the times a
fault began to act or was healed, and how far they are known. Each request is then placed
by its interval [sent, ended]: its segment ``i-j`` says it was sent after ``i`` marks and
ended after ``j``, so the analysis can put a request sent before a fault that ended after
it into the fault phase (not the baseline), and count for recovery only requests sent after
the heal. A send-second is held back until the marks are known past the end of its last
request; a second whose requests fall in several segments carries one part per segment. Trace ids of failed and slow requests are always kept and a sample of
the rest, at most ``trace_cap`` per second (sampled OK requests may use half of that), the
excess counted as dropped. No gevent here: the worker drives it, unit tests drive it with
a fake clock.
"""

from __future__ import annotations

import logging
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from resilience import histogram as hist
from resilience.load.samples import EndpointSecond, LiveTick, LoadEvent, SecondSample, SegmentPart
from resilience.rundir.records import TraceReason, TraceRef, WriteAck
from resilience.vocabulary import OUTCOMES

logger = logging.getLogger(__name__)

OK, C4XX, C5XX, TIMEOUT, CONNECTION_ERROR, UNEXPECTED = range(len(OUTCOMES))


def outcome_of_status(status: int, expected: bool) -> int:
    """The outcome index of a request that got an HTTP response."""
    if expected:
        return OK
    if 400 <= status < 500:
        return C4XX
    if status >= 500:
        return C5XX
    return UNEXPECTED


def new_trace_ids(rng: random.Random) -> tuple[str, str]:
    """A random (trace id, span id) pair, never all zeros (W3C forbids that)."""
    bits = rng.getrandbits(192)  # one call for both ids: this runs on every request
    if not bits >> 64 or not bits & 0xFFFF_FFFF_FFFF_FFFF:
        bits |= 1 | (1 << 64)
    text = f"{bits:048x}"
    return text[:32], text[32:]


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


@dataclass
class _Bucket:
    pending: int = 0
    latencies: dict[str, list[int]] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)
    unsent: dict[str, int] = field(default_factory=dict)
    # Per request, only while phase marks are tracked: when it was sent and ended, its outcome.
    sent: dict[str, list[float]] = field(default_factory=dict)
    done: dict[str, list[float]] = field(default_factory=dict)
    outcomes: dict[str, list[int]] = field(default_factory=dict)
    last_done: float = -math.inf


def _endpoint_seconds(
    latencies: dict[str, list[int]], counts: dict[str, list[int]], unsent: dict[str, int]
) -> dict[str, EndpointSecond]:
    result: dict[str, EndpointSecond] = {}
    for endpoint, values in counts.items():
        histogram = hist.from_values(latencies.get(endpoint, []))
        result[endpoint] = EndpointSecond(
            counts=dict(zip(OUTCOMES, values, strict=True)),
            histogram=hist.encode(histogram),
            unsent=unsent.get(endpoint, 0),
        )
    return result


def segment_key(sent: float, done: float, marks: Sequence[float]) -> str:
    """``i-j``: how many marks are at or before the send time and the end time."""
    return f"{bisect_right(marks, sent)}-{bisect_right(marks, done)}"


def _segmented(bucket: _Bucket, marks: Sequence[float]) -> dict[str, EndpointSecond]:
    """The bucket's endpoints, each placed against ``marks`` (one segment, or parts)."""
    result = _endpoint_seconds(bucket.latencies, bucket.counts, bucket.unsent)
    if not marks:
        return result
    for endpoint, whole in result.items():
        groups: dict[str, tuple[list[int], list[int]]] = {}
        sent, done = bucket.sent.get(endpoint, []), bucket.done.get(endpoint, [])
        outcomes, latencies = bucket.outcomes.get(endpoint, []), bucket.latencies[endpoint]
        for k in range(len(sent)):
            key = segment_key(sent[k], done[k], marks)
            values, counts = groups.setdefault(key, ([], [0] * len(OUTCOMES)))
            values.append(latencies[k])
            counts[outcomes[k]] += 1
        if len(groups) == 1:
            result[endpoint] = replace(whole, segment=next(iter(groups)))
        elif groups:
            parts = {
                key: SegmentPart(
                    counts=dict(zip(OUTCOMES, counts, strict=True)),
                    histogram=hist.encode(hist.from_values(values)),
                )
                for key, (values, counts) in sorted(groups.items())
            }
            result[endpoint] = replace(whole, segment="", parts=parts)
    return result


class Collector:
    """Buckets requests by send second; emits final seconds, live ticks, traces, writes."""

    def __init__(
        self,
        *,
        worker: int,
        emit: Callable[[LoadEvent], None],
        slow_threshold: float,
        trace_sample: float,
        trace_cap: int,
        rng: random.Random,
        track_phases: bool = False,
    ) -> None:
        self.worker = worker
        self._track = track_phases
        self._marks: list[float] = []
        self._marks_upto = -math.inf if track_phases else math.inf
        self._emit = emit
        self._slow = slow_threshold
        self._sample = trace_sample
        self._cap = trace_cap
        self._sampled_cap = max(1, trace_cap // 2)
        self._rng = rng
        self._buckets: dict[int, _Bucket] = {}
        self._next_second = 0
        self.in_flight = 0
        self.requests = 0
        self.dropped_traces = 0
        self.late = 0
        self.abandoned = 0
        self._live: dict[int, _Bucket] = {}
        self._next_live = 0
        self._trace_second = -1
        self._traces_kept = 0
        self._sampled_kept = 0
        self._outbox: list[LoadEvent] = []

    # -- the request path -------------------------------------------------------------

    def _bucket(self, second: int) -> _Bucket:
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = _Bucket()
        return bucket

    def begin(self, send_t: float) -> int:
        """A request is due at ``send_t``; returns its second (pass it to ``end``)."""
        second = int(send_t) if send_t > 0 else 0
        self._bucket(second).pending += 1
        self.in_flight += 1
        return second

    def end(
        self,
        second: int,
        endpoint: str,
        send_t: float,
        done_t: float,
        outcome: int,
        *,
        status: int,
        trace_id: str,
        span_id: str,
        begun: bool = True,
        unsent: bool = False,
    ) -> None:
        """A request completed (or failed, or gave up). ``begun=False``: no ``begin`` call
        preceded it (locustfile users report only after the fact)."""
        latency = done_t - send_t
        latency_us = int(latency * 1_000_000) if latency > 0 else 0
        if begun:
            bucket = self._buckets[second]
            bucket.pending -= 1
            self.in_flight -= 1
        elif second < self._next_second:
            self.late += 1
            return
        else:
            bucket = self._bucket(second)
        self.requests += 1
        values = bucket.latencies.get(endpoint)
        if values is None:
            values = bucket.latencies[endpoint] = []
            bucket.counts[endpoint] = [0] * len(OUTCOMES)
        values.append(latency_us)
        bucket.counts[endpoint][outcome] += 1
        if self._track:
            bucket.sent.setdefault(endpoint, []).append(send_t)
            bucket.done.setdefault(endpoint, []).append(done_t)
            bucket.outcomes.setdefault(endpoint, []).append(outcome)
            bucket.last_done = max(bucket.last_done, done_t)
        if unsent:
            bucket.unsent[endpoint] = bucket.unsent.get(endpoint, 0) + 1

        live = int(done_t) if done_t > 0 else 0
        # A completion whose live second was already reported counts in the current one.
        live = max(live, self._next_live)
        live_bucket = self._live.get(live)
        if live_bucket is None:
            live_bucket = self._live[live] = _Bucket()
        live_values = live_bucket.latencies.get(endpoint)
        if live_values is None:
            live_values = live_bucket.latencies[endpoint] = []
            live_bucket.counts[endpoint] = [0] * len(OUTCOMES)
        live_values.append(latency_us)
        live_bucket.counts[endpoint][outcome] += 1

        reason: TraceReason | None = None
        if outcome != OK:
            reason = "failed"
        elif latency > self._slow:
            reason = "slow"
        elif self._sample and self._rng.random() < self._sample:
            reason = "sampled"
        if reason is not None and trace_id:
            self._keep_trace(
                live,
                endpoint=endpoint,
                send_t=send_t,
                latency=latency,
                outcome=outcome,
                status=status,
                trace_id=trace_id,
                span_id=span_id,
                reason=reason,
            )

    def abandon(self, second: int) -> None:
        """A begun request will never complete (its user was killed): forget it."""
        bucket = self._buckets.get(second)
        if bucket is not None:
            bucket.pending -= 1
        self.in_flight -= 1
        self.abandoned += 1

    def _keep_trace(
        self,
        live_second: int,
        *,
        endpoint: str,
        send_t: float,
        latency: float,
        outcome: int,
        status: int,
        trace_id: str,
        span_id: str,
        reason: TraceReason,
    ) -> None:
        if live_second != self._trace_second:
            self._trace_second = live_second
            self._traces_kept = 0
            self._sampled_kept = 0
        if self._traces_kept >= self._cap or (
            reason == "sampled" and self._sampled_kept >= self._sampled_cap
        ):
            self.dropped_traces += 1
            return
        self._traces_kept += 1
        if reason == "sampled":
            self._sampled_kept += 1
        self._outbox.append(
            TraceRef(
                worker=self.worker,
                trace_id=trace_id,
                span_id=span_id,
                endpoint=endpoint,
                t=round(send_t, 6),
                latency=round(latency, 6),
                outcome=OUTCOMES[outcome],
                status=status,
                reason=reason,
            )
        )

    def write_ack(self, record_id: object, endpoint: str, send_t: float, status: int) -> None:
        self._outbox.append(
            WriteAck(
                worker=self.worker,
                id=record_id,
                endpoint=endpoint,
                t=round(send_t, 6),
                status=status,
            )
        )

    # -- phase marks --------------------------------------------------------------------

    def set_marks(self, marks: Sequence[float], upto: float | None) -> None:
        """The phase marks so far and how far they are known (``None``: final)."""
        if not self._track:
            return
        self._marks = sorted(marks)
        self._marks_upto = math.inf if upto is None else max(self._marks_upto, upto)

    # -- once a second ----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Live ticks begin with the second of ``now`` (send seconds always begin at 0)."""
        self._next_live = max(self._next_live, int(now) if now > 0 else 0)

    def tick(self, now: float, *, users: int, send_floor: float) -> None:
        """Emit what is due at ``now``: live ticks for every past completion second, traces
        and writes kept so far, and every send-second below ``send_floor`` that is final."""
        current = int(now) if now > 0 else 0
        # One live tick per past second; quiet seconds (no completion) tick too, which is
        # exactly what a hang looks like.
        for second in range(self._next_live, current):
            self._emit_live(second, self._live.pop(second, None), now, users)
        self._next_live = max(self._next_live, current)
        self._drain_outbox()
        self._flush_final(math.floor(send_floor) if send_floor > 0 else 0)

    def _emit_live(self, second: int, bucket: _Bucket | None, now: float, users: int) -> None:
        bucket = bucket or _Bucket()
        totals = [0] * len(OUTCOMES)
        for counts in bucket.counts.values():
            for i, c in enumerate(counts):
                totals[i] += c
        p50 = p95 = p99 = None
        if bucket.latencies:
            values = np.concatenate(
                [np.asarray(v, dtype=np.int64) for v in bucket.latencies.values()]
            )
            if len(values):
                q = np.percentile(values, [50, 95, 99], method="higher") / 1_000_000
                p50, p95, p99 = (round(float(x), 6) for x in q)
        oldest = None
        waiting = [s for s, b in self._buckets.items() if b.pending > 0]
        if waiting:
            oldest = round(max(0.0, now - min(waiting)), 3)
        self._emit(
            LiveTick(
                worker=self.worker,
                second=second,
                completions=dict(zip(OUTCOMES, totals, strict=True)),
                p50=p50,
                p95=p95,
                p99=p99,
                in_flight=self.in_flight,
                users=users,
                oldest_in_flight=oldest,
                endpoints=_endpoint_seconds(bucket.latencies, bucket.counts, {}),
            )
        )

    def _drain_outbox(self) -> None:
        outbox, self._outbox = self._outbox, []
        for event in outbox:
            self._emit(event)

    def _flush_final(self, floor_second: int) -> None:
        while self._next_second < floor_second:
            bucket = self._buckets.get(self._next_second)
            if bucket is not None and bucket.pending > 0:
                return
            if bucket is not None and bucket.last_done > self._marks_upto:
                return  # a mark may still come that falls inside one of its requests
            self._emit_second(self._next_second, bucket)
            self._next_second += 1

    def _emit_second(self, second: int, bucket: _Bucket | None) -> None:
        endpoints: dict[str, EndpointSecond] = {}
        if bucket is not None:
            endpoints = (
                _segmented(bucket, self._marks)
                if self._track
                else _endpoint_seconds(bucket.latencies, bucket.counts, bucket.unsent)
            )
            del self._buckets[second]
        self._emit(SecondSample(worker=self.worker, second=second, endpoints=endpoints))

    def finish(self, now: float, *, users: int, last_second: int) -> None:
        """Emit everything, complete or not, through ``last_second`` (the worker is ending).

        Requests still in flight are counted as abandoned; their seconds are emitted with
        what did complete.
        """
        self.tick(now, users=users, send_floor=0)
        for second in sorted(self._live):
            self._emit_live(second, self._live.pop(second), now, users)
        still = sum(b.pending for b in self._buckets.values())
        if still:
            logger.warning("%d requests still in flight at the end are abandoned", still)
            self.abandoned += still
            self.in_flight -= still
        end = max([last_second, *self._buckets]) if self._buckets else last_second
        while self._next_second <= end:
            self._emit_second(self._next_second, self._buckets.get(self._next_second))
            self._next_second += 1
        self._drain_outbox()

    @property
    def next_second(self) -> int:
        """The first send-second not emitted yet."""
        return self._next_second
