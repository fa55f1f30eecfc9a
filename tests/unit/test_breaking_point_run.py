"""A rising load's breaking point end to end: the new keys at the door (exit 2 with file,
place and expected), the live search judge, and a run directory judged and reported."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from resilience.cli import experiments
from resilience.experiment.loader import parse_experiment
from resilience.load.recorder import LiveStats
from resilience.rundir.journal import Journal
from resilience.runner.rejudge import rejudge
from resilience.runner.search import LiveSearch
from resilience.testing.analysis import T0, LoadBuilder
from resilience.testing.sample_run import write_load_files

EP = "GET /catalog/items"
SEARCH = """\
name: search
load:
  search: {search}
  workload:
    requests: [{{name: "GET /catalog/items", path: /catalog/items}}]
slo:
{slo}
"""


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    experiments.register(app)
    return app


def validate(app: typer.Typer, tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "search.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    return result.exit_code, result.output


def test_a_search_and_a_capacity_target_validate(app: typer.Typer, tmp_path: Path) -> None:
    """load.search (users) with slo.capacity is a valid experiment; its steps are stages."""
    text = SEARCH.format(
        search="{users: {from: 10, step: 20, ceiling: 55}, hold: 5s, after: 4s}",
        slo="  baseline: {p95: 500ms}\n  capacity: {rps: 100, users: 20}",
    )
    code, out = validate(app, tmp_path, text)
    assert code == 0, out
    assert "search of users 10 to 55" in out
    experiment = parse_experiment(text, file="s.yaml")
    assert [(s.users, s.duration) for s in experiment.load.resolve_stages()] == [
        (10, 5.0), (30, 5.0), (50, 5.0), (55, 5.0),
    ]  # fmt: skip
    assert experiment.load.model == "closed"
    assert experiment.load.duration == 20.0


def test_a_search_by_rate_is_open_and_bounded(tmp_path: Path) -> None:
    """rps steps are arrival stages; max_duration cuts the last steps."""
    experiment = parse_experiment(
        SEARCH.format(
            search="{rps: {from: 50, step: 50, ceiling: 500}, hold: 10s, max_duration: 35s}",
            slo="  baseline: {error_rate: 1%}",
        ),
        file="s.yaml",
    )
    assert experiment.load.model == "open"
    assert [(s.rps, s.duration) for s in experiment.load.resolve_arrival()] == [
        (50.0, 10.0), (100.0, 10.0), (150.0, 10.0), (200.0, 5.0),
    ]  # fmt: skip
    assert experiment.total_duration == 35.0


@pytest.mark.parametrize(
    ("search", "slo", "line", "place", "expected"),
    [
        (
            "{users: {from: 10, step: 10, ceiling: 5}, hold: 5s}",
            "  baseline: {p95: 500ms}",
            3, "load.search.users.ceiling", "a ceiling of at least 10",
        ),
        (
            "{users: {from: 10.5, step: 10, ceiling: 50}, hold: 5s}",
            "  baseline: {p95: 500ms}",
            3, "load.search.users.from", "a whole number of users",
        ),
        (
            "{users: {from: 1, step: 1, ceiling: 5}, rps: {from: 1, step: 1, ceiling: 5}, hold: 5s}",
            "  baseline: {p95: 500ms}",
            3, "load.search", "exactly one of users and rps",
        ),
        (
            "{rps: {from: 1, step: 1, ceiling: 5}, hold: 100ms}",
            "  baseline: {p95: 500ms}",
            3, "load.search.hold", "a duration from 1s to 1h",
        ),
        (
            "{rps: {from: 1, step: 1, ceiling: 5}, hold: 5s}",
            "  capacity: {rps: 100}",
            3, "load.search", "slo.baseline with a latency percentile or error_rate",
        ),
        (
            "{rps: {from: 1, step: 1, ceiling: 5}, hold: 5s}",
            "  baseline: {p95: 500ms}\n  capacity: {}",
            8, "slo.capacity", "rps (requests per second served) and/or users",
        ),
        (
            "{rps: {from: 1, step: 1, ceiling: 5}, hold: 5s}",
            "  baseline: {p95: 500ms}\n  capacity: {rps: 0}",
            8, "slo.capacity.rps", "a number greater than 0",
        ),
    ],
)  # fmt: skip
def test_bad_search_or_capacity_exits_2_naming_file_place_and_expected(  # noqa: PLR0917
    app: typer.Typer, tmp_path: Path, search: str, slo: str, line: int, place: str, expected: str
) -> None:
    """Every bad new key: exit 2, 'search.yaml:LINE, at PLACE: ... (expected ...'."""
    code, out = validate(app, tmp_path, SEARCH.format(search=search, slo=slo))
    assert code == 2, out
    flat = " ".join(out.split())
    assert f"search.yaml:{line}, at {place}:" in flat, flat
    assert f"expected {expected}" in flat, flat


def test_a_search_with_faults_is_refused(app: typer.Typer, tmp_path: Path) -> None:
    """A fault would pass for the target's limit: load.search and faults do not mix."""
    text = (
        SEARCH.format(
            search="{users: {from: 10, step: 10, ceiling: 50}, hold: 5s}",
            slo="  baseline: {p95: 500ms}",
        )
        + "faults: [{at: 10s, duration: 5s, proxy: postgres, type: hang}]\n"
    )
    code, out = validate(app, tmp_path, text)
    assert code == 2
    assert "at faults:" in out and "expected no faults with load.search" in " ".join(out.split())


def _stats(p95: float | None, completions: int, errors: int = 0) -> LiveStats:
    return LiveStats(
        rps=completions / 3, p50=p95, p95=p95, p99=p95,
        error_rate=errors / completions if completions else None,
        in_flight=0, users=0, completions=completions, errors=errors,
    )  # fmt: skip


def _judge(search: str, slo: str) -> LiveSearch:
    judge = LiveSearch.of(parse_experiment(SEARCH.format(search=search, slo=slo), file="s.yaml"))
    assert judge is not None
    return judge


def _drive(judge: LiveSearch, seconds: int, stats_at: Callable[[int], LiveStats]) -> float | None:
    """Tick the judge once a second (at t + 0.1) with ``stats_at(t)``; when it stops."""
    for t in range(seconds):
        stats = stats_at(t)
        stop = judge.tick(t + 0.1, lambda window, endpoint, stats=stats: stats)
        if stop is not None:
            return stop
    return None


def test_the_live_judge_stops_a_search_after_a_sustained_break() -> None:
    """One slow second is forgiven; five in a row stop the search `after` seconds later."""
    judge = _judge(
        "{users: {from: 10, step: 10, ceiling: 100}, hold: 5s, after: 4s}",
        "  baseline: {p95: 500ms}",
    )
    slow_from, blip = 30, 15
    stop = _drive(judge, 60, lambda t: _stats(0.9 if t >= slow_from or t == blip else 0.05, 100))
    assert judge.broke_at == pytest.approx(34.1)
    assert stop == pytest.approx(38.1)
    assert "p95 of all endpoints 900 ms > 500 ms" in judge.message()


def test_the_live_judge_breaks_on_a_max_limit_as_the_analysis_does() -> None:
    """A baseline with only ``max``: the percentiles stay fast, one request a second takes
    2 s; the live judge stops the search (it ignored ``max`` before)."""
    judge = _judge(
        "{users: {from: 10, step: 10, ceiling: 100}, hold: 5s, after: 2s}",
        "  baseline: {max: 1s}",
    )
    stop = _drive(
        judge,
        40,
        lambda t: dataclasses.replace(_stats(0.05, 100), max=2.0 if t >= 20 else 0.2),
    )
    assert judge.broke_at is not None and judge.broke_at >= 20
    assert stop == pytest.approx(judge.broke_at + 2)
    assert "max of all endpoints 2000 ms > 1000 ms" in judge.message()


def test_the_live_judge_ignores_thin_windows() -> None:
    """Too few completions to judge: no break, however slow."""
    judge = _judge("{users: {from: 1, step: 1, ceiling: 5}, hold: 5s}", "  baseline: {p95: 500ms}")
    for t in range(60):
        assert judge.tick(t + 0.1, lambda w, e: _stats(5.0, 5)) is None


RAMP = """\
name: ramp
load:
  stages:
{stages}
  workload:
    requests: [{{name: "GET /catalog/items", path: /catalog/items}}]
slo:
  baseline: {{p95: 500ms, error_rate: 1%}}
{capacity}
"""


def _ramp_run(run_dir: Path, capacity: str) -> None:
    """A run directory of a ramp 10 -> 100 users that breaks (p95) at 60 s."""
    run_dir.mkdir()
    stages = "\n".join(
        f"    - {{duration: 10s, users: {u}, spawn_rate: 100}}" for u in range(10, 101, 10)
    )
    (run_dir / "experiment.yaml").write_text(RAMP.format(stages=stages, capacity=capacity))
    b = LoadBuilder()
    for s in range(100):
        b.add(EP, [s], ok=10 * (s // 10 + 1), latency_ms=50.0 if s < 60 else 900.0)
    write_load_files(run_dir, b.view)
    journal = Journal.start(run_dir / "journal.json", experiment="ramp", profile=None, t0=T0)
    journal.update(load_end=100.0)
    journal.finish("passed", ended=T0 + 100, exit_code=0, reason="")


@pytest.mark.parametrize(
    ("capacity", "status", "exit_code"),
    [
        ("", "failed", 1),
        ("  capacity: {rps: 50}", "passed", 0),
        ("  capacity: {rps: 80}", "failed", 1),
    ],
)
def test_a_ramp_run_is_judged_by_its_breaking_point_and_reports_it(
    tmp_path: Path, capacity: str, status: str, exit_code: int
) -> None:
    """Journal analysis.breaking_point; every report says it; with a capacity target the
    verdict is the breaking point against it (not the phase's SLOs); without one, as before."""
    run_dir = tmp_path / "run"
    _ramp_run(run_dir, capacity)
    judged = rejudge(run_dir)
    assert (judged.status, judged.exit_code) == (status, exit_code)
    journal = json.loads((run_dir / "journal.json").read_text())
    point = journal["analysis"]["breaking_point"]
    assert point["second"] == 60 and point["load"] == 60 and point["unit"] == "users"
    statement = point["statement"]
    assert statement.startswith("breaking point: 60 users, 60 req/s served, at 60 s")
    if capacity:
        assert [s["phase"] for s in journal["slo"]] == ["capacity"]
        assert journal["reason"].startswith(
            "breaking point below the capacity target" if exit_code else "breaking point: 60"
        )
    else:
        assert {s["phase"] for s in journal["slo"]} == {"baseline"}
    for report in ("summary.md", "junit.xml", "report.html"):
        text = (run_dir / report).read_text()
        assert "breaking point: 60 users, 60 req/s served, at 60 s" in text, report
