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
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote, unquote

import numpy as np

from resilience import histogram as hist
from resilience.errors import LoadError
from resilience.redact import Redactor
from resilience.rundir.layout import RULES_ONLY, RunDir, make_dirs, open_private, write_json
from resilience.rundir.records import (
    TraceReason,
    TraceRef,
    WriteAck,
    WriteKeys,
    WriteSummary,
    numeric_key,
)
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


@dataclass(frozen=True)
class SecondTable:
    """Per-second numbers of one endpoint (or all) over a list of seconds, as arrays.

    ``counts`` has one column per outcome (``OUTCOMES``); ``percentiles[p]`` is in ms, NaN
    for a second without latencies; ``above`` counts the latencies above the threshold
    asked for (histogram resolution), when one was asked for."""

    seconds: np.ndarray
    counts: np.ndarray
    percentiles: Mapping[float, np.ndarray]
    above: np.ndarray | None = None

    @property
    def requests(self) -> np.ndarray:
        result: np.ndarray = self.counts.sum(axis=1)
        return result

    @property
    def errors(self) -> np.ndarray:
        result: np.ndarray = self.counts[:, 1:].sum(axis=1)  # every outcome but ok
        return result


@dataclass(frozen=True)
class SegmentTable:
    """Where one endpoint's requests fall against the phase marks, every second at once:
    ``seconds`` (those with requests, increasing) and, per second, an index into ``keys``
    (the distinct tuples of segment keys; one key per tuple but where a second is split)."""

    seconds: np.ndarray
    codes: np.ndarray
    keys: list[tuple[str, ...]]

    @classmethod
    def of(cls, per_second: Iterable[tuple[int, Sequence[str]]]) -> SegmentTable:
        seconds: list[int] = []
        codes: list[int] = []
        index: dict[tuple[str, ...], int] = {}
        for second, keys in per_second:
            if not keys:
                continue
            key = tuple(keys)
            seconds.append(second)
            codes.append(index.setdefault(key, len(index)))
        return cls(np.asarray(seconds, np.int64), np.asarray(codes, np.int64), list(index))


class LoadView(Protocol):
    """Per-second, per-endpoint load data. ``endpoint=None`` means all endpoints together.

    Besides a second at a time (``histogram``, ``counts``, ``segments``), a view answers
    for many seconds at once (``window``: merged; ``table``: per second, as arrays): that
    is what the analysis and the reports ask, and what a view over a long run answers in a
    few vectorised steps (``LoadData``). ``LoadViewBase`` gives both from the per-second
    methods, for views that need nothing faster."""

    @property
    def endpoints(self) -> Sequence[str]: ...

    @property
    def seconds(self) -> Sequence[int]: ...

    def segments(self, endpoint: str, second: int) -> Mapping[str, Segment]:
        """The requests of ``endpoint`` sent in ``second`` per phase-mark segment (``i-j``);
        a view without marks holds everything in ``0-0``."""
        ...

    def segment_keys(self, endpoint: str, second: int) -> Sequence[str]:
        """The segment keys of ``segments(endpoint, second)``, without building them."""
        ...

    def segment_table(self, endpoint: str) -> SegmentTable:
        """Every second of ``endpoint`` with requests and its segment keys, at once."""
        ...

    def histogram(self, endpoint: str | None, second: int) -> hist.Histogram | None: ...

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]: ...

    def window(
        self, endpoint: str | None, seconds: Iterable[int]
    ) -> tuple[hist.Histogram, dict[str, int], int]:
        """Over ``seconds``: the merged histogram, the summed counts (every outcome) and
        how many seconds were asked for (missing seconds count as empty)."""
        ...

    def table(
        self,
        endpoint: str | None,
        seconds: Iterable[int],
        wanted: Sequence[float] = (50.0, 95.0, 99.0),
        above_us: float | None = None,
    ) -> SecondTable:
        """Per second of ``seconds``: counts, ``wanted`` percentiles and, when asked,
        how many latencies lie above ``above_us``."""
        ...


class LoadViewBase:
    """``segment_keys``, ``window`` and ``table`` from the per-second methods (a second at
    a time): what a small or in-memory view needs; ``LoadData`` answers in bulk."""

    def segments(self, endpoint: str, second: int) -> Mapping[str, Segment]:
        raise NotImplementedError

    def histogram(self, endpoint: str | None, second: int) -> hist.Histogram | None:
        raise NotImplementedError

    def counts(self, endpoint: str | None, second: int) -> Mapping[str, int]:
        raise NotImplementedError

    @property
    def seconds(self) -> Sequence[int]:
        raise NotImplementedError

    def segment_keys(self, endpoint: str, second: int) -> Sequence[str]:
        return list(self.segments(endpoint, second))

    def segment_table(self, endpoint: str) -> SegmentTable:
        return SegmentTable.of((s, self.segment_keys(endpoint, s)) for s in self.seconds)

    def window(
        self, endpoint: str | None, seconds: Iterable[int]
    ) -> tuple[hist.Histogram, dict[str, int], int]:
        parts: list[hist.Histogram] = []
        counts = dict.fromkeys(OUTCOMES, 0)
        n_seconds = 0
        for second in seconds:
            n_seconds += 1
            found = self.histogram(endpoint, second)
            if found is not None:
                parts.append(found)
            for key, value in self.counts(endpoint, second).items():
                counts[key] = counts.get(key, 0) + value
        return hist.merge_all(parts), counts, n_seconds

    def table(
        self,
        endpoint: str | None,
        seconds: Iterable[int],
        wanted: Sequence[float] = (50.0, 95.0, 99.0),
        above_us: float | None = None,
    ) -> SecondTable:
        secs = [int(s) for s in seconds]
        counts = np.zeros((len(secs), len(OUTCOMES)), np.int64)
        values = {p: np.full(len(secs), np.nan) for p in wanted}
        above = None if above_us is None else np.zeros(len(secs), np.int64)
        for row, second in enumerate(secs):
            found = self.counts(endpoint, second)
            counts[row] = [found.get(k, 0) for k in OUTCOMES]
            histogram = self.histogram(endpoint, second)
            if histogram is None or not histogram.total:
                continue
            for p, v in zip(wanted, histogram.percentiles_ms(wanted), strict=True):
                values[p][row] = np.nan if v is None else v
            if above is not None and above_us is not None:
                above[row] = histogram.count_above(above_us)
        return SecondTable(np.asarray(secs, np.int64), counts, values, above)


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


class _RowIndex:
    """Second -> row, for many seconds at once (-1 where a second has no row)."""

    def __init__(self, rows: Mapping[int, int]) -> None:
        self.low = min(rows, default=0)
        high = max(rows, default=-1)
        self.lookup = np.full(max(0, high - self.low + 1), -1, np.int64)
        for second, row in rows.items():
            self.lookup[second - self.low] = row

    def rows(self, seconds: np.ndarray) -> np.ndarray:
        at = seconds - self.low
        inside = (at >= 0) & (at < len(self.lookup))
        out = np.full(len(seconds), -1, np.int64)
        out[inside] = self.lookup[at[inside]]
        return out


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
        self._row_index: _RowIndex | None = None

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
    def has_extra(self) -> bool:
        return bool(self._extra)

    def _index_of_rows(self) -> _RowIndex:
        if self._row_index is None:
            self._row_index = _RowIndex(self._rows)
        return self._row_index

    def rows(self, seconds: np.ndarray) -> np.ndarray:
        return self._index_of_rows().rows(seconds)

    def _spans(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, int, int]]:
        """The given rows (>= 0) in groups of at most ``_ROWS_AT_ONCE``, in increasing
        order, each with the span of entries it covers: bulk work stays a few MB whatever
        the run's length."""
        offsets = self._arrays()[2]
        ordered = np.unique(rows[rows >= 0])
        for at in range(0, len(ordered), _ROWS_AT_ONCE):
            group = ordered[at : at + _ROWS_AT_ONCE]
            yield group, int(offsets[group[0]]), int(offsets[group[-1] + 1])

    def percentiles(self, rows: np.ndarray, wanted: Sequence[float]) -> dict[float, np.ndarray]:
        """Per row (-1: none), the ``wanted`` percentiles in ms (NaN where empty)."""
        index, counts, offsets, totals = self._arrays()
        out = {p: np.full(len(rows), np.nan) for p in wanted}
        for group, first, last in self._spans(rows):
            running = np.cumsum(counts[first:last], dtype=np.int64)
            found = hist.row_percentiles(
                index[first:last], running, offsets[group] - first, totals[group], wanted
            )
            where = np.searchsorted(group, rows)
            hit = (rows >= 0) & (where < len(group))
            hit[hit] = group[where[hit]] == rows[hit]
            for p in wanted:
                out[p][hit] = found[p][where[hit]]
        return out

    def above(self, rows: np.ndarray, threshold_us: float) -> np.ndarray:
        """Per row (-1: none), how many values lie above ``threshold_us``."""
        index, counts, offsets, _ = self._arrays()
        bucket = hist.index_of(int(threshold_us))
        out = np.zeros(len(rows), np.int64)
        for group, first, last in self._spans(rows):
            over = np.where(index[first:last] > bucket, counts[first:last], 0)
            running = np.concatenate(([0], np.cumsum(over, dtype=np.int64)))
            found = running[offsets[group + 1] - first] - running[offsets[group] - first]
            where = np.searchsorted(group, rows)
            hit = (rows >= 0) & (where < len(group))
            hit[hit] = group[where[hit]] == rows[hit]
            out[hit] = found[where[hit]]
        return out

    def merged(self, rows: np.ndarray) -> hist.Histogram:
        """One histogram over the given rows (-1 ignored), summed in one dense array."""
        index, counts, offsets, _ = self._arrays()
        dense = np.zeros(hist.COUNTS_LEN, np.int64)
        for group, first, last in self._spans(rows):
            take = np.zeros(last - first, bool)
            for row in group.tolist():  # the rows of a group, each a slice of the span
                take[offsets[row] - first : offsets[row + 1] - first] = True
            np.add.at(dense, index[first:last][take], counts[first:last][take])
        return hist.Histogram.from_dense(dense)

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


_ROWS_AT_ONCE = 512
"""Seconds one bulk step covers (about 0.5 MB of entries at 1,000 req/s)."""


class _CountColumn:
    """Outcome counts and unsent requests of one endpoint, one row per second."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}
        self._values = array("q")
        self._frozen: np.ndarray | None = None
        self._index: _RowIndex | None = None

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
        self._index = None

    def table(self) -> np.ndarray:
        if self._frozen is None:
            self._frozen = np.frombuffer(self._values, np.int64).reshape(-1, _WIDTH)
        return self._frozen

    def row(self, second: int) -> np.ndarray | None:
        at = self.rows.get(second)
        return None if at is None else self.table()[at]

    def outcome_counts(self, seconds: np.ndarray) -> np.ndarray:
        """Per second, its counts by outcome (zeros where it has none)."""
        if self._index is None:
            self._index = _RowIndex(self.rows)
        rows = self._index.rows(seconds)
        out = np.zeros((len(seconds), len(OUTCOMES)), np.int64)
        present = rows >= 0
        out[present] = self.table()[rows[present], : len(OUTCOMES)]
        return out


_WIDTH = len(OUTCOMES) + 1
"""Columns of a count row: one per outcome, then unsent."""


class LoadData(LoadViewBase):
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
        self._all_index: _RowIndex | None = None
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

    def segment_keys(self, endpoint: str, second: int) -> Sequence[str]:
        placed = self.placement.get(endpoint, {}).get(second)
        if isinstance(placed, dict):
            return list(placed)
        counts = self._counts.get(endpoint)
        row = None if counts is None else counts.row(second)
        if row is None or not row[: len(OUTCOMES)].any():
            return []
        return [placed or "0-0"]

    def segment_table(self, endpoint: str) -> SegmentTable:
        column = self._counts.get(endpoint)
        if column is None:
            return SegmentTable.of(())
        rows = np.fromiter(column.rows.values(), np.int64, len(column.rows))
        seconds = np.fromiter(column.rows.keys(), np.int64, len(column.rows))
        busy = column.table()[rows, : len(OUTCOMES)].sum(axis=1) > 0
        order = np.argsort(seconds[busy], kind="stable")
        seconds = seconds[busy][order]
        codes = np.zeros(len(seconds), np.int64)
        keys: list[tuple[str, ...]] = [("0-0",)]
        index: dict[tuple[str, ...], int] = {("0-0",): 0}
        placed = self.placement.get(endpoint, {})
        if placed:
            at = {int(s): i for i, s in enumerate(seconds.tolist())}
            for second, where in placed.items():
                i = at.get(second)
                if i is None:
                    continue
                key = tuple(where) if isinstance(where, dict) else (where,)
                code = index.get(key)
                if code is None:
                    code = index[key] = len(keys)
                    keys.append(key)
                codes[i] = code
        return SegmentTable(seconds, codes, keys)

    def _outcomes(self, endpoint: str | None, seconds: np.ndarray) -> np.ndarray:
        if endpoint is None:
            rows_of, table = self._aggregate()
            if self._all_index is None:
                self._all_index = _RowIndex(rows_of)
            rows = self._all_index.rows(seconds)
            out = np.zeros((len(seconds), len(OUTCOMES)), np.int64)
            out[rows >= 0] = table[rows[rows >= 0]]
            return out
        column = self._counts.get(endpoint)
        if column is None:
            return np.zeros((len(seconds), len(OUTCOMES)), np.int64)
        return column.outcome_counts(seconds)

    def window(
        self, endpoint: str | None, seconds: Iterable[int]
    ) -> tuple[hist.Histogram, dict[str, int], int]:
        secs = np.fromiter((int(s) for s in seconds), np.int64)
        column = self._histograms.get(endpoint)
        if column is not None and column.has_extra:
            return super().window(endpoint, secs.tolist())
        totals = self._outcomes(endpoint, secs).sum(axis=0)
        counts = dict(zip(OUTCOMES, (int(v) for v in totals), strict=True))
        merged = hist.Histogram.empty() if column is None else column.merged(column.rows(secs))
        return merged, counts, len(secs)

    def table(
        self,
        endpoint: str | None,
        seconds: Iterable[int],
        wanted: Sequence[float] = (50.0, 95.0, 99.0),
        above_us: float | None = None,
    ) -> SecondTable:
        secs = np.fromiter((int(s) for s in seconds), np.int64)
        column = self._histograms.get(endpoint)
        if column is not None and column.has_extra:
            return super().table(endpoint, secs.tolist(), wanted, above_us)
        counts = self._outcomes(endpoint, secs)
        if column is None:
            values = {p: np.full(len(secs), np.nan) for p in wanted}
            above = None if above_us is None else np.zeros(len(secs), np.int64)
            return SecondTable(secs, counts, values, above)
        rows = column.rows(secs)
        above = None if above_us is None else column.above(rows, above_us)
        return SecondTable(secs, counts, column.percentiles(rows, wanted), above)

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


def requests_per_second(run_dir: Path) -> dict[int, int]:
    """Requests sent in each second of the run, all endpoints (from ``load.jsonl``, read
    line by line: one small dict per second)."""
    out: dict[int, int] = {}
    for _, body in _jsonl(RunDir(Path(run_dir)).load_lines):
        second, n = body.get("second"), body.get("n")
        if isinstance(second, int) and isinstance(n, int):
            out[second] = out.get(second, 0) + n
    return out


def iter_trace_refs(run_dir: Path) -> Iterator[TraceRef]:
    """The kept trace ids one at a time (a long run keeps hundreds of thousands)."""
    for _, body in _jsonl(RunDir(Path(run_dir)).trace_ids):
        yield TraceRef(**body)


_TRACE_LINE = re.compile(
    r'\{"worker": (-?\d+), "trace_id": "([0-9A-Za-z+/=]*)", "span_id": "([0-9A-Za-z+/=]*)", '
    r'"endpoint": "([^"\\]*)", "t": ([^,]+), "latency": ([^,]+), '
    r'"outcome": "(\w+)", "status": (-?\d+), "reason": "(\w+)"\}'
)
"""A line of ``trace_ids.jsonl`` as ``LoadFiles.write_trace`` writes it."""


def _trace_fields(path: Path) -> Iterator[tuple[str, ...] | dict[str, Any]]:
    """Per line: the recorder's nine fields as text (no JSON parse), or the parsed line."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            found = _TRACE_LINE.fullmatch(line.rstrip("\n"))
            if found is not None:
                yield found.groups()
                continue
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:
                logger.warning("%s:%d: unreadable line skipped", path, line_no)


def _trace_ref(fields: tuple[str, ...] | dict[str, Any], names: dict[str, str]) -> TraceRef:
    if isinstance(fields, dict):
        return TraceRef(**fields)
    worker, trace_id, span_id, raw, t, latency, outcome, status, reason = fields
    name = names.get(raw)
    if name is None:
        name = names[raw] = json.loads(f'"{raw}"')
    # The reason is one of TraceReason: the recorder wrote it (the pattern takes a word).
    kept_for = cast("TraceReason", reason)
    return TraceRef(
        int(worker), trace_id, span_id, name, float(t), float(latency), outcome, int(status),
        kept_for,
    )  # fmt: skip


MAX_HELD_TRACE_REFS = 50_000
"""Kept trace ids the analysis holds at most (about 15 MB); past that it holds every one
whose trace was saved and the first ``TRACE_REFS_PER_GROUP`` of each endpoint, outcome and
reason, and says so (``TraceRefSample``)."""
TRACE_REFS_PER_GROUP = 200


@dataclass(frozen=True)
class TraceRefSample:
    """The kept trace ids an analysis held: ``held`` of the ``read`` in the file."""

    refs: list[TraceRef]
    read: int

    @property
    def held(self) -> int:
        return len(self.refs)

    @property
    def sampled(self) -> bool:
        return self.held < self.read


def sample_trace_refs(
    run_dir: Path,
    keep: Iterable[str] = (),
    *,
    limit: int = MAX_HELD_TRACE_REFS,
    per_group: int = TRACE_REFS_PER_GROUP,
    within: tuple[float, float] | None = None,
) -> TraceRefSample:
    """Every kept trace id while there are at most ``limit``; past that, those in ``keep``
    (the saved traces) and the first ``per_group`` of each (endpoint, outcome, reason), in
    file order. One pass; memory bounded whatever the run's length. ``within``: only ids
    of requests sent in [start, end)."""
    wanted = {k.lower() for k in keep}
    held: list[TraceRef] = []
    groups: dict[tuple[str, str, str], int] = {}
    read = 0
    sampling = False

    def take(ref: TraceRef) -> bool:
        group = (ref.endpoint, ref.outcome, ref.reason)
        seen = groups.get(group, 0)
        groups[group] = seen + 1
        return seen < per_group or ref.trace_id.lower() in wanted

    path = RunDir(Path(run_dir)).trace_ids
    if not path.exists():
        return TraceRefSample([], 0)
    names: dict[str, str] = {}
    for fields in _trace_fields(path):
        if within is not None:
            sent = float(fields["t"] if isinstance(fields, dict) else fields[4])
            if not within[0] <= sent < within[1]:
                continue
        read += 1
        if sampling and not isinstance(fields, dict):
            name = names.get(fields[3]) or _trace_ref(fields, names).endpoint
            group = (name, fields[6], fields[8])
            seen = groups.get(group, 0)
            groups[group] = seen + 1
            if seen < per_group or fields[1].lower() in wanted:
                held.append(_trace_ref(fields, names))
            continue
        ref = _trace_ref(fields, names)
        if sampling:
            if take(ref):
                held.append(ref)
            continue
        held.append(ref)
        if len(held) > limit:
            sampling = True
            groups.clear()
            held = [r for r in held if take(r)]
    return TraceRefSample(held, read)


def read_writes(run_dir: Path) -> list[WriteAck]:
    """The acknowledged writes (``writes.jsonl``), all of them."""
    return list(iter_writes(run_dir))


def iter_writes(run_dir: Path) -> Iterator[WriteAck]:
    """The acknowledged writes one at a time."""
    for _, body in _jsonl(RunDir(Path(run_dir)).writes):
        yield WriteAck(**body)


_WRITE_LINES = re.compile(
    r'"id": (-?\d+|"[^"\\\n]*"), "endpoint": "([^"\\\n]*)", "t": ([-+.0-9eE]+)[,}]'
)
"""The id and endpoint of a line of ``writes.jsonl`` as ``LoadFiles.write_ack`` writes it,
read without a JSON parse, a chunk of lines at a time; a chunk where any line does not give
exactly one match (another key order, an escaped endpoint) is parsed line by line."""
_CHUNK_BYTES = 1 << 22


def _write_chunks(path: Path) -> Iterator[tuple[list[str], list[tuple[str, str, str]] | None]]:
    """Chunks of lines of ``writes.jsonl``: the lines, and (id token, raw endpoint, send
    time) of each when every line of the chunk has the recorder's form (else None)."""
    with path.open(encoding="utf-8") as handle:
        while lines := handle.readlines(_CHUNK_BYTES):
            found = _WRITE_LINES.findall("".join(lines))
            yield lines, found if len(found) == len(lines) else None


def _parse_write(line: str) -> tuple[str, str, float] | None:
    """(endpoint, id as text, send time) of one line parsed as JSON; None when unreadable."""
    try:
        body = json.loads(line)
        return str(body["endpoint"]), str(body["id"]), float(body.get("t", 0.0))
    except (ValueError, KeyError, TypeError):
        return None


class _WriteScan:
    """One pass over ``writes.jsonl`` into a ``WriteKeys`` per endpoint."""

    def __init__(
        self, wanted: Mapping[str, Iterable[str]], within: tuple[float, float] | None
    ) -> None:
        self.within = within
        self.keep = {name: set(keys) for name, keys in wanted.items()}
        self.keep_numbers = {
            name: np.asarray(sorted(n for k in keys if (n := numeric_key(k)) is not None))
            for name, keys in self.keep.items()
        }
        self.builders: dict[str, WriteKeys] = {}
        self._names: dict[str, str] = {}

    def builder(self, name: str) -> WriteKeys:
        found = self.builders.get(name)
        if found is None:
            found = self.builders[name] = WriteKeys(name)
        return found

    def name(self, raw: str) -> str:
        shown = self._names.get(raw)
        if shown is None:
            shown = self._names[raw] = json.loads(f'"{raw}"')
        return shown

    def first(self, builder: WriteKeys, key: str, line: str) -> None:
        if key not in builder.first and key in self.keep.get(builder.endpoint, ()):
            builder.first[key] = WriteAck(**json.loads(line))

    def lines(self, path: Path, lines: list[str]) -> None:
        for line in lines:
            parsed = _parse_write(line) if line.strip() else None
            if parsed is None:
                if line.strip():
                    logger.warning("%s: unreadable line skipped", path)
                continue
            if self.within is not None and not self.within[0] <= parsed[2] < self.within[1]:
                continue
            builder = self.builder(parsed[0])
            self.first(builder, parsed[1], line)
            number = numeric_key(parsed[1])
            if number is None:
                builder.add_other(parsed[1], 0)
            else:
                builder.add_numbers(np.asarray([number]), np.zeros(1, np.int64))
            builder.skip(1)

    def chunk(self, lines: list[str], found: list[tuple[str, str, str]]) -> None:
        raw_names = np.asarray([f[1] for f in found])
        tokens = np.asarray([f[0] for f in found])
        if self.within is not None:
            sent = np.asarray([f[2] for f in found], np.float64)
            inside = (sent >= self.within[0]) & (sent < self.within[1])
            if not inside.all():
                lines = [line for line, keep in zip(lines, inside.tolist(), strict=True) if keep]
                raw_names, tokens = raw_names[inside], tokens[inside]
        for raw in np.unique(raw_names).tolist():
            rows = np.flatnonzero(raw_names == raw)
            builder = self.builder(self.name(raw))
            mine = tokens[rows]
            lengths = np.char.str_len(mine)
            numeric = (
                np.char.isdigit(mine)
                & (lengths <= 18)
                & ~((lengths > 1) & np.char.startswith(mine, "0"))
            )
            values = np.zeros(len(rows), np.int64)
            values[numeric] = mine[numeric].astype(np.int64)
            others: list[tuple[int, str]] = []
            for i in np.flatnonzero(~numeric).tolist():
                token = str(mine[i])
                key = str(json.loads(token)) if token[0] == '"' else str(int(token))
                number = numeric_key(key)  # "7" (a string id) is the id 7's key too
                if number is None:
                    self.first(builder, key, lines[int(rows[i])])
                    others.append((i, key))
                else:
                    values[i] = number
                    numeric[i] = True
            at = np.flatnonzero(numeric)
            builder.add_numbers(values[at], at)  # in order: positions are indexes mostly
            for i, key in others:
                builder.add_other(key, i)
            wanted = self.keep_numbers.get(builder.endpoint)
            if wanted is not None and len(wanted):
                for i in at[np.isin(values[at], wanted)].tolist():
                    self.first(builder, str(int(values[i])), lines[int(rows[i])])
            builder.skip(len(rows))


def scan_writes(
    run_dir: Path,
    wanted: Mapping[str, Iterable[str]] | None = None,
    *,
    within: tuple[float, float] | None = None,
) -> WriteSummary:
    """``writes.jsonl`` summarised per endpoint in one pass (a second one only when two
    non-numeric ids share a hash): counts, duplicates and distinct ids, and the first
    acknowledgement of each id in ``wanted[endpoint]`` (the ids the read-back planned).
    ``within``: only writes sent in [start, end)."""
    path = RunDir(Path(run_dir)).writes
    if not path.exists():
        return WriteSummary()
    scan = _WriteScan(wanted or {}, within)
    for lines, found in _write_chunks(path):
        if found is None:
            scan.lines(path, lines)
        else:
            scan.chunk(lines, found)
    builders = scan.builders
    suspects = {name: b.suspect_hashes() for name, b in builders.items()}
    confirmed: dict[str, dict[str, list[int]]] = {name: {} for name in builders}
    if any(suspects.values()):
        position = dict.fromkeys(builders, 0)
        for name, key, sent in _write_keys(path):
            if within is not None and not within[0] <= sent < within[1]:
                continue
            if numeric_key(key) is None and hash(key) in suspects.get(name, ()):
                confirmed[name].setdefault(key, []).append(position[name])
            position[name] = position.get(name, 0) + 1
    return WriteSummary({name: b.summary(confirmed[name]) for name, b in builders.items()})


def _write_keys(path: Path) -> Iterator[tuple[str, str, float]]:
    """(endpoint, id as text, send time) of every acknowledged write, in order."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            parsed = _parse_write(line) if line.strip() else None
            if parsed is not None:
                yield parsed


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
