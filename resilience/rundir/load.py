"""The run directory's load files: their formats, one writer and one reader.

Written while the run goes (``LoadFiles``, driven by ``resilience.load.recorder``), in order
and flushed per second, so they stay valid if the run dies:

- ``load.jsonl``: one line per second per endpoint: second, endpoint, n, counts by outcome,
  unsent; and, when the run had phase marks (faults), where its requests fall against them:
  ``seg: "i-j"`` (every request sent after ``i`` marks and ended after ``j``; left out for
  ``0-0``), or ``parts: [{seg, <counts>, hist}]`` when they fall in several segments (a
  request in flight when a fault began or was healed), each with its own histogram.
- ``latency.hlog``: an HdrHistogram interval log (format 1.3): ``#[StartTime: t0]`` then,
  per second, one interval histogram per endpoint tagged ``Tag=<endpoint>`` (the name
  percent-encoded, because tags may not hold commas or spaces) and one untagged histogram
  of all endpoints together. Timestamps are seconds since t0; values are microseconds;
  the max column is in milliseconds.
- ``trace_ids.jsonl``, ``writes.jsonl``: one line per kept trace id / acknowledged write.
- ``load.json``: t0, workers, endpoints, the seconds written and totals (rewritten at close).

``LoadData.read(run_dir)`` reads them all back; it is the analysis' ``LoadView``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote

from hdrh.histogram import HdrHistogram

from resilience import histogram as hist
from resilience.errors import LoadError
from resilience.redact import Redactor
from resilience.rundir.layout import RULES_ONLY, RunDir, make_dirs, open_private, write_json
from resilience.rundir.records import TraceRef, WriteAck
from resilience.vocabulary import OUTCOMES

logger = logging.getLogger(__name__)


@dataclass
class Segment:
    """The requests of one second and endpoint in one phase-mark segment."""

    counts: dict[str, int]
    histogram: HdrHistogram | None

    @property
    def requests(self) -> int:
        return sum(self.counts.values())


class LoadView(Protocol):
    """Per-second, per-endpoint load data. ``endpoint=None`` means all endpoints together."""

    @property
    def endpoints(self) -> Sequence[str]: ...

    @property
    def seconds(self) -> Sequence[int]: ...

    def segments(self, endpoint: str, second: int) -> Mapping[str, Segment]:
        """The requests of ``endpoint`` sent in ``second`` per phase-mark segment (``i-j``);
        a view without marks holds everything in ``0-0``."""
        ...

    def histogram(self, endpoint: str | None, second: int) -> HdrHistogram | None: ...

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]: ...


_TAG_SAFE = "/{}:|!*()'~@$&+;=?<>[]^`\"#"


def encode_tag(endpoint: str) -> str:
    """An endpoint name as an hlog tag: no comma, space or line break; reversible."""
    return quote(endpoint, safe=_TAG_SAFE)


def decode_tag(tag: str) -> str:
    return unquote(tag)


class LoadFiles:
    """Writes the load files of one run directory, second by second, in order.

    Every line goes through ``redactor`` as data: an endpoint is named after its request
    (``GET /orders?token=abc``), so a name may carry a secret. Each distinct name is
    redacted once; the hlog tags use the same redacted names."""

    def __init__(self, run_dir: Path, *, t0: float, redactor: Redactor | None = None) -> None:
        self.layout = RunDir(Path(run_dir))
        make_dirs(self.layout.path)
        self.t0 = t0
        self.redactor = redactor or RULES_ONLY
        self._names: dict[str, str] = {}
        self._load = open_private(self.layout.load_lines)
        self._traces = open_private(self.layout.trace_ids)
        self._writes = open_private(self.layout.writes)
        self._hlog = open_private(self.layout.latency)
        self._closed = False
        self._write_hlog_header()

    def _name(self, endpoint: str) -> str:
        shown = self._names.get(endpoint)
        if shown is None:
            shown = self._names[endpoint] = self.redactor.redact_text(endpoint)
        return shown

    def _line(self, data: Mapping[str, Any]) -> str:
        return json.dumps(self.redactor.redact_json(data)) + "\n"

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

    def write_second(
        self,
        second: int,
        counts: Mapping[str, Mapping[str, int]],
        histograms: Mapping[str, HdrHistogram],
        unsent: Mapping[str, int],
        segments: Mapping[str, Mapping[str, Segment]] | None = None,
    ) -> int:
        """One second of every endpoint (sorted by name) plus the all-endpoints histogram;
        returns the requests written."""
        everything = hist.new_histogram()
        requests = 0
        for name in sorted(counts):
            endpoint_counts = counts[name]
            n = sum(endpoint_counts.values())
            requests += n
            shown = self._name(name)
            line = {"second": second, "endpoint": shown, "n": n, **endpoint_counts}
            line["unsent"] = unsent.get(name, 0)
            placed = (segments or {}).get(name) or {}
            if len(placed) == 1:
                (key,) = placed
                if key != "0-0":
                    line["seg"] = key
            elif placed:
                line["parts"] = [
                    {
                        "seg": key,
                        **part.counts,
                        "hist": hist.encode(part.histogram or hist.new_histogram()),
                    }
                    for key, part in sorted(placed.items())
                ]
            self._load.write(self._line(line))
            histogram = histograms.get(name) or hist.new_histogram()
            self._hlog_line(second, histogram, encode_tag(shown))
            everything.add(histogram)
        self._hlog_line(second, everything, None)
        self._load.flush()
        self._hlog.flush()
        return requests

    def _hlog_line(self, second: int, histogram: HdrHistogram, tag: str | None) -> None:
        max_ms = histogram.get_max_value() / 1000.0 if histogram.get_total_count() else 0.0
        prefix = f"Tag={tag}," if tag else ""
        self._hlog.write(f"{prefix}{second:.3f},1.000,{max_ms:.3f},{hist.encode(histogram)}\n")

    def write_trace(self, ref: TraceRef) -> None:
        self._traces.write(self._line({**asdict(ref), "endpoint": self._name(ref.endpoint)}))
        self._traces.flush()

    def write_ack(self, ack: WriteAck) -> None:
        self._writes.write(self._line({**asdict(ack), "endpoint": self._name(ack.endpoint)}))
        self._writes.flush()

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        write_json(self.layout.load_meta, dict(meta), self.redactor, indent=2)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for handle in (self._load, self._traces, self._writes, self._hlog):
            handle.close()


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
    placement: dict[str, dict[int, str | dict[str, Segment]]] = field(default_factory=dict)
    """Per endpoint and second, where the requests fall against the phase marks: a segment
    key (every request), or the parts per segment. Absent: ``0-0``, or a run without marks."""
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

    def segments(self, endpoint: str, second: int) -> dict[str, Segment]:
        """The requests of ``endpoint`` sent in ``second``, per phase-mark segment."""
        placed = self.placement.get(endpoint, {}).get(second)
        if isinstance(placed, dict):
            return placed
        counts = self.counts(endpoint, second)
        if not counts or not sum(counts.values()):
            return {}
        return {placed or "0-0": Segment(dict(counts), self.histogram(endpoint, second))}

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
                    target = total.setdefault(second, dict.fromkeys(OUTCOMES, 0))
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
        layout = RunDir(run_dir)
        meta_path = layout.load_meta
        if meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        hlog = layout.latency
        if not hlog.exists():
            raise LoadError(f"{hlog} does not exist: this run directory has no load data")
        histograms, all_histograms, start = _read_hlog(hlog)
        count_table: dict[str, dict[int, dict[str, int]]] = {}
        unsent: dict[str, dict[int, int]] = {}
        placement: dict[str, dict[int, str | dict[str, Segment]]] = {}
        names: list[str] = list(meta.get("endpoints", []))
        for line_no, body in _jsonl(layout.load_lines):
            try:
                name = str(body["endpoint"])
                second = int(body["second"])
                count_table.setdefault(name, {})[second] = {
                    k: int(body.get(k, 0)) for k in OUTCOMES
                }
                unsent.setdefault(name, {})[second] = int(body.get("unsent", 0))
                if "seg" in body:
                    placement.setdefault(name, {})[second] = str(body["seg"])
                elif "parts" in body:
                    placement.setdefault(name, {})[second] = {
                        str(part["seg"]): Segment(
                            {k: int(part.get(k, 0)) for k in OUTCOMES},
                            hist.decode(str(part["hist"])),
                        )
                        for part in body["parts"]
                    }
            except (KeyError, TypeError, ValueError) as exc:
                raise LoadError(f"{layout.load_lines}:{line_no}: malformed line ({exc})") from exc
            if name not in names:
                names.append(name)
        for name in histograms:
            if name not in names:
                names.append(name)
        traces = read_trace_refs(run_dir)
        writes = read_writes(run_dir)
        t0 = float(meta.get("t0", start or 0.0))
        return cls(
            t0=t0,
            endpoint_names=names,
            histograms=histograms,
            count_table=count_table,
            all_histograms=all_histograms,
            unsent=unsent,
            placement=placement,
            traces=traces,
            writes=writes,
            meta=meta,
        )


def read_trace_refs(run_dir: Path) -> list[TraceRef]:
    """The trace ids the load engine kept (``trace_ids.jsonl``)."""
    return [TraceRef(**b) for _, b in _jsonl(RunDir(Path(run_dir)).trace_ids)]


def read_writes(run_dir: Path) -> list[WriteAck]:
    """The acknowledged writes (``writes.jsonl``)."""
    return [WriteAck(**b) for _, b in _jsonl(RunDir(Path(run_dir)).writes)]


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
