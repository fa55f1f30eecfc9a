"""What flows from a worker to the parent: one JSON object per line, one dataclass each.

``SecondSample`` is the record of one second of SEND time (intended send time in the open
model) for one worker: per endpoint, counts by outcome and a latency histogram
(microseconds, HdrHistogram's compressed base64 encoding). It is emitted once every request
sent in that second has completed, so it is final. ``LiveTick`` is the fresh view by
COMPLETION time, every second, for the live console and the load guards. ``TraceRef``
keeps the trace id of a failed, slow or sampled request, ``WriteAck`` an acknowledged write,
``WorkerReady`` / ``WorkerExit`` bracket a worker's life, and ``CommandAck`` answers a
command the parent sent on the worker's stdin (``commands``). Times are seconds on the
experiment clock; latencies in TraceRef and LiveTick are seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from resilience import histogram as hist
from resilience.errors import LoadError
from resilience.rundir.records import TraceRef, WriteAck
from resilience.vocabulary import OUTCOMES


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


@dataclass(frozen=True)
class EndpointSecond:
    """One endpoint in one second: counts by outcome and the encoded latency histogram.

    ``unsent`` (open model) counts requests that are also in ``timeout``: they waited for
    a free slot (``max_in_flight``) past the client timeout and were never sent.
    """

    counts: dict[str, int]
    histogram: str
    unsent: int = 0
    segment: str = "0-0"
    """Where this second's requests fall against the phase marks: ``"i-j"`` when every one
    was sent after ``i`` marks and ended after ``j`` (``0-0``: before any mark)."""
    parts: dict[str, SegmentPart] = field(default_factory=dict)
    """When the requests fall in more than one segment: counts and histogram of each."""

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def decode(self) -> hist.Histogram:
        return hist.Histogram.decode(self.histogram)


@dataclass(frozen=True)
class SegmentPart:
    """The requests of one second and endpoint in one segment (see ``EndpointSecond``)."""

    counts: dict[str, int]
    histogram: str

    def decode(self) -> hist.Histogram:
        return hist.Histogram.decode(self.histogram)


@dataclass(frozen=True)
class SecondSample:
    worker: int
    second: int
    endpoints: dict[str, EndpointSecond] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveTick:
    """Completions in one second of completion time, and the worker's state at its end."""

    worker: int
    second: int
    completions: dict[str, int]
    p50: float | None
    p95: float | None
    p99: float | None
    in_flight: int
    users: int
    oldest_in_flight: float | None = None
    endpoints: dict[str, EndpointSecond] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerReady:
    worker: int
    pid: int


REFUSED: Final = "refused"
"""A worker's exit reason when it refused to send a request: a captured URL led off the
target's host (``message`` says which); the run stops with exit 2."""


@dataclass(frozen=True)
class WorkerExit:
    """A worker ended. ``reason``: end, stdin_closed, parent_gone, sigterm, error, refused,
    died.

    ``returncode`` is set by the parent once the process is reaped (None when the worker
    itself reports). ``abandoned``: requests still in flight when the worker stopped.
    """

    worker: int
    reason: str
    returncode: int | None = None
    requests: int = 0
    dropped_traces: int = 0
    abandoned: int = 0
    late: int = 0
    message: str = ""
    setup_failed: int = 0
    """Users whose ``on_start`` steps failed (they stopped; see ``setup_errors``)."""
    setup_errors: tuple[str, ...] = ()
    capture_missed: int = 0
    """OK answers that lacked a value to capture or a written id (see ``capture_errors``)."""
    capture_errors: tuple[str, ...] = ()
    at: float | None = None
    """``lost`` (a remote worker of a distributed run): when it was last heard from, in
    experiment seconds; its load from then on is missing, not the target's failure."""


@dataclass(frozen=True)
class CommandAck:
    """A worker's answer to a command (``resilience.load.commands``): applied or refused.

    ``command`` is the command's wire type, ``t`` the experiment time it took effect, and
    ``detail`` what this worker now holds (its share: ``users`` or ``rps``) or why not.
    """

    worker: int
    command: str
    t: float
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class MasterReady:
    """The master of a distributed run listens on ``address`` (``host:port``)."""

    address: str
    pid: int


@dataclass(frozen=True)
class RemoteWorker:
    """A worker of a distributed run, as the master saw it.

    ``state``: ``joined`` (connected, its clock measured; ``joined`` counts them so far),
    ``assigned`` (it has index ``worker`` and its plan) or ``refused`` (the run had its
    workers). ``client`` is Locust's id for it, ``host`` and ``pid`` what it said of itself,
    ``offset`` its wall clock minus the master's (seconds) from the best of a few round
    trips of ``rtt`` seconds: its plan's t0 is shifted by it, so every worker's experiment
    clock is the master's."""

    worker: int
    client: str
    host: str
    pid: int
    state: str
    offset: float
    rtt: float
    joined: int = 0


LoadEvent = (
    SecondSample
    | LiveTick
    | TraceRef
    | WriteAck
    | WorkerReady
    | WorkerExit
    | CommandAck
    | MasterReady
    | RemoteWorker
)

_TYPES: dict[type[LoadEvent], str] = {
    SecondSample: "second",
    LiveTick: "live",
    TraceRef: "trace",
    WriteAck: "write",
    WorkerReady: "ready",
    WorkerExit: "exit",
    CommandAck: "ack",
    MasterReady: "master",
    RemoteWorker: "remote",
}


def encode_event(event: LoadEvent) -> str:
    """One line of compact JSON (no newline) with a ``type`` key."""
    body = asdict(event)
    body["type"] = _TYPES[type(event)]
    for endpoint in body.get("endpoints", {}).values():
        # The common case (no fault yet, one segment) stays as small as before.
        if endpoint.get("segment") == "0-0":
            del endpoint["segment"]
        if not endpoint.get("parts"):
            endpoint.pop("parts", None)
    return json.dumps(body, separators=(",", ":"))


def _endpoints(raw: dict[str, Any]) -> dict[str, EndpointSecond]:
    return {
        name: EndpointSecond(
            counts={k: int(v) for k, v in value["counts"].items()},
            histogram=str(value["histogram"]),
            unsent=int(value.get("unsent", 0)),
            segment=str(value.get("segment", "0-0")),
            parts={
                key: SegmentPart(
                    counts={k: int(v) for k, v in part["counts"].items()},
                    histogram=str(part["histogram"]),
                )
                for key, part in value.get("parts", {}).items()
            },
        )
        for name, value in raw.items()
    }


def decode_event(line: str | bytes) -> LoadEvent:  # noqa: PLR0911 (a dispatch on the event type)
    """Parse one line; LoadError for anything that is not one of our events."""
    try:
        body = json.loads(line)
        kind = body.pop("type")
        if kind == "second":
            body["endpoints"] = _endpoints(body.get("endpoints", {}))
            return SecondSample(**body)
        if kind == "live":
            body["endpoints"] = _endpoints(body.get("endpoints", {}))
            return LiveTick(**body)
        if kind == "trace":
            return TraceRef(**body)
        if kind == "write":
            return WriteAck(**body)
        if kind == "ready":
            return WorkerReady(**body)
        if kind == "exit":
            body["setup_errors"] = tuple(body.get("setup_errors", ()))
            body["capture_errors"] = tuple(body.get("capture_errors", ()))
            return WorkerExit(**body)
        if kind == "ack":
            return CommandAck(**body)
        if kind == "master":
            return MasterReady(**body)
        if kind == "remote":
            return RemoteWorker(**body)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise LoadError(f"malformed line from a load worker: {exc}: {line[:200]!r}") from exc
    raise LoadError(f"unknown event type {kind!r} from a load worker")
