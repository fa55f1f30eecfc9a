"""The run directory's load data: written as the workers report, read back for analysis.

``LoadRecorder`` consumes the engine's events. A second is written once every worker has
reported it (or ended), so files grow in order and stay valid if the run dies:

- ``load.jsonl``: one line per second per endpoint: second, endpoint, n, counts by outcome,
  unsent.
- ``latency.hlog``: an HdrHistogram interval log (format 1.3): ``#[StartTime: t0]`` then,
  per second, one interval histogram per endpoint tagged ``Tag=<endpoint>`` (the name
  percent-encoded, because tags may not hold commas or spaces) and one untagged histogram
  of all endpoints together. Timestamps are seconds since t0; values are microseconds;
  the max column is in milliseconds.
- ``trace_ids.jsonl``, ``writes.jsonl``: one line per kept trace id / acknowledged write.
- ``load.json``: t0, workers, endpoints, the seconds written and totals (rewritten at close).

``live()`` gives rolling numbers by completion time for the console and the load guards.
``LoadData.read(run_dir)`` reads it all back (it is a ``resilience.analysis`` LoadView), so
reports can be regenerated from the run directory alone.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote, unquote

from hdrh.histogram import HdrHistogram

from resilience import histogram as hist
from resilience.errors import LoadError
from resilience.load.samples import (
    LiveTick,
    LoadEvent,
    SecondSample,
    TraceRef,
    WorkerExit,
    WriteAck,
    empty_counts,
)
from resilience.vocabulary import ERROR_OUTCOMES, OUTCOMES

logger = logging.getLogger(__name__)

LOAD_JSONL = "load.jsonl"
LATENCY_HLOG = "latency.hlog"
TRACE_IDS_JSONL = "trace_ids.jsonl"
WRITES_JSONL = "writes.jsonl"
LOAD_JSON = "load.json"
LIVE_KEEP_S = 120
_TAG_SAFE = "/{}:|!*()'~@$&+;=?<>[]^`\"#"


def encode_tag(endpoint: str) -> str:
    """An endpoint name as an hlog tag: no comma, space or line break; reversible."""
    return quote(endpoint, safe=_TAG_SAFE)


def decode_tag(tag: str) -> str:
    return unquote(tag)


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


@dataclass
class _Second:
    histograms: dict[str, HdrHistogram] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    unsent: dict[str, int] = field(default_factory=dict)

    def add(self, sample_endpoints: Mapping[str, Any], *, decode: bool = True) -> None:
        for name, data in sample_endpoints.items():
            counts = self.counts.setdefault(name, empty_counts())
            for key, value in data.counts.items():
                counts[key] = counts.get(key, 0) + value
            self.unsent[name] = self.unsent.get(name, 0) + data.unsent
            if decode and data.histogram:
                target = self.histograms.get(name)
                if target is None:
                    target = self.histograms[name] = hist.new_histogram()
                target.add(data.decode())


class LoadRecorder:
    """Merges the workers' per-second data and writes the run directory's load files."""

    def __init__(
        self, run_dir: Path, *, t0: float, workers: int, endpoints: Sequence[str] = ()
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
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
        self.exits: dict[int, WorkerExit] = {}
        self._closed = False
        self._load = self._open(LOAD_JSONL)
        self._traces = self._open(TRACE_IDS_JSONL)
        self._writes = self._open(WRITES_JSONL)
        self._hlog = self._open(LATENCY_HLOG)
        self._write_hlog_header()
        self._write_meta()

    def _open(self, name: str) -> IO[str]:
        return (self.run_dir / name).open("w", encoding="utf-8")

    def _write_hlog_header(self) -> None:
        start = datetime.fromtimestamp(self.t0, tz=UTC).isoformat()
        self._hlog.write("#[Histogram log format version 1.3]\n")
        self._hlog.write(f"#[StartTime: {self.t0:.3f} (seconds since epoch), {start}]\n")
        self._hlog.write(
            "#[resilience: one interval per second per endpoint; values in microseconds; "
            "max in milliseconds; Tag=<percent-encoded endpoint>; untagged = all endpoints]\n"
        )
        self._hlog.write(
            '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
        )
        self._hlog.flush()

    # -- consuming --------------------------------------------------------------------

    def consume(self, events: Iterable[LoadEvent]) -> None:
        for event in events:
            self.handle(event)

    def handle(self, event: LoadEvent) -> None:
        with self._lock:
            if isinstance(event, SecondSample):
                self._on_second(event)
            elif isinstance(event, LiveTick):
                self._on_live(event)
            elif isinstance(event, TraceRef):
                self._traces.write(json.dumps(asdict(event)) + "\n")
                self._traces.flush()
                self.traces += 1
            elif isinstance(event, WriteAck):
                self._writes.write(json.dumps(asdict(event)) + "\n")
                self._writes.flush()
                self.writes += 1
            elif isinstance(event, WorkerExit):
                self.exits[event.worker] = event
                self.dropped_traces += event.dropped_traces
                self.abandoned += event.abandoned
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
        self._pending.setdefault(sample.second, _Second()).add(sample.endpoints)
        self._reported[sample.worker] = max(self._reported.get(sample.worker, -1), sample.second)
        self._write_complete()

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
        everything = hist.new_histogram()
        for name in sorted(data.counts):
            if name not in self._endpoints:
                self._endpoints.append(name)
            counts = data.counts[name]
            n = sum(counts.values())
            self.requests += n
            line = {"second": second, "endpoint": name, "n": n, **counts}
            line["unsent"] = data.unsent.get(name, 0)
            self._load.write(json.dumps(line) + "\n")
            histogram = data.histograms.get(name) or hist.new_histogram()
            self._hlog_line(second, histogram, encode_tag(name))
            everything.add(histogram)
        self._hlog_line(second, everything, None)
        self._load.flush()
        self._hlog.flush()

    def _hlog_line(self, second: int, histogram: HdrHistogram, tag: str | None) -> None:
        max_ms = histogram.get_max_value() / 1000.0 if histogram.get_total_count() else 0.0
        prefix = f"Tag={tag}," if tag else ""
        self._hlog.write(f"{prefix}{second:.3f},1.000,{max_ms:.3f},{hist.encode(histogram)}\n")

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
            merged = hist.new_histogram()
            counts = empty_counts()
            for s in seconds:
                entry = self._live[s]
                names = [endpoint] if endpoint is not None else list(entry.counts)
                for name in names:
                    for key, value in entry.counts.get(name, {}).items():
                        counts[key] = counts.get(key, 0) + value
                    h = entry.histograms.get(name)
                    if h is not None:
                        merged.add(h)
        completions = sum(counts.values())
        errors = sum(counts.get(k, 0) for k in ERROR_OUTCOMES)
        p = hist.percentiles_s(merged, (50.0, 95.0, 99.0))
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
            "outcomes": list(OUTCOMES),
            "closed": self._closed,
        }
        path = self.run_dir / LOAD_JSON
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    def close(self) -> None:
        """Write every second still held (workers that never reported count as ended)."""
        with self._lock:
            if self._closed:
                return
            self._ended.update(self._reported)
            self._write_complete()
            self._closed = True
            for handle in (self._load, self._traces, self._writes, self._hlog):
                handle.close()
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


# -- reading back ---------------------------------------------------------------------


@dataclass
class LoadData:
    """Everything the load engine wrote to a run directory, per endpoint per second.

    Implements the analysis' ``LoadView``: ``endpoint=None`` means all endpoints together.
    """

    t0: float
    endpoint_names: list[str]
    histograms: dict[str, dict[int, HdrHistogram]]
    count_table: dict[str, dict[int, dict[str, int]]]
    all_histograms: dict[int, HdrHistogram]
    unsent: dict[str, dict[int, int]] = field(default_factory=dict)
    traces: list[TraceRef] = field(default_factory=list)
    writes: list[WriteAck] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    _all_counts: dict[int, dict[str, int]] | None = None

    @property
    def endpoints(self) -> Sequence[str]:
        return list(self.endpoint_names)

    @property
    def seconds(self) -> Sequence[int]:
        found = set(self.all_histograms)
        for per_second in self.count_table.values():
            found.update(per_second)
        return sorted(found)

    def histogram(self, endpoint: str | None, second: int) -> HdrHistogram | None:
        if endpoint is None:
            return self.all_histograms.get(second)
        return self.histograms.get(endpoint, {}).get(second)

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]:
        if endpoint is None:
            return self._aggregate().get(second, {})
        return self.count_table.get(endpoint, {}).get(second, {})

    def _aggregate(self) -> dict[int, dict[str, int]]:
        if self._all_counts is None:
            total: dict[int, dict[str, int]] = {}
            for per_second in self.count_table.values():
                for second, counts in per_second.items():
                    target = total.setdefault(second, empty_counts())
                    for key, value in counts.items():
                        target[key] = target.get(key, 0) + value
            self._all_counts = total
        return self._all_counts

    def merged(self, endpoint: str | None, seconds: Iterable[int]) -> HdrHistogram:
        """One histogram over ``seconds`` (missing seconds are empty)."""
        return hist.merge(h for s in seconds if (h := self.histogram(endpoint, s)) is not None)

    def total_requests(self, endpoint: str | None = None) -> int:
        table = self._aggregate() if endpoint is None else self.count_table.get(endpoint, {})
        return sum(sum(c.values()) for c in table.values())

    @classmethod
    def read(cls, run_dir: Path) -> LoadData:
        """Read a run directory's load files; LoadError if they are missing or malformed."""
        run_dir = Path(run_dir)
        meta: dict[str, Any] = {}
        meta_path = run_dir / LOAD_JSON
        if meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        hlog = run_dir / LATENCY_HLOG
        if not hlog.exists():
            raise LoadError(f"{hlog} does not exist: this run directory has no load data")
        histograms, all_histograms, start = _read_hlog(hlog)
        count_table: dict[str, dict[int, dict[str, int]]] = {}
        unsent: dict[str, dict[int, int]] = {}
        names: list[str] = list(meta.get("endpoints", []))
        for line_no, body in _jsonl(run_dir / LOAD_JSONL):
            try:
                name = str(body["endpoint"])
                second = int(body["second"])
                count_table.setdefault(name, {})[second] = {
                    k: int(body.get(k, 0)) for k in OUTCOMES
                }
                unsent.setdefault(name, {})[second] = int(body.get("unsent", 0))
            except (KeyError, TypeError, ValueError) as exc:
                raise LoadError(
                    f"{run_dir / LOAD_JSONL}:{line_no}: malformed line ({exc})"
                ) from exc
            if name not in names:
                names.append(name)
        for name in histograms:
            if name not in names:
                names.append(name)
        traces = [TraceRef(**b) for _, b in _jsonl(run_dir / TRACE_IDS_JSONL)]
        writes = [WriteAck(**b) for _, b in _jsonl(run_dir / WRITES_JSONL)]
        t0 = float(meta.get("t0", start or 0.0))
        return cls(
            t0=t0,
            endpoint_names=names,
            histograms=histograms,
            count_table=count_table,
            all_histograms=all_histograms,
            unsent=unsent,
            traces=traces,
            writes=writes,
            meta=meta,
        )


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except ValueError:
                # A run killed mid-write leaves at most one torn last line.
                logger.warning("%s:%d: unreadable line skipped", path, line_no)


def _read_hlog(
    path: Path,
) -> tuple[dict[str, dict[int, HdrHistogram]], dict[int, HdrHistogram], float | None]:
    per_endpoint: dict[str, dict[int, HdrHistogram]] = {}
    everything: dict[int, HdrHistogram] = {}
    start: float | None = None
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            text = raw.strip()
            if not text or text.startswith('"'):
                continue
            if text.startswith("#"):
                if text.startswith("#[StartTime:"):
                    start = float(text.split()[1])
                continue
            tag = None
            if text.startswith("Tag="):
                tag, _, text = text[4:].partition(",")
            fields = text.split(",")
            if len(fields) != 4:
                logger.warning("%s:%d: not an interval line; skipped", path, line_no)
                continue
            try:
                second = round(float(fields[0]))
                histogram = hist.decode(fields[3])
            except Exception as exc:  # hdrh raises its own cookie/length errors, zlib too
                logger.warning("%s:%d: unreadable interval (%s); skipped", path, line_no, exc)
                continue
            if tag is None:
                everything[second] = histogram
            else:
                per_endpoint.setdefault(decode_tag(tag), {})[second] = histogram
    return per_endpoint, everything, start
