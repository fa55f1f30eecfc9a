"""retry_amplification from traces (client spans per request) and from gateway counters."""

from __future__ import annotations

from pathlib import Path

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.retry_amplification import (
    SHOP_DOWNSTREAM,
    SHOP_REQUESTS,
    SHOP_RETRIES,
    RetryAmplificationDetector,
)
from resilience.observe.prometheus import Series
from resilience.observe.spans import Trace
from resilience.rundir.records import TraceRef
from resilience.testing.analysis import (
    T0,
    LoadBuilder,
    fault_phases,
    make_context,
    ref,
    shop_experiment,
    shop_trace,
)
from resilience.testing.observe_fakes import FakePrometheusSource

POST = "POST /orders"
PHASES = fault_phases(end=38, fault=(10, 22))


def traces(attempts_in_fault: int) -> tuple[list[Trace], list[TraceRef]]:
    """Three baseline orders (one call each) and three fault orders with ``attempts_in_fault``."""
    base = [shop_trace(POST, 2.0 + i, upstream="orders") for i in range(3)]
    fault = [
        shop_trace(POST, 12.0 + i, 10.0, upstream="orders", attempts=attempts_in_fault)
        for i in range(3)
    ]
    refs = [ref(t, POST, 2.0 + i) for i, t in enumerate(base)]
    refs += [ref(t, POST, 12.0 + i, latency=5.0, outcome="timeout") for i, t in enumerate(fault)]
    return base + fault, refs


def counters(baseline: float, fault: float, after: float) -> FakePrometheusSource:
    """Counter series, one point a second: downstream attempts rise by ``baseline`` over the
    baseline (0-10 s), ``fault`` over the fault (10-22 s) and ``after`` over fault and
    recovery together (10-38 s); gateway requests by 100 over each of those windows."""

    def counter(rises: list[tuple[float, float, float]]) -> list[Series]:
        points, value = [], 0.0
        for t in range(-2, 39):
            for start, end, total in rises:
                if start < t <= end:
                    value += total / (end - start)
            points.append((T0 + t, value))
        return [Series({}, points)]

    calls = [(0, 10, baseline), (10, 22, fault), (22, 38, after - fault)]
    served = [(0, 10, 100.0), (10, 22, 100.0)]
    retries = [(s, e, total - (100.0 if e <= 22 else 0.0)) for s, e, total in calls]
    return FakePrometheusSource(
        {
            SHOP_DOWNSTREAM: counter(calls),
            SHOP_REQUESTS: counter(served),
            SHOP_RETRIES: counter(retries),
        }
    )


def context(
    tmp_path: Path,
    *,
    trace_data: tuple[list[Trace], list[TraceRef]] | None = None,
    prometheus: FakePrometheusSource | None = None,
    fault: bool = True,
    extra: str = "",
) -> AnalysisContext:
    found, refs = trace_data or ([], [])
    return make_context(
        shop_experiment(extra, fault=fault),
        LoadBuilder().add(POST, range(38)).view,
        PHASES if fault else fault_phases(end=38),
        run_dir=tmp_path,
        traces=found,
        trace_refs=refs,
        traces_unavailable=None if found else "none collected",
        prometheus=prometheus,
        builtin_shop=True,
    )


def test_retries_in_fault_traces_are_amplification(tmp_path: Path) -> None:
    """Three calls per order in the fault against one in the baseline: a finding with the span."""
    [finding] = RetryAmplificationDetector().detect(context(tmp_path, trace_data=traces(3)))
    numbers = finding.evidence["numbers"]
    assert numbers["calls per request baseline (traces)"] == 1
    assert numbers["calls per request fault (traces)"] == 3
    assert numbers["ratio (traces)"] == 3
    assert finding.evidence["span"]["name"] == "upstream orders"
    assert "3 calls downstream" in finding.evidence["span"]["reason"]
    assert finding.evidence["endpoints"] == [POST]
    assert len(finding.evidence["trace_ids"]) == 3
    assert finding.severity == "warning" and not finding.fails_run


def test_no_retries_no_finding(tmp_path: Path) -> None:
    """One call per request before and during the fault: nothing."""
    assert RetryAmplificationDetector().detect(context(tmp_path, trace_data=traces(1))) == []


def test_counters_show_amplification_after_the_heal(tmp_path: Path) -> None:
    """Attempts per request 1.0 in baseline, 2.6 over fault+recovery (retries at the heal)."""
    source = counters(baseline=100, fault=100, after=260)
    [finding] = RetryAmplificationDetector().detect(context(tmp_path, prometheus=source))
    numbers = finding.evidence["numbers"]
    assert numbers["calls per request baseline"] == 1.0
    assert numbers["calls per request fault+recovery"] == 2.6
    assert numbers["ratio (metrics)"] == 2.6
    assert numbers["retries fault+recovery"] == 160


def test_counters_without_growth_are_quiet(tmp_path: Path) -> None:
    """1.3 calls per request against 1.0 stays under the 1.5 factor."""
    source = counters(baseline=100, fault=120, after=130)
    assert RetryAmplificationDetector().detect(context(tmp_path, prometheus=source)) == []


def test_factor_is_a_parameter(tmp_path: Path) -> None:
    """With factor 1.1, 1.3 calls per request is amplification."""
    source = counters(baseline=100, fault=120, after=130)
    extra = "detectors: {retry_amplification: {params: {factor: 1.1}}}\n"
    ctx = context(tmp_path, prometheus=source, extra=extra)
    [finding] = RetryAmplificationDetector().detect(ctx)
    assert finding.evidence["numbers"]["factor"] == 1.1


def test_control_run_does_not_apply(tmp_path: Path) -> None:
    """No fault phase, nothing to compare."""
    ctx = context(tmp_path, trace_data=traces(3), fault=False)
    assert not RetryAmplificationDetector().applies(ctx)


def test_neither_source_is_not_evaluated(tmp_path: Path) -> None:
    """No Prometheus and no traces: not evaluated, with the reasons."""
    [finding] = RetryAmplificationDetector().detect(context(tmp_path))
    assert finding.status == "not_evaluated"
    assert "none collected" in finding.evidence["reason"]


def test_too_few_traces_and_no_counters_is_quiet(tmp_path: Path) -> None:
    """Two fault traces are under min_traces (3): no judgement, no finding."""
    found, refs = traces(3)
    ctx = context(tmp_path, trace_data=(found[:5], refs[:5]), prometheus=FakePrometheusSource())
    assert RetryAmplificationDetector().detect(ctx) == []
