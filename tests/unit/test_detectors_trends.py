"""latency_trend and memory_growth: Mann-Kendall with Theil-Sen on long runs, silence on short."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.base import Finding
from resilience.analysis.detectors.latency_trend import LatencyTrendDetector
from resilience.analysis.detectors.memory_growth import SHOP_MEMORY, MemoryGrowthDetector
from resilience.observe.prometheus import Series
from resilience.testing.analysis import T0, LoadBuilder, fault_phases, make_context, shop_experiment
from resilience.testing.observe_fakes import FakePrometheusSource

ITEMS = "GET /catalog/items"
LONG = 600
MB = 1024 * 1024


def latency_run(
    level_ms: Callable[[int], float], seconds: int = LONG, seed: int = 1
) -> LoadBuilder:
    rng = random.Random(seed)
    load = LoadBuilder()
    for s in range(seconds):
        load.add(ITEMS, [s], ok=10, latency_ms=level_ms(s) * rng.uniform(0.8, 1.2))
    return load


def context(
    tmp_path: Path,
    load: LoadBuilder,
    seconds: int = LONG,
    *,
    prometheus: FakePrometheusSource | None = None,
    builtin: bool = True,
    extra: str = "",
) -> AnalysisContext:
    return make_context(
        shop_experiment(extra, fault=False),
        load.view,
        fault_phases(end=seconds),
        run_dir=tmp_path,
        prometheus=prometheus,
        builtin_shop=builtin,
    )


def test_rising_p95_is_a_latency_trend(tmp_path: Path) -> None:
    """p95 climbing from 50 ms to about 290 ms over ten minutes is a trend finding."""
    load = latency_run(lambda s: 50 + 0.4 * s)
    [finding] = LatencyTrendDetector().detect(context(tmp_path, load))
    numbers = finding.evidence["numbers"]
    assert numbers["growth ms"] > 150
    assert numbers["mann-kendall p"] < 0.001
    assert 1000 < numbers["slope ms per hour"] < 2000  # 0.4 ms/s = 1440 ms/h
    assert finding.evidence["seconds"][-1] >= 500
    assert finding.severity == "warning" and not finding.fails_run


def held(findings: list[Finding]) -> Finding:
    """The one finding, which must say the run held (info, never failing)."""
    [finding] = findings
    assert (finding.status, finding.severity, finding.fails_run) == ("held", "info", False)
    return finding


def test_flat_noisy_latency_is_no_trend(tmp_path: Path) -> None:
    """A flat p95 with ±20 % noise: no trend, said with its numbers (an endurance run's
    question answered, not left to silence)."""
    finding = held(LatencyTrendDetector().detect(context(tmp_path, latency_run(lambda s: 80))))
    assert finding.summary.startswith("No latency trend over ")
    assert 60 < finding.evidence["numbers"]["start ms"] < 100
    assert 60 < finding.evidence["numbers"]["end ms"] < 100


def test_tiny_drift_is_below_the_practical_floor(tmp_path: Path) -> None:
    """A significant but small drift (80 to 92 ms) is under the 50 ms / 20 % floor."""
    load = latency_run(lambda s: 80 + 0.02 * s)
    finding = held(LatencyTrendDetector().detect(context(tmp_path, load)))
    assert 5 < finding.evidence["numbers"]["growth ms"] < 50


def test_ramp_up_is_excluded_by_the_warm_up(tmp_path: Path) -> None:
    """Low latency while users spawn (first 40 s), then flat: the warm-up hides the ramp."""
    load = latency_run(lambda s: 10 + s if s < 40 else 80)
    held(LatencyTrendDetector().detect(context(tmp_path, load)))


def test_short_runs_get_no_trend_finding(tmp_path: Path) -> None:
    """A smoke run (38 s) is too short: the detector does not apply and says nothing."""
    load = latency_run(lambda s: 50 + 10 * s, seconds=38)
    ctx = context(tmp_path, load, 38)
    assert not LatencyTrendDetector().applies(ctx)
    assert LatencyTrendDetector().detect(ctx) == []


def memory(job: str, start_mb: float, growth_mb: float, seconds: int = LONG) -> Series:
    rng = random.Random(job)
    return Series(
        {"__name__": "process_resident_memory_bytes", "job": job, "instance": f"{job}:1"},
        [
            (T0 + s, (start_mb + growth_mb * s / seconds + rng.uniform(-1, 1)) * MB)
            for s in range(0, seconds, 10)
        ],
    )


def test_growing_resident_memory_is_found(tmp_path: Path) -> None:
    """orders growing 100 MB over the run is a finding; a flat gateway is not named."""
    source = FakePrometheusSource(
        {SHOP_MEMORY: [memory("orders", 80, 100), memory("gateway", 60, 0)]}
    )
    ctx = context(tmp_path, LoadBuilder(), prometheus=source)
    [finding] = MemoryGrowthDetector().detect(ctx)
    assert finding.evidence["processes"] == ["orders"]
    assert 90 < finding.evidence["numbers"]["orders growth MB"] < 110
    [ref] = finding.evidence["series"]
    assert ref["promql"] == SHOP_MEMORY
    saved = json.loads((tmp_path / "prometheus" / ref["file"]).read_text())
    assert len(saved["series"]) == 2


def test_flat_memory_is_held_with_its_levels(tmp_path: Path) -> None:
    """Memory flat within noise: no growth, said with each process's levels."""
    source = FakePrometheusSource(
        {SHOP_MEMORY: [memory("orders", 80, 0), memory("gateway", 60, 5)]}
    )
    ctx = context(tmp_path, LoadBuilder(), prometheus=source)
    finding = held(MemoryGrowthDetector().detect(ctx))
    assert finding.summary.startswith("No memory growth over ")
    assert "orders 80 to 80 MB" in finding.summary
    assert finding.evidence["processes"] == ["orders", "gateway"]
    assert finding.evidence["series"][0]["promql"] == SHOP_MEMORY


def test_memory_needs_a_long_run_and_a_query(tmp_path: Path) -> None:
    """Short runs, and other targets without memory_promql, are not judged at all."""
    source = FakePrometheusSource({SHOP_MEMORY: [memory("orders", 80, 100)]})
    short = context(tmp_path, LoadBuilder(), 38, prometheus=source)
    assert not MemoryGrowthDetector().applies(short)
    other = context(tmp_path, LoadBuilder(), prometheus=source, builtin=False)
    assert not MemoryGrowthDetector().applies(other)
    named = context(
        tmp_path,
        LoadBuilder(),
        prometheus=FakePrometheusSource({"app_rss": [memory("app", 50, 200)]}),
        builtin=False,
        extra="detectors: {memory_growth: {params: {memory_promql: app_rss}}}\n",
    )
    [finding] = MemoryGrowthDetector().detect(named)
    assert finding.evidence["processes"] == ["app"]


def test_no_memory_series_on_a_long_run_is_not_evaluated(tmp_path: Path) -> None:
    """A long run whose memory query returns nothing says so instead of staying silent."""
    ctx = context(tmp_path, LoadBuilder(), prometheus=FakePrometheusSource())
    [finding] = MemoryGrowthDetector().detect(ctx)
    assert finding.status == "not_evaluated"
    assert SHOP_MEMORY in finding.summary


def spike_context(tmp_path: Path, source: FakePrometheusSource) -> AnalysisContext:
    """A 900 s run with a fault from 300 s to 420 s (a spike is judged alike)."""
    return make_context(
        shop_experiment(),
        LoadBuilder().view,
        fault_phases(end=900, fault=(300, 420)),
        run_dir=tmp_path,
        prometheus=source,
        builtin_shop=True,
    )


def stepped_memory(job: str, after: Callable[[int], float]) -> Series:
    """78 MB until the stress, up to 122 MB in it, then ``after(s)`` MB."""
    rng = random.Random(job)

    def level(s: int) -> float:
        if s < 300:
            return 78.0
        if s < 420:
            return 78.0 + 44.0 * (s - 300) / 120
        return after(s)

    return Series(
        {"__name__": "process_resident_memory_bytes", "job": job, "instance": f"{job}:1"},
        [(T0 + s, (level(s) + rng.uniform(-0.5, 0.5)) * MB) for s in range(0, 900, 10)],
    )


def test_memory_that_steps_up_under_stress_and_stays_level_is_a_step(tmp_path: Path) -> None:
    """The full spike run's gateway: 78 MB, 122 MB at the spike's peak, 112 MB flat for the
    8 minutes after. Mann-Kendall over the whole run calls that growth; over the recovery
    it is level: an info finding that says step, with the three levels."""
    source = FakePrometheusSource({SHOP_MEMORY: [stepped_memory("gateway", lambda s: 112.0)]})
    [finding] = MemoryGrowthDetector().detect(spike_context(tmp_path, source))
    assert finding.severity == "info"
    assert finding.summary.startswith("Memory stepped up in the fault and stayed level")
    levels = finding.evidence["stepped"]["gateway"]
    assert levels["before MB"] == pytest.approx(78, abs=1)
    assert 117 <= levels["peak MB"] <= 123  # the last sample in the stress, at 410 s
    assert 111 <= levels["recovery min MB"] <= levels["recovery max MB"] <= 113


def test_memory_still_rising_after_the_stress_is_growth(tmp_path: Path) -> None:
    """Up in the fault and still climbing (about 40 MB more) over the recovery: the
    detector's warning, not a step."""
    source = FakePrometheusSource(
        {SHOP_MEMORY: [stepped_memory("gateway", lambda s: 122.0 + 40.0 * (s - 420) / 480)]}
    )
    [finding] = MemoryGrowthDetector().detect(spike_context(tmp_path, source))
    assert finding.severity == "warning"
    assert finding.summary.startswith("Memory growth: gateway")
    assert "stepped" not in finding.evidence
