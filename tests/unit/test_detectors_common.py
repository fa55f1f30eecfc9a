"""Shared detector helpers: the numpy percentile and the explaining span of a request."""

from __future__ import annotations

import random
from pathlib import Path

from resilience.analysis.detectors._common import explain, percentile_ms
from resilience.histogram import as_histogram
from resilience.testing.analysis import (
    LOAD_SPAN_ID,
    LoadBuilder,
    TraceBuilder,
    fault_phases,
    histogram,
    make_context,
    ref,
    shop_experiment,
    shop_trace,
)


def test_percentile_matches_hdrh() -> None:
    """percentile_ms gives hdrh's own get_value_at_percentile, on skewed random data."""
    rng = random.Random(7)
    for _ in range(30):
        values = [rng.lognormvariate(2, 1.5) for _ in range(rng.randint(1, 300))]
        hist = histogram(values)
        for p in (50, 95, 99, 100):
            expected = hist.get_value_at_percentile(p) / 1000.0
            assert percentile_ms(as_histogram(hist), p) == expected


def test_explanations_in_order_of_strength(tmp_path: Path) -> None:
    """A pool wait explains before a server gap, and a late entry span when nothing else does."""
    waited = shop_trace("GET /catalog/items", 11.0, 3.0, pool_wait=2.5, callee=False)
    gap = shop_trace("GET /catalog/items", 12.0, 3.0, callee=False)
    b = TraceBuilder()
    b.add("shop-gateway", "GET /catalog/items", 14.0, 14.01, kind="server", parent=LOAD_SPAN_ID)
    late = b.build()
    healthy = shop_trace("GET /catalog/items", 20.0)
    ctx = make_context(
        shop_experiment(),
        LoadBuilder().view,
        fault_phases(end=38, fault=(10, 22)),
        run_dir=tmp_path,
        traces=[waited, gap, late, healthy],
    )
    by_wait = explain(ctx, ref(waited, "GET /catalog/items", 11.0, latency=3.0))
    assert by_wait is not None and by_wait.kind == "wait"
    assert by_wait.span["reason"].startswith("waited 2500 ms for pool 'shared' (size 10)")
    by_gap = explain(ctx, ref(gap, "GET /catalog/items", 12.0, latency=3.0))
    assert by_gap is not None and by_gap.kind == "server_gap"
    by_entry = explain(ctx, ref(late, "GET /catalog/items", 12.0, latency=2.01))
    assert by_entry is not None and by_entry.kind == "late_entry"
    assert "2.00 s after the client sent" in by_entry.span["reason"]
    assert explain(ctx, ref(healthy, "GET /catalog/items", 20.0)) is None
