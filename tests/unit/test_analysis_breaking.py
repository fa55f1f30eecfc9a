"""The breaking point of a rising load, from synthetic per-second data."""

from __future__ import annotations

from resilience.analysis.breaking import (
    BreakingPoint,
    breaking_point,
    planned_load,
    rising_load,
)
from resilience.analysis.resources import Resource, Resources
from resilience.analysis.smoothing import SUSTAIN, WINDOW
from resilience.experiment.loader import parse_experiment
from resilience.experiment.model import Experiment
from resilience.testing.analysis import LoadBuilder

EP = "GET /catalog/items"

# Users rise by 10 every 10 s from 10 to 100; one request per user per second.
STEPS = """
name: ramp
load:
  stages:
{stages}
  workload:
    requests:
      - {{name: "GET /catalog/items", path: /catalog/items}}
slo:
  baseline: {{p95: 500ms, error_rate: 1%{endpoint}}}
{capacity}
"""


def ramp(*, capacity: str = "", endpoint: str = "") -> Experiment:
    stages = "\n".join(
        f"    - {{duration: 10s, users: {u}, spawn_rate: 100}}" for u in range(10, 101, 10)
    )
    return parse_experiment(
        STEPS.format(stages=stages, capacity=capacity, endpoint=endpoint), file="ramp.yaml"
    )


def users_at(second: int) -> int:
    return 10 * (second // 10 + 1)


def healthy(builder: LoadBuilder, seconds: range, *, latency_ms: float = 50.0) -> None:
    for s in seconds:
        builder.add(EP, [s], ok=users_at(s), latency_ms=latency_ms)


def judge(builder: LoadBuilder, experiment: Experiment, **kw: object) -> BreakingPoint:
    point = breaking_point(builder.view, experiment, start=2.0, end=100.0, **kw)  # type: ignore[arg-type]
    assert point is not None
    return point


def test_a_knee_by_latency() -> None:
    """p95 above its limit from 60 s on: broke at 60 s; held 60 users (59 s), their rate."""
    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=users_at(s), latency_ms=50.0 if s < 60 else 900.0)
    point = judge(b, ramp())
    assert point.broke and point.second == 60
    assert point.held_second == 59
    assert point.load == 60
    assert point.served_rps is not None and abs(point.served_rps - 60) < 1e-6
    assert point.first_broke[0].metric == "p95"
    assert point.first_broke[0].endpoint is None
    text = point.statement()
    assert text.startswith("breaking point: 60 users, 60 req/s served, at 60 s; first broke: p95")
    assert "ms > 500 ms)" in text


def test_a_knee_by_errors_on_one_endpoint() -> None:
    """5xx on the named endpoint from 70 s: broke at 70 s, by its error rate."""
    b = LoadBuilder()
    for s in range(100):
        errors = {"5xx": users_at(s)} if s >= 70 else None
        b.add(EP, [s], ok=users_at(s), latency_ms=20.0, errors=errors)
    point = judge(b, ramp(endpoint=', endpoints: {"GET /catalog/items": {error_rate: 5%}}'))
    assert point.broke and point.second == 70
    assert {(x.metric, x.endpoint) for x in point.first_broke} == {
        ("error_rate", None),
        ("error_rate", EP),
    }
    assert "error rate of" in point.statement()
    assert point.load == 70


def test_a_knee_by_plateau() -> None:
    """Served rate stuck at 40/s from 40 s while users keep rising: throughput broke just
    after the last rise, latency still inside its limit."""
    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=min(users_at(s), 40), latency_ms=100.0)
    point = judge(b, ramp())
    assert point.broke
    assert point.first_broke[0].metric == "throughput"
    assert point.second is not None and 30 <= point.second <= 42
    assert point.load == 40
    assert "throughput no longer rising" in point.statement()


def test_no_knee() -> None:
    """Every second inside the SLOs: no breaking point; held up to the top (100 users)."""
    b = LoadBuilder()
    healthy(b, range(100))
    point = judge(b, ramp())
    assert not point.broke and point.second is None
    assert point.load == 100
    assert point.statement().startswith("no breaking point: the SLOs held up to 100 users")


def test_noisy_single_seconds_do_not_make_a_knee() -> None:
    """A single bad second (all slow), or two in a row: no knee (a bad second spoils
    WINDOW windows, two spoil WINDOW + 1, fewer than SUSTAIN)."""
    b = LoadBuilder()
    for s in range(100):
        slow = s in (20, 45, 46, 80)
        b.add(EP, [s], ok=users_at(s), latency_ms=3000.0 if slow else 40.0)
    point = judge(b, ramp())
    assert not point.broke, point.statement()
    assert WINDOW + 1 < SUSTAIN


def test_a_window_with_too_few_requests_is_not_judged() -> None:
    """Slow seconds with a handful of requests (below MIN_REQUESTS per window) do not break."""
    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=5 if s < 30 else users_at(s), latency_ms=900.0 if s < 30 else 40.0)
    point = judge(b, ramp())
    assert not point.broke


def test_capacity_target_pass_and_fail() -> None:
    """Knee at 60 s with 50 req/s served: a 40 req/s target is met, 80 req/s is not."""
    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=users_at(s), latency_ms=50.0 if s < 60 else 900.0)
    met = judge(b, ramp(capacity="  capacity: {rps: 40}"))
    assert met.capacity is not None and met.capacity.met
    assert [r.passed for r in met.capacity.slo_results()] == [True]
    missed = judge(b, ramp(capacity="  capacity: {rps: 80, users: 30}"))
    assert missed.capacity is not None and not missed.capacity.met
    assert [(r.metric, r.passed) for r in missed.capacity.slo_results()] == [
        ("rps", False),
        ("users", True),
    ]
    assert "capacity target 80 req/s and 30 users not met" in missed.statement()


def test_the_first_saturated_resource_is_named() -> None:
    """A resource saturated from 55 s is named at a knee at 60 s."""
    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=users_at(s), latency_ms=50.0 if s < 60 else 900.0)
    cpu = Resource(
        "gateway cpu", "cpu", "gateway", "target", "cores",
        values={s: (0.99 if s >= 55 else 0.3) for s in range(100)},
        limits=dict.fromkeys(range(100), 1.0),
    )  # fmt: skip
    point = judge(b, ramp(), resources=Resources([cpu]))
    assert point.saturated is not None
    assert point.saturated["text"] == "gateway CPU at 99% of one core from 55 s"
    assert point.saturated["evidence"]["points"]
    assert "first saturated: gateway CPU at 99% of one core from 55 s" in point.statement()


def test_which_loads_rise() -> None:
    """Rising stages and the stress ramp rise; a spike, a flat open load and faults do not."""
    assert rising_load(ramp())
    base = """
name: x
load:
  {shape}
  workload: {{requests: [{{name: GET /, path: /}}]}}
"""
    stress = parse_experiment(base.format(shape="preset: stress"), file="x.yaml")
    spike = parse_experiment(base.format(shape="preset: spike"), file="x.yaml")
    flat = parse_experiment(
        base.format(shape="arrival_rate: [{duration: 60s, rps: 50}]"), file="x.yaml"
    )
    rising = parse_experiment(
        base.format(shape="arrival_rate: [{duration: 30s, rps: 50}, {duration: 30s, rps: 90}]"),
        file="x.yaml",
    )
    assert rising_load(stress)
    assert not rising_load(spike)
    assert not rising_load(flat)
    assert rising_load(rising)
    assert planned_load(stress, [0, 4, 20]) == {0: 25.0, 4: 225.0, 20: 500.0}
    assert planned_load(rising, [10, 40]) == {10: 50.0, 40: 90.0}


def test_a_fault_experiment_has_no_breaking_point() -> None:
    """Fault experiments are judged as before: no breaking point is computed."""
    from resilience.testing.analysis import shop_experiment

    experiment = shop_experiment()
    b = LoadBuilder()
    healthy(b, range(100))
    assert breaking_point(b.view, experiment, start=2.0, end=100.0) is None


def test_users_in_flight_come_from_the_rig_when_it_reported_them() -> None:
    """The closed model's load held is the users the workers reported (rig.jsonl), not the
    plan's, when the rig covers the seconds."""
    from resilience.rundir.rig import RigSample

    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=users_at(s), latency_ms=50.0 if s < 60 else 900.0)
    rig = [RigSample(t=s + 0.5, second=s, users=users_at(s) - 3) for s in range(100)]
    point = judge(b, ramp(), rig=rig)
    assert point.load_source == "rig"
    assert point.load == 57


def test_a_resource_saturated_only_after_the_knee_is_named_as_such() -> None:
    """Nothing saturated by the knee (60 s), the gateway's CPU from 70 s: named "after it"."""
    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=users_at(s), latency_ms=50.0 if s < 60 else 900.0)
    cpu = Resource(
        "gateway cpu", "cpu", "gateway", "target", "cores",
        values={s: (0.97 if s >= 70 else 0.3) for s in range(100)},
        limits=dict.fromkeys(range(100), 1.0),
    )  # fmt: skip
    point = judge(b, ramp(), resources=Resources([cpu]))
    assert point.saturated is not None and point.saturated["after_the_knee"] is True
    assert "first saturated after it: gateway CPU at 97% of one core from 70 s" in (
        point.statement()
    )
