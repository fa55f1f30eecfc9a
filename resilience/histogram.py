"""Latency histograms: the one HdrHistogram shape the load engine records, the run directory
stores and the analysis merges.

Every histogram the engine makes covers 1 us .. 1 h in microseconds with 3 significant
digits, so any two of them can be added. The worker keeps raw latencies of a second in a
plain list (an append is the cheapest thing a request can do on the hot path) and turns the
list into counts here in one vectorised step when the second is flushed; ``record_many``
gives exactly the buckets ``HdrHistogram.record_value`` would. Histograms travel as
HdrHistogram's compressed base64 encoding (the V2 "HISTF..." form other tools read).
"""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
from hdrh.histogram import HdrHistogram
from pyhdrh import decode as _decode_varints  # hdrh's own C varint decoder
from pyhdrh import encode as _encode_varints  # and encoder

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
DIGITS = 3


def new_histogram() -> HdrHistogram:
    """An empty histogram of the engine's one shape (microseconds, 1 us .. 1 h, 3 digits)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def clamp_us(seconds: float) -> int:
    """Seconds to whole microseconds inside the histogram's range."""
    us = int(seconds * 1_000_000)
    if us < 0:
        return 0
    return min(us, HIGHEST_US)


def record_many(hist: HdrHistogram, values_us: Sequence[int] | np.ndarray) -> None:
    """Add many microsecond values at once; the same buckets as ``record_value`` each."""
    if len(values_us) == 0:
        return
    values = np.clip(np.asarray(values_us, dtype=np.int64), 0, HIGHEST_US)
    # bit_length(v | mask), exact through float64 because values stay far below 2**53.
    _, bit_length = np.frexp((values | hist.sub_bucket_mask).astype(np.float64))
    bucket = bit_length.astype(np.int64) - hist.unit_magnitude
    bucket -= hist.sub_bucket_half_count_magnitude + 1
    sub_bucket = values >> (bucket + hist.unit_magnitude)
    index = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + sub_bucket
    index -= hist.sub_bucket_half_count
    counts = np.ctypeslib.as_array(hist.counts)
    counts += np.bincount(index, minlength=hist.counts_len).astype(counts.dtype)
    hist.total_count += len(values)
    hist.min_value = min(hist.min_value, int(values.min()))
    hist.max_value = max(hist.max_value, int(values.max()))


def from_values(values_us: Sequence[int] | np.ndarray) -> HdrHistogram:
    hist = new_histogram()
    record_many(hist, values_us)
    return hist


def encode(hist: HdrHistogram) -> str:
    """HdrHistogram's compressed, base64-wrapped encoding as text."""
    raw = hist.encode()
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def decode(text: str) -> HdrHistogram:
    """The inverse of :func:`encode`, always into the engine's shape so histograms add."""
    hist = new_histogram()
    if text:
        hist.decode_and_add(text)
    return hist


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    total = new_histogram()
    for hist in histograms:
        if hist.get_total_count():
            total.add(hist)
    return total


def percentiles_s(hist: HdrHistogram, wanted: Sequence[float]) -> dict[float, float | None]:
    """Percentiles in seconds (None for an empty histogram), in one pass over the counts."""
    if hist.get_total_count() == 0:
        return dict.fromkeys(wanted)
    values = hist.get_percentile_to_value_dict(list(wanted))
    return {p: float(values[p]) / 1_000_000 for p in wanted}


def percentiles_ms(hist: HdrHistogram, wanted: Sequence[float]) -> list[float | None]:
    """The values (ms) at ``wanted`` percentiles; None for each when the histogram is empty.

    Exactly HdrHistogram's ``get_value_at_percentile`` (same target count, same bucket,
    same highest equivalent value), but with the counts viewed as a numpy array and one
    binary search per percentile: the library walks its 23,552 buckets in Python, ~16 ms
    a call, which made a long run's per-second series take minutes.
    """
    if hist.get_total_count() == 0:
        return [None] * len(wanted)
    cumulative = np.cumsum(np.ctypeslib.as_array(hist.counts))
    out: list[float | None] = []
    for percentile in wanted:
        target = hist.get_target_count_at_percentile(percentile)
        index = int(np.searchsorted(cumulative, target, side="left"))
        if index >= hist.counts_len:
            out.append(0.0)
            continue
        value = hist.get_value_from_index(index)
        if percentile:
            value = hist.get_highest_equivalent_value(value)
        else:
            value = hist.get_lowest_equivalent_value(value)
        out.append(float(value) / 1000.0)
    return out


def count_above(hist: HdrHistogram, threshold_us: float) -> int:
    """How many recorded values are above ``threshold_us`` (at histogram resolution)."""
    total = int(hist.get_total_count())
    if total == 0:
        return 0
    index = hist.get_counts_array_index(int(threshold_us))
    if index >= hist.counts_len:
        return 0
    at_or_below = int(np.ctypeslib.as_array(hist.counts)[: index + 1].sum())
    return max(0, total - at_or_below)


# -- the compact form -------------------------------------------------------------------
#
# A dense histogram of this shape is 23,552 int64 counters (184 KiB) whatever it holds; a
# second of 1,000 requests fills a few hundred of them. ``Histogram`` keeps only the
# non-empty buckets (sorted bucket indexes and their counts): what the run directory's
# reader, the analysis and the recorder hold, sized to its content. Bucket indexes, values
# and percentiles are exactly HdrHistogram's (tests/unit/test_histogram.py compares them).

COUNTS_LEN = 23_552
"""Buckets of the one shape (``new_histogram().counts_len``)."""
_HALF_MAGNITUDE = 10
_HALF_COUNT = 1 << _HALF_MAGNITUDE
_SUB_BUCKET_MASK = (2 * _HALF_COUNT - 1) << 0  # unit magnitude 0 (LOWEST_US = 1)
_INDEX_DTYPE = np.uint16
_V2_COMPRESSION_COOKIE_BASE = 0x1C849304
_V2_ENCODING_COOKIE_BASE = 0x1C849303
_EXTERNAL_HEADER = struct.Struct(">II")
_PAYLOAD_HEADER = struct.Struct(">IIIIQQd")


def _bucket_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per bucket index: the lowest and the highest value it holds (HdrHistogram's
    ``get_value_from_index`` and ``get_highest_equivalent_value`` of it)."""
    index = np.arange(COUNTS_LEN, dtype=np.int64)
    bucket = (index >> _HALF_MAGNITUDE) - 1
    sub_bucket = (index & (_HALF_COUNT - 1)) + _HALF_COUNT
    first = bucket < 0
    sub_bucket[first] -= _HALF_COUNT
    bucket[first] = 0
    low = sub_bucket << bucket
    return low, low + (np.int64(1) << bucket) - 1


_LOW, _HIGH = _bucket_tables()


def lowest_equivalent_us(value_us: int) -> int:
    """The lowest value of ``value_us``'s bucket (``get_lowest_equivalent_value``)."""
    return int(_LOW[min(index_of(value_us), COUNTS_LEN - 1)])


def index_of(value_us: int) -> int:
    """The bucket index of one value (``HdrHistogram.get_counts_array_index``)."""
    value = max(0, int(value_us))
    bucket = (value | _SUB_BUCKET_MASK).bit_length() - (_HALF_MAGNITUDE + 1)
    sub_bucket = value >> bucket
    return ((bucket + 1) << _HALF_MAGNITUDE) + sub_bucket - _HALF_COUNT


def _indexes(values_us: np.ndarray) -> np.ndarray:
    values = np.clip(values_us.astype(np.int64, copy=False), 0, HIGHEST_US)
    _, bit_length = np.frexp((values | _SUB_BUCKET_MASK).astype(np.float64))
    bucket = bit_length.astype(np.int64) - (_HALF_MAGNITUDE + 1)
    return ((bucket + 1) << _HALF_MAGNITUDE) + (values >> bucket) - _HALF_COUNT


class Histogram:
    """A latency histogram of the one shape holding only its non-empty buckets.

    ``index``: the bucket indexes in increasing order; ``counts``: their counts (> 0).
    Immutable by convention (the arrays may be views into a larger store); every
    operation returns a new one. Merging many goes through one dense array
    (:func:`merge_all`), never a dense histogram per input.
    """

    __slots__ = ("counts", "index", "total")

    def __init__(self, index: np.ndarray, counts: np.ndarray, total: int | None = None) -> None:
        self.index = index
        self.counts = counts
        self.total = int(counts.sum()) if total is None else total

    # -- making one ----------------------------------------------------------------------

    @classmethod
    def empty(cls) -> Histogram:
        return cls(np.zeros(0, _INDEX_DTYPE), np.zeros(0, np.int64), 0)

    @classmethod
    def from_dense(cls, counts: np.ndarray) -> Histogram:
        """From a dense counts array of the shape (any integer dtype)."""
        index = np.flatnonzero(counts)
        return cls(index.astype(_INDEX_DTYPE), counts[index].astype(np.int64))

    @classmethod
    def from_values(cls, values_us: Sequence[int] | np.ndarray) -> Histogram:
        """Microsecond values; the same buckets as ``HdrHistogram.record_value`` each."""
        if len(values_us) == 0:
            return cls.empty()
        index, counts = np.unique(_indexes(np.asarray(values_us)), return_counts=True)
        return cls(index.astype(_INDEX_DTYPE), counts.astype(np.int64), len(values_us))

    @classmethod
    def from_hdr(cls, hdr: HdrHistogram) -> Histogram:
        """From a dense HdrHistogram of the one shape."""
        if hdr.counts_len != COUNTS_LEN or hdr.lowest_trackable_value != LOWEST_US:
            raise ValueError("not a histogram of the engine's shape (1 us .. 1 h, 3 digits)")
        return cls.from_dense(np.ctypeslib.as_array(hdr.counts))

    @classmethod
    def decode(cls, text: str) -> Histogram:
        """HdrHistogram's compressed V2 encoding (``HISTF...``), decoded with numpy.

        The counts are decoded by hdrh's C decoder into a per-thread scratch array of the
        shape, from which only the non-empty buckets are kept; an encoding of another
        shape goes through hdrh's dense decode and is re-bucketed by value."""
        if not text:
            return cls.empty()
        raw = base64.b64decode(text)
        cookie, length = _EXTERNAL_HEADER.unpack_from(raw)
        if cookie & ~0xF0 != _V2_COMPRESSION_COOKIE_BASE or length != len(raw) - 8:
            raise ValueError("not an HdrHistogram V2 compressed encoding")
        data = zlib.decompress(raw[8:])
        cookie, _length, offset, digits, lowest, highest, _ = _PAYLOAD_HEADER.unpack_from(data)
        if cookie & ~0xF0 != _V2_ENCODING_COOKIE_BASE:
            raise ValueError("not an HdrHistogram V2 payload")
        if (digits, lowest, highest, offset) != (DIGITS, LOWEST_US, HIGHEST_US, 0):
            return cls._decode_slowly(text)
        index, counts = decode_counts(data)
        return cls(index, counts)

    @classmethod
    def _decode_slowly(cls, text: str) -> Histogram:
        other = HdrHistogram.decode(text)
        counts = np.ctypeslib.as_array(other.counts)
        dense = np.zeros(COUNTS_LEN, np.int64)
        for i in np.flatnonzero(counts):
            value = min(int(other.get_value_from_index(int(i))), HIGHEST_US)
            dense[index_of(value)] += int(counts[i])
        return cls.from_dense(dense)

    # -- reading it ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return bool(
            np.array_equal(self.index, other.index) and np.array_equal(self.counts, other.counts)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: equal, not hashable

    def __repr__(self) -> str:
        return f"Histogram(total={self.total}, buckets={len(self.index)})"

    @property
    def max_us(self) -> int:
        """HdrHistogram's ``get_max_value``: the highest value of the top bucket (0 empty)."""
        return int(_HIGH[self.index[-1]]) if len(self.index) else 0

    @property
    def max_ms(self) -> float | None:
        return self.max_us / 1000.0 if self.total else None

    @property
    def min_us(self) -> int:
        return int(_LOW[self.index[0]]) if len(self.index) else 0

    def highest_values_us(self) -> np.ndarray:
        """Per non-empty bucket, the highest value it holds (HdrHistogram's recorded
        iterator's ``value_iterated_to``)."""
        values: np.ndarray = _HIGH[self.index]
        return values

    def percentiles_ms(self, wanted: Sequence[float]) -> list[float | None]:
        """The values (ms) at ``wanted`` percentiles; None for each when empty.

        Exactly HdrHistogram's ``get_value_at_percentile`` (same target count, same
        bucket, the highest equivalent value; the lowest for the 0th)."""
        if self.total == 0:
            return [None] * len(wanted)
        cumulative = np.cumsum(self.counts)
        out: list[float | None] = []
        for percentile in wanted:
            target = max(int(min(percentile, 100.0) * self.total / 100 + 0.5), 1)
            at = int(np.searchsorted(cumulative, target, side="left"))
            if at >= len(self.index):
                out.append(0.0)
                continue
            table = _HIGH if percentile else _LOW
            out.append(float(table[self.index[at]]) / 1000.0)
        return out

    def percentiles_s(self, wanted: Sequence[float]) -> dict[float, float | None]:
        """Percentiles in seconds (None for an empty histogram)."""
        values = self.percentiles_ms(wanted)
        return {p: None if v is None else v / 1000.0 for p, v in zip(wanted, values, strict=True)}

    def count_above(self, threshold_us: float) -> int:
        """How many recorded values are above ``threshold_us`` (at histogram resolution)."""
        if self.total == 0:
            return 0
        bucket = index_of(int(threshold_us))
        if bucket >= COUNTS_LEN:
            return 0
        at = int(np.searchsorted(self.index, bucket, side="right"))
        return int(self.counts[at:].sum())

    # -- combining and writing -------------------------------------------------------------

    def __add__(self, other: Histogram) -> Histogram:
        return merge_all((self, other))

    def dense(self) -> np.ndarray:
        out = np.zeros(COUNTS_LEN, np.int64)
        out[self.index] = self.counts
        return out

    def to_hdr(self) -> HdrHistogram:
        """A dense HdrHistogram holding the same counts (for its encoder)."""
        hdr = new_histogram()
        if self.total:
            np.ctypeslib.as_array(hdr.counts)[self.index] = self.counts
            hdr.total_count = self.total
            hdr.min_value = self.min_us
            hdr.max_value = self.max_us
        return hdr

    def encode(self) -> str:
        """HdrHistogram's compressed, base64-wrapped V2 encoding, the same text hdrh writes
        (hdrh's C varint encoder over the per-thread scratch array: no dense histogram)."""
        length = int(self.index[-1]) + 1 if len(self.index) else 0
        scratch = _SCRATCH.counts
        buffer = np.empty(max(1, length * 9), np.uint8)
        scratch[self.index] = self.counts
        try:
            used = _encode_varints(scratch.ctypes.data, length, 8, buffer.ctypes.data, len(buffer))
        finally:
            scratch[self.index] = 0
        header = _PAYLOAD_HEADER.pack(
            _V2_ENCODING_COOKIE_BASE | 0x10, used, 0, DIGITS, LOWEST_US, HIGHEST_US, 1.0
        )
        compressed = zlib.compress(header + buffer[:used].tobytes())
        wrapped = _EXTERNAL_HEADER.pack(_V2_COMPRESSION_COOKIE_BASE | 0x10, len(compressed))
        return base64.b64encode(wrapped + compressed).decode("ascii")


def as_histogram(histogram: Histogram | HdrHistogram) -> Histogram:
    """``histogram`` as the compact form (a dense HdrHistogram of the shape is converted)."""
    return histogram if isinstance(histogram, Histogram) else Histogram.from_hdr(histogram)


class _Scratch(threading.local):
    """A dense counts array per thread for the C decoder; left all zero between uses."""

    def __init__(self) -> None:
        self.counts = np.zeros(COUNTS_LEN, np.int64)


_SCRATCH = _Scratch()


def decode_counts(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The non-empty buckets (uint16 indexes, int64 counts) of a decompressed V2 payload
    of the one shape."""
    scratch = _SCRATCH.counts
    try:
        found = _decode_varints(
            payload, _PAYLOAD_HEADER.size, scratch.ctypes.data, COUNTS_LEN, scratch.itemsize
        )
    except Exception:
        scratch[:] = 0
        raise
    if not found["total"]:
        return np.zeros(0, _INDEX_DTYPE), np.zeros(0, np.int64)
    low, high = int(found["min_nonzero_index"]), int(found["max_nonzero_index"])
    index = np.flatnonzero(scratch[low : high + 1])
    index += low
    counts = scratch[index]  # a copy (fancy indexing)
    scratch[index] = 0
    return index.astype(_INDEX_DTYPE), counts


def merge_all(histograms: Iterable[Histogram | None]) -> Histogram:
    """One histogram holding every input's counts; inputs are never changed.

    One input is returned as it is; more are summed in one dense array of the shape (184
    KiB, whatever their number), in chunks so the work is a few vectorised calls."""
    items = [h for h in histograms if h is not None and h.total]
    if not items:
        return Histogram.empty()
    if len(items) == 1:
        return items[0]
    dense = np.zeros(COUNTS_LEN, np.int64)
    total = 0
    for chunk_start in range(0, len(items), 256):
        chunk = items[chunk_start : chunk_start + 256]
        index = np.concatenate([h.index for h in chunk])
        counts = np.concatenate([h.counts for h in chunk])
        np.add.at(dense, index, counts)
        total += sum(h.total for h in chunk)
    used = np.flatnonzero(dense)
    return Histogram(used.astype(_INDEX_DTYPE), dense[used], total)


def row_percentiles(
    index: np.ndarray,
    cumulative: np.ndarray,
    starts: np.ndarray,
    totals: np.ndarray,
    wanted: Sequence[float],
) -> dict[float, np.ndarray]:
    """Percentiles (ms) of many histograms stored one after another in flat arrays.

    ``index`` holds every histogram's bucket indexes, ``cumulative`` the running sum of
    their counts over the whole array (every count > 0, so it strictly increases);
    histogram ``r`` starts at ``starts[r]`` and holds ``totals[r]`` values. Per percentile,
    one array with a value per histogram (NaN where it is empty): exactly
    :meth:`Histogram.percentiles_ms` of each, in a few vectorised steps for all of them."""
    out: dict[float, np.ndarray] = {}
    filled = totals > 0
    before = np.zeros(len(starts), np.int64)
    inner = filled & (starts > 0)
    before[inner] = cumulative[starts[inner] - 1]
    for percentile in wanted:
        target = np.floor(min(percentile, 100.0) * totals / 100 + 0.5).astype(np.int64)
        target = np.maximum(target, 1)
        values = np.full(len(starts), np.nan)
        if filled.any():
            at = np.searchsorted(cumulative, before[filled] + target[filled], side="left")
            table = _HIGH if percentile else _LOW
            values[filled] = table[index[at]] / 1000.0
        out[percentile] = values
    return out


def corrected_for_omission(
    histogram: Histogram, interval_us: int, *, cap: int = 20_000_000
) -> tuple[Histogram, int]:
    """``histogram`` with what coordinated omission hid put back, and how many values that is.

    A closed-model user waits for each answer before its next request, so a request that
    took ``v`` > ``interval_us`` (the user's usual time between two sends) kept
    ``floor(v / interval) - 1`` requests from being sent; had they been sent on time they
    would have measured ``v - interval``, ``v - 2 * interval``, ... This adds those values
    (HdrHistogram's ``recordValueWithExpectedInterval``, applied afterwards, each bucket
    taken at its middle), at most ``cap`` of them. Returns a new histogram and the number
    added."""
    if interval_us <= 0 or histogram.total == 0:
        return histogram, 0
    index = histogram.index.astype(np.int64)
    middles = (_LOW[index] + _HIGH[index] + 1) // 2
    dense = np.zeros(COUNTS_LEN, np.int64)
    added = 0
    for middle, count in zip(middles.tolist(), histogram.counts.tolist(), strict=True):
        missing = middle // interval_us - 1
        per_count = min(missing, max(0, cap - added) // count) if count else 0
        if per_count <= 0:
            continue
        values = middle - interval_us * np.arange(1, per_count + 1, dtype=np.int64)
        np.add.at(dense, _indexes(values), count)
        added += per_count * count
    if not added:
        return histogram, 0
    return histogram + Histogram.from_dense(dense), added
