"""The compact histogram: the same buckets, percentiles, maxima and encoding as HdrHistogram."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import histogram as hist
from resilience.histogram import COUNTS_LEN, Histogram, index_of, merge_all

PERCENTILES = (0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0)

values_us = st.lists(st.integers(min_value=0, max_value=2 * hist.HIGHEST_US), max_size=400)


def _dense(values: list[int]) -> Any:  # a dense HdrHistogram (hdrh is untyped)
    return hist.from_values(values)


@settings(max_examples=200, deadline=None)
@given(values_us)
def test_same_numbers_as_hdrhistogram(values: list[int]) -> None:
    """Percentiles, max and counts above a threshold equal HdrHistogram's for any values."""
    dense = _dense(values)
    compact = Histogram.from_values(values)
    assert compact.total == dense.get_total_count() == len(values)
    assert compact.percentiles_ms(PERCENTILES) == hist.percentiles_ms(dense, PERCENTILES)
    assert compact.max_us == (dense.get_max_value() if values else 0)
    for threshold in (0, 1, 999, 250_000.5, 10**9):
        assert compact.count_above(threshold) == hist.count_above(dense, threshold)


@settings(max_examples=100, deadline=None)
@given(values_us)
def test_encoding_round_trips_both_ways(values: list[int]) -> None:
    """hdrh's encoding decodes to the same compact histogram, and ours decodes in hdrh."""
    dense = _dense(values)
    compact = Histogram.decode(hist.encode(dense))
    assert compact == Histogram.from_values(values) == Histogram.from_hdr(dense)
    assert compact.encode() == hist.encode(dense)  # the very same text
    again = hist.decode(compact.encode())
    assert again.get_total_count() == len(values)
    assert Histogram.from_hdr(again) == compact


def test_bucket_tables_and_index_are_hdrhistograms() -> None:
    """Every bucket's lowest and highest value, and a value's bucket, are hdrh's."""
    dense = hist.new_histogram()
    assert dense.counts_len == COUNTS_LEN
    low = np.array([dense.get_value_from_index(i) for i in range(COUNTS_LEN)])
    high = np.array([dense.get_highest_equivalent_value(v) for v in low])
    assert np.array_equal(hist._LOW, low)
    assert np.array_equal(hist._HIGH, high)
    rng = np.random.default_rng(3)
    for value in [*range(5000), *rng.integers(0, hist.HIGHEST_US, 5000).tolist()]:
        assert index_of(value) == dense.get_counts_array_index(value)


def test_merge_sums_without_touching_its_inputs() -> None:
    """merge_all adds counts; its inputs keep theirs; one input comes back as it is."""
    a = Histogram.from_values([1_000, 2_000, 3_000])
    b = Histogram.from_values([2_000, 9_000_000])
    merged = merge_all([a, None, Histogram.empty(), b])
    assert merged == Histogram.from_values([1_000, 2_000, 3_000, 2_000, 9_000_000])
    assert a.total == 3 and b.total == 2
    assert merge_all([a]) is a
    assert merge_all([]).total == 0 and merge_all([]).percentiles_ms([50.0]) == [None]
    many = merge_all(Histogram.from_values([i * 10]) for i in range(1, 1001))
    assert many.total == 1000


def test_another_shape_is_rebucketed_by_value() -> None:
    """A histogram of another shape (ms, 2 digits) decodes into ours by value."""
    from hdrh.histogram import HdrHistogram

    other = HdrHistogram(1, 10_000_000, 2)
    for value in (5, 500, 50_000):
        other.record_value(value)
    compact = Histogram.decode(other.encode().decode())
    assert compact.total == 3
    assert compact.max_us == pytest.approx(50_000, rel=0.01)


def test_bad_text_is_refused() -> None:
    """Text that is not an HdrHistogram encoding raises ValueError (the reader skips it)."""
    with pytest.raises(ValueError, match="not an HdrHistogram"):
        Histogram.decode("SGVsbG8gd29ybGQh")
