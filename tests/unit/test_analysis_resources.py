"""The resources behind the load (analysis/resources.py) and the warning signs read from them
(detectors/saturation.py): saturation onsets, the first saturated resource, pools from
Prometheus, CPU saturation and throttling per phase, connections near their limit."""

from __future__ import annotations

from pathlib import Path

from resilience.analysis.detectors.saturation import (
    ConnectionLimitDetector,
    CpuSaturationDetector,
)
from resilience.analysis.pipeline import run_detector
from resilience.analysis.resources import (
    Resources,
    build_resources,
    from_rig,
    onset,
    resource_promql,
)
from resilience.observe.prometheus import Series
from resilience.testing.analysis import (
    T0,
    LoadBuilder,
    fault_phases,
    make_context,
    rig_samples,
    shop_experiment,
)
from resilience.testing.observe_fakes import FakePrometheusSource

SHOP = {"role": "target", "cores": 1.0}


def _hot_gateway(from_second: int, seconds: int = 30) -> Resources:
    """The gateway at 0.4 of its core, then at 0.98 from ``from_second``; the catalog calm;
    the host at 60 %."""
    return Resources(
        from_rig(
            rig_samples(
                seconds,
                {
                    "gateway": {0: {**SHOP, "cpu": 0.4}, from_second: {"cpu": 0.98}},
                    "catalog": {0: {**SHOP, "cpu": 0.3}},
                    "load worker 0": {0: {"role": "generator", "cores": 1.0, "cpu": 0.3}},
                },
                busy=0.6,
            )
        )
    )


def test_onset_needs_a_sustained_run_and_forgives_one_gap() -> None:
    """One hot second is no onset; 6, 8, 9 is a run from 6 (the gap at 7 forgiven)."""
    assert onset([3]) is None
    assert onset([3, 9, 15]) is None
    assert onset([3, 6, 8, 9]) == 6
    assert onset([10, 11]) == 10
    assert onset([10, 11, 12], min_seconds=4) is None


def test_the_first_saturated_resource_is_named_with_its_level() -> None:
    """The gateway from 12 s: named at 98 % of one core; the calm catalog is not."""
    resources = _hot_gateway(12)
    first = resources.first_saturated(until=14)
    assert first is not None
    assert first.resource.owner == "gateway" and first.start == 12
    assert first.text() == "gateway CPU at 98% of one core from 12 s"
    assert [s.resource.owner for s in resources.saturations()] == ["gateway"]


def test_a_saturation_long_after_the_break_is_not_behind_it() -> None:
    """Saturated only from 25 s: not the resource behind a break at 12 s."""
    assert _hot_gateway(25).first_saturated(until=12) is None


def test_the_load_generator_saturating_first_is_named_as_the_rig() -> None:
    """A load worker at 97 % from 5 s and the gateway from 8 s: the generator comes first,
    with its role, so the breaking point is the rig's."""
    samples = rig_samples(
        20,
        {
            "gateway": {0: {**SHOP, "cpu": 0.4}, 8: {"cpu": 0.97}},
            "load worker 0": {0: {"role": "generator", "cores": 1.0, "cpu": 0.5}, 5: {"cpu": 0.97}},
        },
    )
    first = Resources(from_rig(samples)).first_saturated(until=10)
    assert first is not None
    assert (first.resource.owner, first.resource.role) == ("load worker 0", "generator")


def test_pools_come_from_the_gathered_gauges(tmp_path: Path) -> None:
    """The catalog upstream pool at 10/10 with 40 waiters from 6 s, read from Prometheus."""
    labels = {"service": "gateway", "pool": "catalog"}
    times = [T0 + s for s in range(20)]
    fake = FakePrometheusSource(
        {
            "shop_upstream_pool_in_use": [
                Series(labels, [(t, 10.0 if t >= T0 + 6 else 4.0) for t in times])
            ],
            "shop_upstream_pool_size": [Series(labels, [(t, 10.0) for t in times])],
            "shop_upstream_pool_waiting": [
                Series(labels, [(t, 40.0 if t >= T0 + 6 else 0.0) for t in times])
            ],
        }
    )
    resources = build_resources(
        None, fake, shop_experiment(fault=False), builtin=True, t0=T0, start=0.0, end=20.0
    )
    first = resources.first_saturated(until=8)
    assert first is not None
    assert first.text() == "pool 'catalog' of gateway 10/10 with 40 waiters from 6 s"
    assert "no rig samples" in resources.notes[0]


def test_process_metrics_stand_in_for_a_process_the_rig_does_not_know(tmp_path: Path) -> None:
    """An external target's job exporting python_info: its CPU counter's rises against one
    core, saturated from 4 s."""
    experiment = shop_experiment(
        "target: {url: 'http://127.0.0.1:9000'}\n"
        "observe:\n  scrape: [{job: myapp, url: 'http://127.0.0.1:9000/metrics'}]\n",
        fault=False,
    )
    promql = resource_promql(experiment, builtin=False)
    cpu = promql["process CPU seconds"]
    assert cpu == 'process_cpu_seconds_total{job=~"myapp"}'
    counter, total = [], 0.0
    for s in range(15):
        total += 0.95 if s >= 4 else 0.2
        counter.append((T0 + s, total))
    fake = FakePrometheusSource(
        {
            cpu: [Series({"job": "myapp"}, counter)],
            promql["python processes"]: [Series({"job": "myapp"}, [(T0, 1.0)])],
        }
    )
    resources = build_resources(None, fake, experiment, builtin=False, t0=T0, start=0.0, end=15.0)
    first = resources.first_saturated(until=6)
    assert first is not None and first.resource.owner == "myapp" and first.start == 4


def test_cpu_saturation_is_reported_by_the_phase_it_happened_in(tmp_path: Path) -> None:
    """The gateway saturated from 12 s to the end of a 30 s run with a fault at 10-22 s:
    one warning finding with 10 s of the fault and 8 s of the recovery, its series inline."""
    experiment = shop_experiment()
    phases = fault_phases(end=30.0, fault=(10.0, 22.0), start=2.0)
    view = LoadBuilder().add("GET /catalog/items", range(30)).view
    ctx = make_context(experiment, view, phases, run_dir=tmp_path, resources=_hot_gateway(12))
    findings = run_detector(CpuSaturationDetector(), ctx)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity == "warning" and not finding.fails_run
    assert finding.evidence["phases"] == {"fault": 10, "recovery": 8}
    assert finding.summary.startswith("CPU saturation: gateway at 98% of one core at worst")
    assert "10 s of the fault and 8 s of the recovery (from 12 s)" in finding.summary
    assert finding.evidence["resource_series"]["points"][12] == [12.0, 0.98]


def test_throttling_by_a_cgroup_quota_is_its_own_finding(tmp_path: Path) -> None:
    """The catalog in a quarter-core cgroup, throttled in 60 % of its periods from 5 s:
    a throttling finding naming the quota; the spike's words when the fault is a spike."""
    samples = rig_samples(
        20,
        {"catalog": {0: {**SHOP, "cores": 0.25, "cpu": 0.1, "throttled": 0.0},
                     5: {"cpu": 0.25, "throttled": 0.6}}},
    )  # fmt: skip
    experiment = shop_experiment(fault=False)
    phases = fault_phases(end=20.0, fault=(4.0, 14.0), start=2.0)
    view = LoadBuilder().add("GET /catalog/items", range(20)).view
    ctx = make_context(
        experiment,
        view,
        phases,
        run_dir=tmp_path,
        resources=Resources(from_rig(samples)),
        spike=True,
    )
    summaries = [f.summary for f in run_detector(CpuSaturationDetector(), ctx)]
    assert any(
        s.startswith(
            "CPU throttling: catalog throttled in 60% of its CPU periods (quota 0.25 core)"
        )
        and "9 s of the spike" in s
        for s in summaries
    ), summaries
    assert any(s.startswith("CPU saturation: catalog at 100% of 0.25 core") for s in summaries)


def test_a_quiet_run_has_no_warning_signs(tmp_path: Path) -> None:
    """Every process well below its cores, PostgreSQL at 12 of 100 connections: nothing."""
    samples = rig_samples(
        30,
        {
            "gateway": {0: {**SHOP, "cpu": 0.5}},
            "postgres": {0: {"role": "stack", "cores": 2.0, "cpu": 0.2, "backends": 12,
                             "max_connections": 100}},
        },
    )  # fmt: skip
    ctx = make_context(
        shop_experiment(fault=False),
        LoadBuilder().add("GET /catalog/items", range(30)).view,
        fault_phases(end=30.0, start=2.0),
        run_dir=tmp_path,
        resources=Resources(from_rig(samples)),
    )
    assert run_detector(CpuSaturationDetector(), ctx) == []
    assert run_detector(ConnectionLimitDetector(), ctx) == []


def test_database_connections_near_their_limit_are_a_warning(tmp_path: Path) -> None:
    """PostgreSQL at 92 of 100 connections from 8 s of a load test: a connection_limit
    finding in the load's words, with the seconds."""
    samples = rig_samples(
        20,
        {"postgres": {0: {"role": "stack", "cores": 2.0, "cpu": 0.2, "backends": 10,
                          "max_connections": 100}, 8: {"backends": 92}}},
    )  # fmt: skip
    ctx = make_context(
        shop_experiment(fault=False),
        LoadBuilder().add("GET /catalog/items", range(20)).view,
        fault_phases(end=20.0, start=2.0),
        run_dir=tmp_path,
        resources=Resources(from_rig(samples)),
    )
    findings = run_detector(ConnectionLimitDetector(), ctx)
    assert len(findings) == 1
    assert findings[0].summary == (
        "Database connections near their limit: postgres held 92 of 100 connections at "
        "worst, for 12 s of the load (from 8 s)"
    )
    assert findings[0].evidence["seconds"][0] == 8


def test_a_busy_host_says_who_used_it(tmp_path: Path) -> None:
    """The host 100 % busy, mostly by the target and its stack: the finding splits the CPU
    by role, so neighbours are never taken for the target."""
    samples = rig_samples(
        12,
        {
            "gateway": {0: {**SHOP, "cpu": 0.8}},
            "postgres": {0: {"role": "stack", "cores": 2.0, "cpu": 0.5}},
            "load worker 0": {0: {"role": "generator", "cores": 1.0, "cpu": 0.1}},
        },
        busy=1.0,
    )
    for sample in samples:
        sample.other_cpu = 0.6
    ctx = make_context(
        shop_experiment(fault=False),
        LoadBuilder().add("GET /catalog/items", range(12)).view,
        fault_phases(end=12.0, start=2.0),
        run_dir=tmp_path,
        resources=Resources(from_rig(samples)),
    )
    [finding] = run_detector(CpuSaturationDetector(), ctx)
    assert finding.summary.endswith(
        "(on average the target 0.80, other processes 0.60, its stack 0.50, "
        "the load generator 0.10 cores)"
    )
    assert finding.evidence["cpu_by_role"]["other processes"] == 0.6


def test_a_host_filled_by_neighbours_is_not_the_targets_warning_sign(tmp_path: Path) -> None:
    """The host 100 % busy, the target at 0.2 cores and neighbours at 1.7: no finding (the
    rig's report says it), while the same host filled by the target is one."""
    samples = rig_samples(12, {"gateway": {0: {**SHOP, "cpu": 0.2}}}, busy=1.0)
    for sample in samples:
        sample.other_cpu = 1.7
    ctx = make_context(
        shop_experiment(fault=False),
        LoadBuilder().add("GET /catalog/items", range(12)).view,
        fault_phases(end=12.0, start=2.0),
        run_dir=tmp_path,
        resources=Resources(from_rig(samples)),
    )
    assert run_detector(CpuSaturationDetector(), ctx) == []
