"""compare_runs and `resilience compare`: regressions found, none invented, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resilience.cli import app
from resilience.errors import ExperimentError
from resilience.histogram import Histogram
from resilience.report.compare import Rules, Side, _judge_latency, compare_runs
from resilience.rundir.journal import Journal, RecoveryRecord
from resilience.testing.sample_run import write_sample_run

LONG = {"duration": 100, "fault": (30.0, 65.0), "rate": 4}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Long runs (>= 30 one-second samples per phase) and smoke runs, good and bad."""
    root = tmp_path_factory.mktemp("runs")
    made = {
        "good": write_sample_run(root / "good", variant="hardened", seed=1, **LONG),  # type: ignore[arg-type]
        "good2": write_sample_run(root / "good2", variant="hardened", seed=2, **LONG),  # type: ignore[arg-type]
        "bad": write_sample_run(root / "bad", variant="fragile", seed=3, **LONG),  # type: ignore[arg-type]
        "smoke_good": write_sample_run(root / "smoke_good", variant="hardened", seed=4),
        "smoke_good2": write_sample_run(root / "smoke_good2", variant="hardened", seed=5),
        "smoke_bad": write_sample_run(root / "smoke_bad", variant="fragile", seed=6),
    }
    return {name: root / name for name in made}


def test_two_good_runs_do_not_regress(runs: dict[str, Path]) -> None:
    """Same behaviour, different random draws: no regression, judged by Mann-Whitney."""
    comparison = compare_runs(runs["good"], runs["good2"])
    assert comparison.regressions == []
    assert not comparison.regressed
    overall = [d for d in comparison.deltas if d.endpoint is None]
    assert [d.phase for d in overall] == ["baseline", "fault", "recovery"]
    assert all(d.latency.method == "mann-whitney" for d in overall)
    assert comparison.findings_added == comparison.findings_removed == []


def test_bad_run_regresses_against_good(runs: dict[str, Path]) -> None:
    """The fragile run regresses in the fault phase on catalog latency and errors, and recovery."""
    comparison = compare_runs(runs["good"], runs["bad"])
    assert comparison.regressed
    catalog = next(
        d for d in comparison.deltas if d.phase == "fault" and d.endpoint == "GET /catalog/items"
    )
    assert catalog.latency.outcome == "regression"
    assert catalog.latency.method == "mann-whitney"
    assert catalog.errors.outcome == "regression"
    baseline = [d for d in comparison.deltas if d.phase == "baseline"]
    assert all(d.latency.outcome == "same" for d in baseline)
    assert comparison.recovery.outcome == "regression"
    assert {(f.kind, f.endpoint) for f in comparison.findings_added} >= {
        ("cascading_failure", "GET /catalog/items"),
        ("timeout", "POST /orders"),
    }
    assert comparison.regressions[0] == "status: A passed, B failed"


def test_improvement_is_not_a_regression(runs: dict[str, Path]) -> None:
    """B better than A (bad → good) is reported as improvement, not regression."""
    comparison = compare_runs(runs["bad"], runs["good"])
    assert not comparison.regressed
    catalog = next(
        d for d in comparison.deltas if d.phase == "fault" and d.endpoint == "GET /catalog/items"
    )
    assert catalog.latency.outcome == "improvement"
    assert comparison.findings_removed


def test_short_runs_fall_back_to_the_threshold_rule(runs: dict[str, Path]) -> None:
    """Under 30 samples per phase the judgement uses the documented threshold rule."""
    same = compare_runs(runs["smoke_good"], runs["smoke_good2"])
    assert not same.regressed
    assert all(d.latency.method == "threshold" for d in same.deltas)
    worse = compare_runs(runs["smoke_good"], runs["smoke_bad"])
    catalog = next(
        d for d in worse.deltas if d.phase == "fault" and d.endpoint == "GET /catalog/items"
    )
    assert catalog.latency.outcome == "regression"
    assert catalog.latency.method == "threshold"
    assert "worse by > 25% and > 50 ms" in catalog.latency.reason


def test_threshold_rule_edges(runs: dict[str, Path]) -> None:
    """A looser rule (p95 must double and rise 10 s) stops calling the smoke run a latency regression."""
    rules = Rules(p95_ratio=1.0, p95_abs_ms=10_000, latency_floor_ms=10_000)
    comparison = compare_runs(runs["smoke_good"], runs["smoke_bad"], rules=rules)
    assert all(d.latency.outcome != "regression" for d in comparison.deltas)
    assert comparison.regressed  # errors, recovery and findings still regress


def test_recovered_to_not_recovered(tmp_path: Path) -> None:
    """A run that no longer recovers is a regression even with equal numbers."""
    for name in ("a", "b"):
        write_sample_run(tmp_path / name, variant="hardened", load_files=False)
    journal = Journal(
        tmp_path / "b" / "journal.json", Journal.read(tmp_path / "b" / "journal.json")
    )
    journal.update(recovery=RecoveryRecord(seconds=None, budget_seconds=5.0, recovered=False))
    comparison = compare_runs(tmp_path / "a", tmp_path / "b")
    assert comparison.recovery.outcome == "regression"
    assert "B did not recover" in comparison.recovery.reason
    assert "no load data for A and B" in comparison.notes[0]
    assert comparison.deltas == []


def test_different_experiments_refused_unless_forced(tmp_path: Path) -> None:
    """Runs of different experiments are not comparable (exit 2) unless --force."""
    write_sample_run(tmp_path / "a", load_files=False)
    write_sample_run(tmp_path / "b", experiment="db-outage", load_files=False)
    with pytest.raises(ExperimentError, match="different experiments"):
        compare_runs(tmp_path / "a", tmp_path / "b")
    forced = compare_runs(tmp_path / "a", tmp_path / "b", force=True)
    assert any("different experiments" in note for note in forced.notes)


def test_cli_exit_codes(runs: dict[str, Path], tmp_path: Path) -> None:
    """`resilience compare` exits 1 on regression, 0 without, 2 for different experiments."""
    runner = CliRunner()
    bad = runner.invoke(app, ["compare", str(runs["good"]), str(runs["bad"])])
    assert bad.exit_code == 1, bad.output
    assert "REGRESSION" in bad.output
    good = runner.invoke(app, ["compare", str(runs["good"]), str(runs["good2"])])
    assert good.exit_code == 0, good.output
    assert "no regression" in good.output
    write_sample_run(tmp_path / "other", experiment="db-outage", load_files=False)
    other = runner.invoke(app, ["compare", str(runs["good"]), str(tmp_path / "other")])
    assert other.exit_code == 2
    assert "different experiments" in other.output
    missing = runner.invoke(app, ["compare", str(runs["good"]), str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_cli_json(runs: dict[str, Path]) -> None:
    """--json prints a machine-readable comparison with the regressions listed."""
    result = CliRunner().invoke(app, ["compare", "--json", str(runs["good"]), str(runs["bad"])])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["regressed"] is True
    assert data["regressions"]
    assert {d["phase"] for d in data["deltas"]} == {"baseline", "fault", "recovery"}
    assert data["rules"]["p95_ratio"] == 0.25


def test_findings_are_grouped_by_kind() -> None:
    """group_by_kind: one group per kind, its endpoints in order, the worst severity."""
    from resilience.report.compare import FindingChange, group_by_kind

    changes = [
        FindingChange("slow_recovery", "GET /a", "warning", False, "slow"),
        FindingChange("timeout", "POST /orders", "critical", True, "timed out"),
        FindingChange("slow_recovery", "GET /b", "critical", True, "slow"),
        FindingChange("slow_recovery", "", "info", False, "slow overall"),
    ]
    groups = group_by_kind(changes)
    assert [g.kind for g in groups] == ["slow_recovery", "timeout"]
    slow = groups[0]
    assert slow.endpoints == ("GET /a", "GET /b")
    assert slow.severity == "critical" and slow.fails_run
    assert slow.summaries == ("slow", "slow overall")
    assert slow.where == " on GET /a, GET /b"


def test_cli_prints_one_line_per_finding_kind(runs: dict[str, Path]) -> None:
    """`compare` text: each added kind once, with its endpoints listed; JSON has the groups."""
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(runs["good"]), str(runs["bad"])])
    added = [line for line in result.output.splitlines() if line.startswith("finding added: ")]
    kinds = [line.split()[2] for line in added]
    assert kinds and len(kinds) == len(set(kinds)), added
    data = json.loads(
        runner.invoke(app, ["compare", "--json", str(runs["good"]), str(runs["bad"])]).stdout
    )
    grouped = data["findings_added_by_kind"]
    assert [g["kind"] for g in grouped] == kinds
    for group, line in zip(grouped, added, strict=True):
        for endpoint in group["endpoints"]:
            assert endpoint in line
    many = [g for g in grouped if len(g["endpoints"]) > 1]
    assert many, "the fragile sample run has a finding about several endpoints"
    assert sum(1 for r in data["regressions"] if r.startswith("new finding ")) == sum(
        1 for g in grouped if g["fails_run"]
    )


def _side(latencies_ms: list[float]) -> tuple[Side, Histogram]:
    histogram = Histogram.from_values([int(ms * 1000) for ms in latencies_ms])
    p50, p95, p99 = histogram.percentiles_ms((50.0, 95.0, 99.0))
    return Side(len(latencies_ms), 0.0, p50, p95, p99), histogram


def test_a_few_dozen_requests_are_inconclusive_never_a_regression() -> None:
    """A phase of 30 requests whose p95 moved 16 ms -> 72 ms: too few to tell from noise."""
    a, ha = _side([10.0] * 28 + [16.0] * 2)
    b, hb = _side([10.0] * 27 + [72.0] * 3)
    judged = _judge_latency(a, b, [], [], Rules(), tails=(ha, hb))
    assert judged.outcome == "inconclusive"
    assert "too few" in judged.reason


def test_a_p95_moved_by_chance_is_not_a_regression() -> None:
    """Among 200 requests, a p95 that jumps because a handful of slow ones landed in B's
    tail is not significantly more requests above A's p95: same, not regression."""
    a, ha = _side([10.0] * 189 + [20.0] * 11)
    b, hb = _side([10.0] * 188 + [20.0] * 1 + [90.0] * 11)
    judged = _judge_latency(a, b, [], [], Rules(), tails=(ha, hb))
    assert b.p95 is not None and a.p95 is not None and b.p95 - a.p95 > 50
    assert judged.outcome != "regression"


def test_a_grown_tail_is_a_regression() -> None:
    """A fifth of B's requests at or above A's p95 (a tenth of A's): significant, and past
    the threshold."""
    a, ha = _side([10.0] * 180 + [20.0] * 20)
    b, hb = _side([10.0] * 160 + [200.0] * 40)
    judged = _judge_latency(a, b, [], [], Rules(), tails=(ha, hb))
    assert judged.outcome == "regression"
