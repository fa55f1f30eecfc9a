"""A load spike is a phase like a fault: which shapes have one, its window, and a spike run
judged from its files — baseline / spike / recovery, the fault keys judging the spike, and
the recovery time measured from the second the load came back down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resilience import histogram as hist
from resilience.analysis.analyse import analyse, run_phases_of
from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.cascading_failure import CascadingFailureDetector
from resilience.analysis.recovery import measure_recovery
from resilience.analysis.resources import Resources, from_rig
from resilience.errors import ExperimentError
from resilience.experiment.loader import load_experiment
from resilience.experiment.spike import StageLevel, find_spike, spike_stages
from resilience.rundir.journal import Journal
from resilience.rundir.layout import RunDir
from resilience.rundir.load import LoadFiles
from resilience.runner.rejudge import rejudge
from resilience.testing.analysis import LoadBuilder, make_context, rig_samples, shop_experiment
from resilience.vocabulary import OUTCOMES, phases_from_spike

REPO = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600.0

SPIKE = """\
name: synthetic-spike
target: {url: "http://127.0.0.1:9"}
load:
  stages:
    - {duration: 20s, users: 5, spawn_rate: 5}
    - {duration: 10s, users: 20, spawn_rate: 20}
    - {duration: 30s, users: 5, spawn_rate: 15}
  warmup: 0s
  workload: {requests: [{name: "GET /a", path: /a}]}
slo:
  baseline: {p95: 500ms, error_rate: 1%}
  fault: {error_rate: 5%}
  recovery: {within: 10s}
"""


def _experiment(tmp_path: Path, text: str = SPIKE, name: str = "e.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def levels(*users: float) -> list[StageLevel]:
    return [StageLevel(60.0, u, 10.0) for u in users]


def test_the_spike_preset_has_its_second_stage_as_the_spike() -> None:
    """100 → 1000 → 100 users: the spike runs from 300 s to the moment the next stage's
    spawn rate (100/s) has stopped the 900 extra users, 9 s after the stage's end."""
    spike = load_experiment(REPO / "experiments" / "spike.yaml").spike()
    assert spike is not None
    assert (spike.stage, spike.start, spike.end) == (1, 300.0, 429.0)
    assert (spike.before, spike.peak, spike.after) == (100, 1000, 100)


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ((100, 1000, 100), [1]),
        ((10, 20, 10), [1]),  # twice the load and back to half: the smallest spike
        ((10, 19, 5), []),  # not twice the load before it
        ((10, 20, 11), []),  # does not come back down to half the peak
        ((50, 100, 200, 400), []),  # a stress ramp only rises
        ((10, 100, 0), []),  # drops to nothing: no load left to recover with
        ((0, 100, 10), []),  # no baseline load before it
        ((100,), []),
        ((10, 100, 10, 100, 10), [1, 3]),
    ],
)
def test_which_stages_are_spikes(users: tuple[float, ...], expected: list[int]) -> None:
    """A stage is a spike when it at least doubles the load before it and the stage after
    it comes back down to at most half of it, above zero."""
    assert spike_stages(levels(*users)) == expected


def test_auto_needs_exactly_one_spike_and_a_number_names_one() -> None:
    """Two candidate stages: auto makes no spike phase; ``load.spike: 4`` picks the second;
    ``none`` turns a clear spike off."""
    two = levels(10, 100, 10, 100, 10)
    assert find_spike(two, "auto") is None
    named = find_spike(two, 4)
    assert named is not None and named.stage == 3
    assert find_spike(levels(10, 100, 10), "none") is None


def test_the_open_model_spike_ends_with_its_stage() -> None:
    """Requests per second change at once: the spike ends where its stage does."""
    spike = find_spike([StageLevel(30, 20.0), StageLevel(10, 200.0), StageLevel(30, 20.0)], "auto")
    assert spike is not None and spike.window == (30.0, 40.0)


def test_a_ramp_and_a_fault_run_get_no_spike_phase(tmp_path: Path) -> None:
    """The stress preset (one stage) and a rising ramp have no spike; an experiment with
    faults keeps its fault phases even when its stages look like a spike."""
    stress = load_experiment(REPO / "experiments" / "stress.yaml")
    assert stress.spike() is None
    assert [p.name for p in stress.scheduled_phases()] == ["baseline"]
    ramp = _experiment(
        tmp_path, SPIKE.replace("users: 5, spawn_rate: 15", "users: 40, spawn_rate: 15")
    )
    assert load_experiment(ramp).spike() is None
    with_fault = SPIKE.replace(
        'target: {url: "http://127.0.0.1:9"}',
        'target: {url: "http://127.0.0.1:9"}\n'
        'proxies: [{name: db, listen: "127.0.0.1:25999", upstream: "127.0.0.1:5432"}]\n'
        "faults: [{at: 5s, duration: 5s, proxy: db, type: outage}]",
    )
    faulted = load_experiment(_experiment(tmp_path, with_fault, "f.yaml"))
    assert faulted.spike() is None
    assert [p.name for p in faulted.scheduled_phases()] == ["baseline", "fault", "recovery"]


def test_a_named_spike_stage_must_have_stages_around_it(tmp_path: Path) -> None:
    """``load.spike: 1`` (nothing before it) and a named spike beside faults are refused,
    naming the key."""
    first = SPIKE.replace("  warmup: 0s", "  warmup: 0s\n  spike: 1")
    with pytest.raises(ExperimentError, match=r"load\.spike.*stage number from 2 to 2"):
        load_experiment(_experiment(tmp_path, first))
    with_fault = SPIKE.replace("  warmup: 0s", "  warmup: 0s\n  spike: 2").replace(
        'target: {url: "http://127.0.0.1:9"}',
        'target: {url: "http://127.0.0.1:9"}\n'
        'proxies: [{name: db, listen: "127.0.0.1:25999", upstream: "127.0.0.1:5432"}]\n'
        "faults: [{at: 5s, duration: 5s, proxy: db, type: outage}]",
    )
    with pytest.raises(ExperimentError, match="phased by its faults"):
        load_experiment(_experiment(tmp_path, with_fault, "f.yaml"))
    off = load_experiment(
        _experiment(
            tmp_path, SPIKE.replace("  warmup: 0s", "  warmup: 0s\n  spike: none"), "o.yaml"
        )
    )
    assert off.spike() is None


def test_phases_of_a_spike_shape(tmp_path: Path) -> None:
    """baseline / spike / recovery: the spike from its stage's start to 1 s after its end
    (15 users stopped at 15/s); the warm-up left out of the baseline."""
    experiment = load_experiment(_experiment(tmp_path))
    assert [(p.name, p.start, p.end) for p in experiment.scheduled_phases()] == [
        ("baseline", 0.0, 20.0),
        ("spike", 20.0, 31.0),
        ("recovery", 31.0, 60.0),
    ]
    journal = Journal.start(
        tmp_path / "journal.json", experiment="s", profile=None, t0=T0, builtin=False, load_end=60.0
    ).data
    warm = load_experiment(
        _experiment(tmp_path, SPIKE.replace("warmup: 0s", "warmup: 3s"), "w.yaml")
    )
    assert [(p.name, p.start, p.end) for p in run_phases_of(journal, warm, 60.0)] == [
        ("baseline", 3.0, 20.0),
        ("spike", 20.0, 31.0),
        ("recovery", 31.0, 60.0),
    ]
    # The load stopped during the spike: no recovery phase to measure.
    assert [p.name for p in run_phases_of(journal, warm, 25.0)] == ["baseline", "spike"]


def test_recovery_after_a_spike_on_synthetic_seconds() -> None:
    """The same rule as after a heal: the recovery time runs from the second the load came
    back down to the first of five in-band seconds (here 4 s of slow answers, then fine)."""
    phases = phases_from_spike((20.0, 31.0), start=0.0, end=60.0)
    load = LoadBuilder()
    load.add("GET /a", range(20), ok=20, latency_ms=10)
    load.add("GET /a", range(20, 31), ok=60, latency_ms=900, errors={"5xx": 6})
    load.add("GET /a", range(31, 35), ok=20, latency_ms=700)
    load.add("GET /a", range(35, 60), ok=20, latency_ms=10)
    result = measure_recovery(load.view, phases, budget_seconds=10.0)
    assert result is not None and result.recovered
    assert result.heal_time == 31.0
    assert result.seconds == 4.0
    assert [s for s, _ in result.out_of_band] == [31, 32, 33, 34]
    assert result.degradation_area > 0


def write_spike_run(run_dir: Path, *, slow_after: int) -> Path:
    """60 s of one endpoint: 20 req/s at 10 ms; in the spike (20-31 s) 60 req/s, 10 % 5xx,
    900 ms; then ``slow_after`` seconds at 700 ms before it is back to 10 ms."""
    layout = RunDir(run_dir).create()
    layout.experiment.write_text(SPIKE, encoding="utf-8")
    journal = Journal.start(
        layout.journal,
        experiment="synthetic-spike",
        profile=None,
        t0=T0,
        builtin=False,
        load_end=60.0,
    )
    files = LoadFiles(run_dir, t0=T0)
    for second in range(60):
        counts = dict.fromkeys(OUTCOMES, 0)
        if 20 <= second < 31:
            counts["ok"], counts["5xx"] = 54, 6
            latencies = [900_000] * 60
        else:
            slow = 31 <= second < 31 + slow_after
            counts["ok"] = 20
            latencies = [700_000 if slow else 10_000] * 20
        files.write_second(
            second,
            {"GET /a": counts},
            {"GET /a": hist.Histogram.from_values(latencies)},
            {"GET /a": 0},
        )
    files.write_meta({"t0": T0, "endpoints": ["GET /a"], "seconds": 60})
    files.close()
    journal.finish("passed", ended=T0 + 61, exit_code=0, reason="to be judged")
    return run_dir


def test_a_spike_run_is_judged_by_its_phases(tmp_path: Path) -> None:
    """No faults: the phases are baseline / spike / recovery; ``slo.fault`` judges the spike
    (10 % errors break its 5 %); the recovery after the spike is 4 s, within 10 s."""
    run_dir = write_spike_run(tmp_path / "run", slow_after=4)
    verdict = analyse(run_dir)
    assert [(p.name, p.start, p.end) for p in verdict.phases] == [
        ("baseline", 0.0, 20.0),
        ("spike", 20.0, 31.0),
        ("recovery", 31.0, 60.0),
    ]
    breached = [(s.phase, s.metric, s.observed) for s in verdict.slo if s.passed is False]
    assert breached == [("spike", "error_rate", 0.1)]
    assert verdict.recovery is not None
    assert (verdict.recovery.recovered, verdict.recovery.seconds) == (True, 4.0)
    assert verdict.recovery.heal_time == 31.0
    assert not [f for f in verdict.findings if f.kind == "slow_recovery"]


def test_slow_recovery_after_a_spike_is_found_and_every_report_names_the_spike(
    tmp_path: Path,
) -> None:
    """15 s out of band after the spike, over the 10 s budget: slow_recovery is found and
    says "after the spike"; the journal records the phases and the recovery time, and the
    Markdown and HTML reports name the spike and its recovery."""
    run_dir = write_spike_run(tmp_path / "run", slow_after=15)
    judged = rejudge(run_dir, ["slo.fault.error_rate=20%"])
    assert (judged.status, judged.exit_code) == ("failed", 1)
    journal = json.loads((run_dir / "journal.json").read_text())
    assert [p["name"] for p in journal["phases"]] == ["baseline", "spike", "recovery"]
    assert journal["recovery"]["seconds"] == 15.0
    assert journal["recovery"]["recovered"] is True
    slow = [f for f in journal["findings"] if f["kind"] == "slow_recovery"]
    assert len(slow) == 1 and "15 s after the spike" in slow[0]["summary"]
    summary = (run_dir / "summary.md").read_text()
    assert "**Recovery after the spike:** recovered in 15.0 s (budget 10.0 s)" in summary
    html = (run_dir / "report.html").read_text()
    assert "Recovery after the spike" in html and "recovered 15.0 s after the spike" in html
    assert "a load spike from 20.0 s to 31.0 s" in html


# -- the cascade across endpoints under a spike ------------------------------------------

ITEMS, ITEM = "GET /catalog/items", "GET /catalog/items/{item_id}"
POST, ORDER = "POST /orders", "GET /orders/{order_id}"
SPIKE_PHASES = phases_from_spike((10.0, 22.0), start=0.0, end=38.0)
SHOP_PROC = {"role": "target", "cores": 1.0, "cpu": 0.3}


def _spike_load() -> LoadBuilder:
    """Every endpoint slows fiftyfold in the spike (10-22 s), fine before and after."""
    load = LoadBuilder()
    for endpoint in (ITEMS, ITEM, POST, ORDER):
        load.add(endpoint, range(10), ok=10, latency_ms=8)
        load.add(endpoint, range(10, 22), ok=30, latency_ms=400)
        load.add(endpoint, range(22, 38), ok=10, latency_ms=8)
    return load


def _spike_context(tmp_path: Path, hot: str) -> AnalysisContext:
    """The shop under a spike; process ``hot`` at a full core from 11 s."""
    procs = {name: {0: dict(SHOP_PROC)} for name in ("gateway", "catalog", "orders")}
    procs[hot][11] = {"cpu": 0.99}
    return make_context(
        shop_experiment(fault=False),
        _spike_load().view,
        SPIKE_PHASES,
        run_dir=tmp_path,
        builtin_shop=True,
        resources=Resources(from_rig(rig_samples(38, procs))),
    )


def test_a_spike_claims_no_cascade(tmp_path: Path) -> None:
    """Every endpoint slowed down under the spike, whatever saturated first (the orders
    service, the gateway) or nothing: a spike faults no dependency, so no endpoint is outside
    a footprint and the detector does not apply (the spike's SLOs judge the overload)."""
    detector = CascadingFailureDetector()
    for hot in ("orders", "gateway"):
        ctx = _spike_context(tmp_path, hot)
        assert ctx.spike and ctx.phase("fault") == SPIKE_PHASES[1]
        assert not detector.applies(ctx)
    quiet = make_context(
        shop_experiment(fault=False),
        _spike_load().view,
        SPIKE_PHASES,
        run_dir=tmp_path,
        builtin_shop=True,
    )
    assert not detector.applies(quiet)
