"""phase_comparison: Mann-Whitney per endpoint, one inconclusive summary for short phases."""

from __future__ import annotations

import random
from pathlib import Path

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.phase_comparison import PhaseComparisonDetector
from resilience.testing.analysis import LoadBuilder, fault_phases, make_context, shop_experiment
from resilience.vocabulary import Phase

ITEMS = "GET /catalog/items"
POST = "POST /orders"
LONG = fault_phases(end=100, fault=(35, 70))


def noisy(load: LoadBuilder, endpoint: str, seconds: range, latency_ms: float, seed: int) -> None:
    rng = random.Random(seed)
    for s in seconds:
        load.add(endpoint, [s], ok=10, latency_ms=latency_ms * rng.uniform(0.8, 1.2))


def context(
    tmp_path: Path, load: LoadBuilder, phases: list[Phase], *, fault: bool = True
) -> AnalysisContext:
    return make_context(shop_experiment(fault=fault), load.view, phases, run_dir=tmp_path)


def test_short_phases_give_one_inconclusive_summary(tmp_path: Path) -> None:
    """A smoke run (10 s baseline) is one info finding saying samples are too few."""
    load = LoadBuilder().add(ITEMS, range(38)).add(POST, range(38))
    [finding] = PhaseComparisonDetector().detect(
        context(tmp_path, load, fault_phases(end=38, fault=(10, 22)))
    )
    assert finding.status == "inconclusive"
    assert finding.severity == "info" and not finding.fails_run
    assert finding.evidence["numbers"][f"{ITEMS} baseline samples"] == 10
    assert "the shortest phase has 10" in finding.summary


def test_slower_endpoint_in_the_fault_is_reported(tmp_path: Path) -> None:
    """The catalog three times slower during the fault is 'higher' on p95; orders unchanged."""
    load = LoadBuilder()
    noisy(load, ITEMS, range(35), 10, 1)
    noisy(load, ITEMS, range(35, 70), 30, 2)
    noisy(load, ITEMS, range(70, 100), 10, 3)
    noisy(load, POST, range(100), 20, 4)
    [finding] = PhaseComparisonDetector().detect(context(tmp_path, load, LONG))
    assert finding.status == "found"
    assert finding.evidence["endpoints"] == [ITEMS]
    comparison = finding.evidence["comparisons"][f"{ITEMS} fault p95"]
    assert comparison["verdict"] == "higher"
    assert 2.5 < comparison["ratio_of_medians"] < 3.5
    assert f"{ITEMS} recovery p95" not in finding.evidence["comparisons"]


def test_nothing_moved_is_no_finding(tmp_path: Path) -> None:
    """Same latency and no errors in every phase: nothing to say."""
    load = LoadBuilder()
    noisy(load, ITEMS, range(100), 10, 5)
    assert PhaseComparisonDetector().detect(context(tmp_path, load, LONG)) == []


def test_control_run_does_not_apply(tmp_path: Path) -> None:
    """A run that is all baseline has nothing to compare."""
    load = LoadBuilder().add(ITEMS, range(100))
    assert not PhaseComparisonDetector().applies(
        context(tmp_path, load, fault_phases(end=100), fault=False)
    )
