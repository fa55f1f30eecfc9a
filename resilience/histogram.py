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

from collections.abc import Iterable, Sequence

import numpy as np
from hdrh.histogram import HdrHistogram

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
