"""Fast percentiles (analysis.data) and SVG helpers: the same numbers as HdrHistogram, charts that hold up."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.histogram import new_histogram, percentiles_ms
from resilience.report import svg


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=60_000_000), min_size=1, max_size=200),
    st.sampled_from([0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]),
)
def test_percentiles_match_hdrhistogram(values: list[int], percentile: float) -> None:
    """The numpy percentile is exactly HdrHistogram's get_value_at_percentile."""
    hist = new_histogram()
    for value in values:
        hist.record_value(value)
    (ours,) = percentiles_ms(hist, [percentile])
    assert ours == hist.get_value_at_percentile(percentile) / 1000.0


def test_empty_histogram_has_no_percentiles() -> None:
    """An empty histogram gives None, not 0."""
    assert percentiles_ms(new_histogram(), [50.0, 99.0]) == [None, None]


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    """Ticks step by 1, 2, 2.5 or 5 times a power of ten and stay inside the range."""
    assert svg.nice_ticks(0, 45, 10) == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert svg.nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = svg.nice_ticks(3.3, 7287.0, 8)
    assert ticks[0] >= 3.3
    assert ticks[-1] <= 7287.0
    assert len(ticks) <= 12
    assert svg.nice_ticks(5, 5) == [5]


def test_downsample_keeps_peaks() -> None:
    """Long series are bucketed to at most the limit, each bucket keeping its maximum."""
    points: list[tuple[float, float | None]] = [(float(i), 1.0) for i in range(10_000)]
    points[4321] = (4321.0, 99.0)
    reduced = svg.downsample(points, limit=1000)
    assert len(reduced) <= 1000
    assert max(v for _, v in reduced if v is not None) == 99.0


def test_line_chart_gaps_and_log_scale() -> None:
    """None values break the line; log scale accepts values spanning decades."""
    chart = svg.line_chart(
        svg.LineChart(
            chart_id="c",
            title="t <&>",
            y_label="ms",
            x_range=(0.0, 10.0),
            lines=[svg.Line("p95", "#000", [(0, 5.0), (1, None), (2, 5000.0), (3, 20.0)])],
            windows=[svg.Window(2.0, 4.0, "fault")],
            log_y=True,
        )
    )
    root = ET.fromstring(chart)
    (path,) = [p for p in root.iter("path") if p.get("class") == "series"]
    assert path.get("d", "").count("M") == 2
    assert root.findtext("title") == "t <&>"
    assert [r for r in root.iter("rect") if r.get("class") == "fault-window"]


def test_waterfall_truncates_long_traces() -> None:
    """A trace with more spans than the row limit is drawn partially and says so."""
    bars = [svg.Bar(f"svc: op {i}", "svc", float(i), 1.0) for i in range(500)]
    root = ET.fromstring(svg.waterfall("w", "trace", bars))
    drawn = [r for r in root.iter("rect") if "span-bar" in (r.get("class") or "")]
    assert len(drawn) == svg.WATERFALL_MAX_ROWS
    assert any("more spans not drawn" in (t.text or "") for t in root.iter("text"))


@pytest.mark.parametrize(
    ("seconds", "budget", "recovered", "label"),
    [
        (3.0, 10.0, True, "3.0 s"),
        (None, 10.0, False, "not recovered"),
        (12.0, None, True, "12.0 s"),
    ],
)
def test_budget_bar(
    seconds: float | None, budget: float | None, recovered: bool, label: str
) -> None:
    """The recovery bar states the time or that the target never recovered."""
    root = ET.fromstring(svg.budget_bar("b", seconds, budget, recovered))
    assert label in [t.text for t in root.iter("text")]
