"""Latency histograms as the load engine records and ships them: one HdrHistogram shape.

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
