"""Every file of the catalogue (experiments/) loads, with every profile, and keeps its promises."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from resilience.analysis.recovery import MIN_BASELINE_SECONDS
from resilience.experiment import (
    Experiment,
    catalogue_entries,
    catalogue_names,
    experiment_schema,
    find_catalogue_dir,
    load_all_profiles,
)

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "experiments"
FILES = sorted(CATALOGUE.glob("*.yaml"))
FAULT_EXPERIMENTS = {
    "db-outage",
    "db-hang",
    "db-latency",
    "db-flaky",
    "pool-exhaustion",
    "bandwidth",
}
# Fault experiments that keep the closed model (users), and why: docs/load.md, "The
# catalogue's load model". Every other fault experiment drives an arrival rate.
CLOSED_FAULT_EXPERIMENTS = {"pool-exhaustion"}
SEED_LOAD_TESTS = {"normal": 0.001, "stress": 0.01, "spike": 0.05, "endurance": 0.001}
THROUGHPUT_TARGETS = {"rps100": 100, "rps500": 500, "rps1000": 1000}
FRAGILE_DB_POOL = 4


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft202012Validator:
    schema = experiment_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_catalogue_holds_the_documented_experiments() -> None:
    """The catalogue has the six fault experiments and the four seed load tests."""
    assert set(catalogue_names(CATALOGUE)) == FAULT_EXPERIMENTS | set(SEED_LOAD_TESTS)


def test_package_finds_the_repository_catalogue() -> None:
    """The package's catalogue directory is the repository's experiments/."""
    found = find_catalogue_dir()
    assert found is not None
    assert found.resolve() == CATALOGUE.resolve()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_file_and_profile_validates(path: Path) -> None:
    """Base document and every profile validate; the name matches the file name."""
    loaded = load_all_profiles(path)
    assert loaded[None].name == path.stem
    assert "smoke" in loaded
    assert set(loaded) == {None, *loaded[None].profiles}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_file_matches_the_json_schema(
    path: Path, schema_validator: jsonschema.Draft202012Validator
) -> None:
    """The exported JSON Schema (itself valid) accepts every catalogue file as written."""
    schema_validator.validate(yaml.safe_load(path.read_text()))


def test_schema_rejects_unknown_keys_and_bad_durations(
    schema_validator: jsonschema.Draft202012Validator,
) -> None:
    """The schema forbids unknown keys and malformed durations, like the loader."""
    document = yaml.safe_load((CATALOGUE / "db-outage.yaml").read_text())
    document["load"]["duraton"] = "1m"
    assert not schema_validator.is_valid(document)
    document = yaml.safe_load((CATALOGUE / "db-outage.yaml").read_text())
    document["faults"][0]["at"] = "30 sec"
    assert not schema_validator.is_valid(document)


def _smoke(path: Path) -> tuple[Experiment, Experiment]:
    loaded = load_all_profiles(path)
    return loaded[None], loaded["smoke"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_smoke_profiles_fit_the_ci_budget(path: Path) -> None:
    """Smoke: 20 s of load without faults, 26 s with, 40 s for the spike (a baseline, the
    spike and a recovery to measure); well under the 60 s budget; at most 20 users (250 at
    the spike's peak), or at most 50 requests a second."""
    _, smoke = _smoke(path)
    if path.stem == "spike":
        assert smoke.total_duration == 40
        assert max(s.users for s in smoke.load.resolve_stages()) <= 250
    elif smoke.load.model == "open":
        assert smoke.total_duration == (26 if smoke.faults else 20)
        assert max(s.rps for s in smoke.load.arrival_rate or []) <= 50
    else:
        assert smoke.total_duration == (26 if smoke.faults else 20)
        assert max(s.users for s in smoke.load.resolve_stages()) <= 20
    assert smoke.load.client_timeout == 5
    assert smoke.builtin


def test_the_spike_seed_test_is_phased_by_its_spike() -> None:
    """Full and smoke: baseline / spike / recovery; the smoke baseline holds the steady
    seconds a recovery band needs after the warm-up, and its recovery is long enough to
    judge its budget with the stable seconds."""
    base, smoke = _smoke(CATALOGUE / "spike.yaml")
    assert [(p.name, p.start, p.end) for p in base.scheduled_phases()] == [
        ("baseline", 0, 300),
        ("spike", 300, 429),
        ("recovery", 429, 900),
    ]
    spike = smoke.spike()
    assert spike is not None and spike.peak >= 10 * spike.before
    assert spike.start - smoke.load.warmup >= MIN_BASELINE_SECONDS
    budget = smoke.slo.recovery.within if smoke.slo.recovery else None
    assert budget is not None
    assert smoke.total_duration - spike.end >= budget + smoke.recovery.stable_seconds


@pytest.mark.parametrize("name", sorted(FAULT_EXPERIMENTS))
def test_fault_experiments_keep_their_timeline(name: str) -> None:
    """Full: 1 min baseline, 1 min fault, 2 min recovery at 50 requests a second (or 50
    users); smoke: fault at 8 s for 8 s (six baseline seconds after the 2 s warm-up: enough
    to build a recovery band), and enough recovery to judge a 6 s budget with 3 stable
    seconds."""
    base, smoke = _smoke(CATALOGUE / f"{name}.yaml")
    phases = [(p.name, p.start, p.end) for p in base.scheduled_phases()]
    assert phases == [("baseline", 0, 60), ("fault", 60, 120), ("recovery", 120, 240)]
    if base.load.model == "open":
        assert {s.rps for s in base.load.arrival_rate or []} == {50}
    else:
        assert {s.users for s in base.load.resolve_stages()} == {50}
    (fault,) = smoke.faults
    assert fault.at == 8 and fault.duration == 8
    assert fault.at - smoke.load.warmup >= MIN_BASELINE_SECONDS
    budget = smoke.slo.recovery.within if smoke.slo.recovery else None
    assert budget is not None
    assert smoke.total_duration - fault.end >= budget + smoke.recovery.stable_seconds
    assert base.slo.recovery is not None and base.slo.recovery.within == 30
    assert base.builtin


@pytest.mark.parametrize(("name", "error_rate"), sorted(SEED_LOAD_TESTS.items()))
def test_seed_load_tests_use_presets_and_the_guide_slos(name: str, error_rate: float) -> None:
    """The seed load tests use their preset, no faults, and the guide's SLOs."""
    base, _ = _smoke(CATALOGUE / f"{name}.yaml")
    assert base.load.preset == name
    assert base.faults == []
    baseline = base.slo.baseline
    assert baseline is not None
    assert (baseline.p50, baseline.p95, baseline.p99) == (0.2, 0.5, 1.0)
    assert baseline.error_rate == pytest.approx(error_rate)


@pytest.mark.parametrize("name", sorted(FAULT_EXPERIMENTS))
def test_fault_experiments_run_the_open_model(name: str) -> None:
    """Full and smoke drive an arrival rate (no coordinated omission), except the
    experiments kept closed on purpose; smoke at the rate its 20 closed-model users made
    (19-21 req/s measured), db-latency's at 30 (at 20 the fragile shop's order backlog was
    at the edge of the gateway's pool), full at 50 req/s (50 users, 1 s mean think time)."""
    base, smoke = _smoke(CATALOGUE / f"{name}.yaml")
    expected = "closed" if name in CLOSED_FAULT_EXPERIMENTS else "open"
    assert (base.load.model, smoke.load.model) == (expected, expected)
    if expected == "open":
        rate = 30 if name == "db-latency" else 20
        assert [s.rps for s in smoke.load.arrival_rate or []] == [rate]
        assert smoke.load.workload.wait.max > 0  # kept for closed-model use (game days)


@pytest.mark.parametrize("name", sorted(SEED_LOAD_TESTS))
def test_seed_load_tests_have_open_model_variants(name: str) -> None:
    """Each seed load test keeps its users and offers the guide's throughput targets as
    profiles: rps100, rps500, rps1000 over the preset's duration (spike: a tenth of the
    target around two minutes at the target, like the preset's 100 -> 1000 -> 100 users)."""
    loaded = load_all_profiles(CATALOGUE / f"{name}.yaml")
    base = loaded[None]
    assert base.load.model == "closed" and loaded["smoke"].load.model == "closed"
    assert "rps100, rps500, rps1000" in base.description.split(". ")[0]
    for profile, target in THROUGHPUT_TARGETS.items():
        variant = loaded[profile]
        assert variant.load.model == "open" and variant.load.preset is None
        rates = [(s.duration, s.rps) for s in variant.load.arrival_rate or []]
        assert variant.total_duration == base.total_duration
        if name == "spike":
            assert rates == [(300, target / 10), (120, target), (480, target / 10)]
        else:
            assert rates == [(base.total_duration, target)]
        # A flat rate has no breaking point: a capacity target is the ramp's alone.
        assert variant.slo == base.slo.model_copy(update={"capacity": None})
        assert variant.load.workload == base.load.workload


def _pool_demand(experiment: Experiment) -> float:
    """Connections the order traffic needs at the fault's latency (Little's law)."""
    workload = experiment.load.workload
    assert workload.requests is not None
    total = sum(r.weight for r in workload.requests)
    orders = sum(r.weight for r in workload.requests if r.path.startswith("/orders"))
    share = orders / total
    latency_ms = experiment.faults[0].attributes["latency"]
    assert isinstance(latency_ms, int)
    latency = latency_ms / 1000
    think = (workload.wait.min + workload.wait.max) / 2
    users = max(s.users for s in experiment.load.resolve_stages())
    response = (1 - share) * 0.01 + share * latency
    order_rate = share * users / (think + response)
    return order_rate * latency


def test_pool_exhaustion_is_sized_to_saturate_the_fragile_pool() -> None:
    """The latency and load of pool-exhaustion (full and smoke) need more than 4 connections."""
    base, smoke = _smoke(CATALOGUE / "pool-exhaustion.yaml")
    assert _pool_demand(base) > 1.5 * FRAGILE_DB_POOL
    assert _pool_demand(smoke) > 1.3 * FRAGILE_DB_POOL
    assert "4" in base.description


def test_catalogue_entries_for_list() -> None:
    """The list command's rows: no errors, durations, smoke durations, faults."""
    entries = {e.name: e for e in catalogue_entries(CATALOGUE)}
    assert set(entries) == FAULT_EXPERIMENTS | set(SEED_LOAD_TESTS)
    assert all(e.error is None for e in entries.values())
    assert entries["db-outage"].faults == ("outage@postgres",)
    assert entries["db-outage"].duration == 240
    assert entries["normal"].smoke_duration == 20
    assert entries["db-hang"].description.endswith(".")
