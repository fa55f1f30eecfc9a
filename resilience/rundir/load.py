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

``LoadData.read(run_dir)`` reads the per-second files back, compactly (each second's
histogram as its non-empty buckets); it is the analysis' ``LoadView``. The per-request files
are streamed (``iter_trace_refs``, ``iter_writes``), never held whole by the analysis.
"""

from __future__ import annotations

import json
import logging
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote

import numpy as np

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
    histogram: hist.Histogram | None

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

    def histogram(self, endpoint: str | None, second: int) -> hist.Histogram | None: ...

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
        histograms: Mapping[str, hist.Histogram],
        unsent: Mapping[str, int],
        segments: Mapping[str, Mapping[str, Segment]] | None = None,
    ) -> int:
        """One second of every endpoint (sorted by name) plus the all-endpoints histogram;
        returns the requests written."""
        written: list[hist.Histogram] = []
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
                        "hist": (part.histogram or hist.Histogram.empty()).encode(),
                    }
                    for key, part in sorted(placed.items())
                ]
            self._load.write(self._line(line))
            histogram = histograms.get(name) or hist.Histogram.empty()
            self._hlog_line(second, histogram, encode_tag(shown))
            written.append(histogram)
        self._hlog_line(second, hist.merge_all(written), None)
        self._load.flush()
        self._hlog.flush()
        return requests

    def _hlog_line(self, second: int, histogram: hist.Histogram, tag: str | None) -> None:
        max_ms = histogram.max_us / 1000.0
        prefix = f"Tag={tag}," if tag else ""
        self._hlog.write(f"{prefix}{second:.3f},1.000,{max_ms:.3f},{histogram.encode()}\n")

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


class _HistogramColumn:
    """The per-second histograms of one endpoint (or of all together), sized to their
    content: every second's non-empty buckets one after another in two flat arrays
    (bucket index, count), with the offset of each second. A second's histogram is a view
    into them, made when asked for."""

    def __init__(self) -> None:
        self._rows: dict[int, int] = {}
        self._index = array("H")
        self._counts = array("I")
        self._offsets = array("q", [0])
        self._totals = array("q")
        self._extra: dict[int, hist.Histogram] = {}
        self._frozen: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def append(self, second: int, index: np.ndarray, counts: np.ndarray) -> None:
        if second in self._rows or self._frozen is not None:
            # A second written twice (never by the recorder): kept aside, merged when read.
            self._extra[second] = hist.merge_all(
                [self._extra.get(second), hist.Histogram(index, counts)]
            )
            return
        if len(counts) and int(counts.max()) >= 1 << 32:
            self._extra[second] = hist.Histogram(index, counts)
            counts = counts[:0]
            index = index[:0]
        self._rows[second] = len(self._totals)
        self._index.frombytes(index.astype(np.uint16, copy=False).tobytes())
        self._counts.frombytes(counts.astype(np.uint32).tobytes())
        self._offsets.append(len(self._index))
        self._totals.append(int(counts.sum()))

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._frozen is None:
            self._frozen = (
                np.frombuffer(self._index, np.uint16),
                np.frombuffer(self._counts, np.uint32),
                np.frombuffer(self._offsets, np.int64),
                np.frombuffer(self._totals, np.int64),
            )
        return self._frozen

    @property
    def seconds(self) -> set[int]:
        return set(self._rows) | set(self._extra)

    @property
    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for a in (self._index, self._counts, self._offsets))

    def get(self, second: int) -> hist.Histogram | None:
        row = self._rows.get(second)
        extra = self._extra.get(second)
        if row is None:
            return extra
        index, counts, offsets, totals = self._arrays()
        start, end = int(offsets[row]), int(offsets[row + 1])
        found = hist.Histogram(index[start:end], counts[start:end], int(totals[row]))
        return found if extra is None else hist.merge_all([found, extra])


class _CountColumn:
    """Outcome counts and unsent requests of one endpoint, one row per second."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}
        self._values = array("q")
        self._frozen: np.ndarray | None = None

    def put(self, second: int, counts: Sequence[int], unsent: int) -> None:
        row = self.rows.get(second)
        if row is not None:  # a second written twice: the later line wins, as it always did
            self._frozen = None
            self._values[row * _WIDTH : (row + 1) * _WIDTH] = array("q", [*counts, unsent])
            return
        self.rows[second] = len(self._values) // _WIDTH
        self._values.extend(counts)
        self._values.append(unsent)
        self._frozen = None

    def table(self) -> np.ndarray:
        if self._frozen is None:
            self._frozen = np.frombuffer(self._values, np.int64).reshape(-1, _WIDTH)
        return self._frozen

    def row(self, second: int) -> np.ndarray | None:
        at = self.rows.get(second)
        return None if at is None else self.table()[at]


_WIDTH = len(OUTCOMES) + 1
"""Columns of a count row: one per outcome, then unsent."""


class LoadData:
    """Everything per second the load engine wrote to a run directory, held compactly.

    Implements the analysis' ``LoadView`` (``endpoint=None`` means all endpoints
    together). Histograms are kept as their non-empty buckets only (``_HistogramColumn``):
    a 2-hour run at 1,000 requests/s holds tens of MB where dense histograms took GiBs.
    The per-request files (``trace_ids.jsonl``, ``writes.jsonl``) are not held: the
    analysis streams them (``read_trace_refs``, ``scan_writes``); ``traces`` and
    ``writes`` read them whole, on demand, for small runs and tests.
    """

    def __init__(self, run_dir: Path, t0: float, meta: Mapping[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.t0 = t0
        self.meta: dict[str, Any] = dict(meta or {})
        self.endpoint_names: list[str] = [str(e) for e in self.meta.get("endpoints", [])]
        self._histograms: dict[str | None, _HistogramColumn] = {}
        self._counts: dict[str, _CountColumn] = {}
        self.placement: dict[str, dict[int, str | dict[str, Segment]]] = {}
        """Per endpoint and second, where the requests fall against the phase marks: a
        segment key (every request), or the parts per segment. Absent: ``0-0``, or a run
        without marks."""
        self._all: tuple[dict[int, int], np.ndarray] | None = None
        self._seconds: list[int] | None = None

    # -- the LoadView ------------------------------------------------------------------

    @property
    def endpoints(self) -> Sequence[str]:
        return list(self.endpoint_names)

    @property
    def seconds(self) -> Sequence[int]:
        if self._seconds is None:
            found: set[int] = set()
            for column in self._histograms.values():
                found |= column.seconds
            for counts in self._counts.values():
                found.update(counts.rows)
            self._seconds = sorted(found)
        return self._seconds

    def segments(self, endpoint: str, second: int) -> dict[str, Segment]:
        """The requests of ``endpoint`` sent in ``second``, per phase-mark segment."""
        placed = self.placement.get(endpoint, {}).get(second)
        if isinstance(placed, dict):
            return placed
        counts = self.counts(endpoint, second)
        if not counts or not sum(counts.values()):
            return {}
        return {placed or "0-0": Segment(dict(counts), self.histogram(endpoint, second))}

    def histogram(self, endpoint: str | None, second: int) -> hist.Histogram | None:
        column = self._histograms.get(endpoint)
        return None if column is None else column.get(second)

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]:
        if endpoint is None:
            rows, table = self._aggregate()
            at = rows.get(second)
            return {} if at is None else dict(zip(OUTCOMES, table[at].tolist(), strict=False))
        column = self._counts.get(endpoint)
        row = None if column is None else column.row(second)
        return {} if row is None else dict(zip(OUTCOMES, row.tolist(), strict=False))

    def unsent(self, endpoint: str, second: int) -> int:
        column = self._counts.get(endpoint)
        row = None if column is None else column.row(second)
        return 0 if row is None else int(row[-1])

    def _aggregate(self) -> tuple[dict[int, int], np.ndarray]:
        if self._all is None:
            seconds = sorted({s for c in self._counts.values() for s in c.rows})
            rows = {s: i for i, s in enumerate(seconds)}
            table = np.zeros((len(seconds), len(OUTCOMES)), np.int64)
            for column in self._counts.values():
                at = np.fromiter((rows[s] for s in column.rows), np.int64, len(column.rows))
                np.add.at(table, at, column.table()[list(column.rows.values()), :-1])
            self._all = (rows, table)
        return self._all

    def merged(self, endpoint: str | None, seconds: Iterable[int]) -> hist.Histogram:
        """One histogram over ``seconds`` (missing seconds are empty)."""
        return hist.merge_all(self.histogram(endpoint, s) for s in seconds)

    def total_requests(self, endpoint: str | None = None) -> int:
        if endpoint is None:
            return int(self._aggregate()[1].sum())
        column = self._counts.get(endpoint)
        return 0 if column is None else int(column.table()[:, :-1].sum())

    @property
    def nbytes(self) -> int:
        """Bytes the per-second histograms hold (the bulk of this object)."""
        return sum(c.nbytes for c in self._histograms.values())

    # -- per-request files, whole (small runs and tests; the analysis streams them) -----

    @property
    def traces(self) -> list[TraceRef]:
        return read_trace_refs(self.run_dir)

    @property
    def writes(self) -> list[WriteAck]:
        return read_writes(self.run_dir)

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def read(cls, run_dir: Path) -> LoadData:
        """Read a run directory's per-second load files (``latency.hlog``, ``load.jsonl``,
        ``load.json``) in one pass each; LoadError if they are missing or malformed."""
        run_dir = Path(run_dir)
        meta: dict[str, Any] = {}
        layout = RunDir(run_dir)
        meta_path = layout.load_meta
        if meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        hlog = layout.latency
        if not hlog.exists():
            raise LoadError(f"{hlog} does not exist: this run directory has no load data")
        data = cls(run_dir, 0.0, meta)
        start = data._read_hlog(hlog)
        data.t0 = float(meta.get("t0", start or 0.0))
        names = data.endpoint_names
        for line_no, body in _jsonl(layout.load_lines):
            try:
                name = data._read_count_line(body)
            except (KeyError, TypeError, ValueError) as exc:
                raise LoadError(f"{layout.load_lines}:{line_no}: malformed line ({exc})") from exc
            if name not in names:
                names.append(name)
        for tag in data._histograms:
            if tag is not None and tag not in names:
                names.append(tag)
        return data

    def _read_count_line(self, body: Mapping[str, Any]) -> str:
        name = str(body["endpoint"])
        second = int(body["second"])
        column = self._counts.get(name)
        if column is None:
            column = self._counts[name] = _CountColumn()
        column.put(second, [int(body.get(k, 0)) for k in OUTCOMES], int(body.get("unsent", 0)))
        if "seg" in body:
            self.placement.setdefault(name, {})[second] = str(body["seg"])
        elif "parts" in body:
            self.placement.setdefault(name, {})[second] = {
                str(part["seg"]): Segment(
                    {k: int(part.get(k, 0)) for k in OUTCOMES},
                    hist.Histogram.decode(str(part["hist"])),
                )
                for part in body["parts"]
            }
        return name

    def _read_hlog(self, path: Path) -> float | None:
        """Every interval of ``latency.hlog`` decoded straight into its endpoint's column;
        returns the log's StartTime."""
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
                    decoded = hist.Histogram.decode(fields[3])
                except Exception as exc:  # base64, zlib and hdrh raise their own errors
                    logger.warning("%s:%d: unreadable interval (%s); skipped", path, line_no, exc)
                    continue
                name = None if tag is None else decode_tag(tag)
                column = self._histograms.get(name)
                if column is None:
                    column = self._histograms[name] = _HistogramColumn()
                column.append(second, decoded.index, decoded.counts)
        return start


def read_trace_refs(run_dir: Path) -> list[TraceRef]:
    """The trace ids the load engine kept (``trace_ids.jsonl``), all of them."""
    return list(iter_trace_refs(run_dir))


def iter_trace_refs(run_dir: Path) -> Iterator[TraceRef]:
    """The kept trace ids one at a time (a long run keeps hundreds of thousands)."""
    for _, body in _jsonl(RunDir(Path(run_dir)).trace_ids):
        yield TraceRef(**body)


def read_writes(run_dir: Path) -> list[WriteAck]:
    """The acknowledged writes (``writes.jsonl``), all of them."""
    return list(iter_writes(run_dir))


def iter_writes(run_dir: Path) -> Iterator[WriteAck]:
    """The acknowledged writes one at a time."""
    for _, body in _jsonl(RunDir(Path(run_dir)).writes):
        yield WriteAck(**body)


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
