"""The validate, list and schema commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from resilience.cli import experiments

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
name: demo
load:
  stages: [{duration: 40s, users: 2, spawn_rate: 2}]
  workload:
    requests: [{path: /catalog/items}]
faults: [{at: 10s, duration: 5s, proxy: postgres, type: hang}]
profiles:
  smoke: {load: {stages: [{duration: 20s}]}, faults: [{at: 5s}]}
"""


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    experiments.register(app)
    return app


def run(app: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_validate_ok_reports_every_profile(app: typer.Typer, tmp_path: Path) -> None:
    """A good file prints 'ok: NAME (...)' with its faults and profiles, exit 0."""
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD)
    code, out = run(app, "validate", str(path))
    assert code == 0
    assert out.startswith("ok: demo (1 fault: hang on postgres; load 40s")
    assert "profiles: smoke 20s" in out


def test_validate_summary_lists_faults_by_start_time(app: typer.Typer, tmp_path: Path) -> None:
    """The summary names the faults in the order the timeline plays them, not by name."""
    path = tmp_path / "demo.yaml"
    path.write_text(
        GOOD.replace(
            "faults: [{at: 10s, duration: 5s, proxy: postgres, type: hang}]",
            "faults: [{at: 20s, duration: 5s, proxy: postgres, type: hang}, {at: 10s, "
            "duration: 5s, proxy: catalog, type: latency, attributes: {latency: 100ms}}]",
        ).replace("faults: [{at: 5s}]", "faults: [{at: 12s}, {at: 5s}]")
    )
    code, out = run(app, "validate", str(path))
    assert code == 0, out
    assert "2 faults: latency on catalog, hang on postgres;" in out


def test_validate_with_profile_and_set(app: typer.Typer, tmp_path: Path) -> None:
    """--profile and --set apply before validation."""
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD)
    code, out = run(app, "validate", str(path), "--profile", "smoke", "--set", "faults.0.at=6s")
    assert code == 0, out
    assert "with profile smoke" in out


def test_validate_errors_exit_2_with_every_problem(app: typer.Typer, tmp_path: Path) -> None:
    """Problems are printed verbatim (brackets and :a: survive) and the exit code is 2."""
    path = tmp_path / "demo.yaml"
    bad = GOOD.replace("users: 2", "users: '[bold]x'")
    path.write_text(bad.replace("path: /catalog/items", 'path: "/{int:a:b}"'))
    code, out = run(app, "validate", str(path))
    assert code == 2
    assert "invalid input" in out
    assert "'[bold]x'" in out
    assert "{int:A:B}" in out
    assert "demo.yaml: 2 problems" in out
    assert "Traceback" not in out


def test_validate_reports_problems_of_each_profile(app: typer.Typer, tmp_path: Path) -> None:
    """Without --profile every profile is checked, and its problems name it."""
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD.replace("faults: [{at: 5s}]", "faults: [{at: 30s}]"))
    code, out = run(app, "validate", str(path))
    assert code == 2
    assert "(profile 'smoke')" in out
    assert "after the load has ended" in out


def test_validate_catalogue_name(app: typer.Typer) -> None:
    """A catalogue name validates like a path."""
    code, out = run(app, "validate", "db-outage")
    assert code == 0, out
    assert out.startswith("ok: db-outage")


def test_list_shows_the_catalogue(app: typer.Typer) -> None:
    """list prints every catalogue entry with its duration and smoke duration."""
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("db-outage", "pool-exhaustion", "normal", "endurance"):
        assert name in result.output
    assert "outage@postgres" in result.output
    assert "20s" in result.output


def test_list_flags_invalid_entries(app: typer.Typer, tmp_path: Path) -> None:
    """An invalid file in the catalogue is shown as invalid and the exit code is 2."""
    (tmp_path / "good.yaml").write_text(GOOD.replace("demo", "good"))
    (tmp_path / "broken.yaml").write_text("name: [\n")
    result = CliRunner().invoke(app, ["list", "--dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "invalid" in result.output
    assert "good" in result.output


def test_schema_prints_json(app: typer.Typer) -> None:
    """schema prints a JSON Schema document on stdout."""
    code, out = run(app, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "resilience experiment"
    assert "load" in schema["properties"]


def test_the_real_app_has_the_commands() -> None:
    """The resilience command exposes validate, list and schema."""
    from resilience.cli import app

    result = CliRunner().invoke(app, ["validate", str(REPO / "experiments" / "db-hang.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok: db-hang" in result.output
