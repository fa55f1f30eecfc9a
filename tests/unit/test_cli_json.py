"""--json on list, validate, doctor and run: one JSON document on stdout, exit codes unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner, Result

from resilience.cli import app
from resilience.cli.verdict import SCHEMA_ID, error_record, verdict_record, verdict_schema
from resilience.rundir.journal import Journal
from resilience.runner.orchestrator import RunResult
from resilience.testing.sample_run import write_sample_run

PROBLEM_KEYS = {"file", "line", "path", "message", "expected", "got"}
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


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[Result, Any]:
    """Run the command; return the result and its stdout parsed as one JSON document."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result, json.loads(result.stdout)


def test_list_json_has_every_catalogue_entry() -> None:
    """list --json: the catalogue with durations in seconds and faults, exit 0."""
    result, data = invoke("list", "--json")
    assert result.exit_code == 0
    names = {e["name"] for e in data["experiments"]}
    assert {"db-hang", "db-outage", "normal"} <= names
    hang = next(e for e in data["experiments"] if e["name"] == "db-hang")
    assert hang["valid"] is True and hang["error"] is None
    assert hang["smoke_duration_seconds"] == 26.0
    assert hang["faults"] == ["hang@postgres"]
    assert "smoke" in hang["profiles"]


def test_list_json_reports_an_invalid_entry_with_exit_2(tmp_path: Path) -> None:
    """An invalid file is an entry with valid false and its error; the exit code stays 2."""
    (tmp_path / "good.yaml").write_text(GOOD.replace("demo", "good"))
    (tmp_path / "broken.yaml").write_text("name: [\n")
    result, data = invoke("list", "--dir", str(tmp_path), "--json")
    assert result.exit_code == 2
    by_name = {e["name"]: e for e in data["experiments"]}
    assert by_name["good"]["valid"] is True
    assert by_name["broken"]["valid"] is False and by_name["broken"]["error"]


def test_validate_json_ok(tmp_path: Path) -> None:
    """validate --json on a good file: valid, its profiles with their durations, exit 0."""
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD)
    result, data = invoke("validate", str(path), "--json")
    assert result.exit_code == 0
    assert data["valid"] is True and data["problems"] == []
    assert data["experiment"] == "demo"
    assert data["profiles"] == {"smoke": {"duration_seconds": 20.0}}


def test_validate_json_reports_each_problem_as_an_object(tmp_path: Path) -> None:
    """Every problem: file, line, path, message, expected, got; exit 2; the text on stderr."""
    path = tmp_path / "demo.yaml"
    bad = GOOD.replace("users: 2", "users: '[bold]x'").replace("spawn_rate: 2", "spawn_rate: -1")
    path.write_text(bad)
    result, data = invoke("validate", str(path), "--json")
    assert result.exit_code == 2
    assert data["valid"] is False
    problems = data["problems"]
    assert len(problems) == 2
    for problem in problems:
        assert set(problem) == PROBLEM_KEYS
        assert problem["file"].endswith("demo.yaml")
        assert problem["line"] == 3
        assert problem["expected"] and problem["got"]
    assert {p["path"] for p in problems} == {"load.stages[0].users", "load.stages[0].spawn_rate"}
    assert "'[bold]x'" in {p["got"] for p in problems}
    assert "2 problems" in result.stderr


def test_validate_json_missing_file_is_one_problem() -> None:
    """A file that does not exist is one problem object, exit 2."""
    result, data = invoke("validate", "no-such-experiment.yaml", "--json")
    assert result.exit_code == 2
    (problem,) = data["problems"]
    assert set(problem) == PROBLEM_KEYS
    assert problem["file"] == "no-such-experiment.yaml"
    assert problem["line"] is None


def test_doctor_json_lists_checks_and_exits_3_when_something_is_missing(tmp_path: Path) -> None:
    """doctor --json with no programs installed: healthy false, each check with its fix, exit 3."""
    env = {"RESILIENCE_HOME": str(tmp_path / "home"), "RESILIENCE_STATE_DIR": str(tmp_path / "s")}
    result, data = invoke("doctor", "--json", env=env)
    assert result.exit_code == 3
    assert data["healthy"] is False
    missing = [c for c in data["checks"] if not c["ok"] and c["required"]]
    assert {"toxiproxy-server", "jaeger"} <= {c["name"] for c in missing}
    assert all(c["fix"] for c in missing)


def _assert_one_verdict(result: Result) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(result.stdout)  # one document, nothing else
    jsonschema.validate(record, verdict_schema())
    assert record["exit_code"] == result.exit_code
    return record


def test_run_json_with_invalid_input_prints_an_error_record() -> None:
    """run --json with an unknown profile: an error record with the problem, exit 2."""
    result = CliRunner().invoke(app, ["run", "db-hang", "--profile", "nope", "--json"])
    record = _assert_one_verdict(result)
    assert result.exit_code == 2
    assert record["status"] == "error" and record["run_dir"] is None
    (problem,) = record["problems"]
    assert problem["path"] == "profiles" and problem["got"] == "'nope'"
    assert "unknown profile" in result.stderr


def test_run_json_without_a_stack_prints_an_error_record_with_exit_3(tmp_path: Path) -> None:
    """run --json --no-stack on a machine where nothing runs: exit 3, its reason, and a run
    directory whose journal says error (it exists from the first moment)."""
    env = {
        "RESILIENCE_STATE_DIR": str(tmp_path / "state"),
        "RESILIENCE_PORT_OFFSET": "4600",
        "COLUMNS": "200",
    }
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["run", "db-hang", "--profile", "smoke", "--no-stack", "--json", "--out", str(out)],
        env=env,
    )
    record = _assert_one_verdict(result)
    assert result.exit_code == 3
    assert record["status"] == "error"
    assert "--no-stack was given" in record["reason"]
    assert "--no-stack was given" in result.stderr
    journal = json.loads((out / "journal.json").read_text())
    assert (journal["status"], journal["exit_code"]) == ("error", 3)
    assert "--no-stack was given" in journal["reason"]
    assert not (tmp_path / "state" / "active-run.json").exists()


@pytest.mark.parametrize(("variant", "status", "code"), [("fragile", "failed", 1),
                                                         ("hardened", "passed", 0)])  # fmt: skip
def test_verdict_record_of_a_run_matches_the_schema(
    tmp_path: Path, variant: str, status: str, code: int
) -> None:
    """The record of a (synthetic) finished run carries the journal's verdict and validates."""
    run_dir = tmp_path / variant
    write_sample_run(run_dir, variant=variant)  # type: ignore[arg-type]
    journal = Journal.read(run_dir / "journal.json")
    assert journal.status == status
    reports = [run_dir / "report.html", run_dir / "junit.xml", run_dir / "summary.md"]
    result = RunResult(run_dir, journal.status, code, "because", journal, reports)
    record = verdict_record(result, experiment="db-hang", profile=None, wall_seconds=12.3456)
    jsonschema.validate(record, verdict_schema())
    assert record["schema"] == SCHEMA_ID
    assert record["reports"]["junit"] == str(run_dir / "junit.xml")
    assert record["wall_seconds"] == 12.346
    assert [f["kind"] for f in record["findings"]] == [f.kind for f in journal.findings]
    assert {p["name"] for p in record["phases"]} == {"baseline", "fault", "recovery"}
    assert record["recovery"] == json.loads(journal.recovery.model_dump_json())


def test_the_schema_refuses_what_scripts_must_not_get() -> None:
    """A passed status with exit 1, or a missing key, does not validate."""
    record = error_record(experiment="x", profile=None, status="error", exit_code=3, reason="r",
                          problems=[])  # fmt: skip
    jsonschema.validate(record, verdict_schema())
    for broken in ({**record, "status": "passed", "exit_code": 1}, {**record, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, verdict_schema())
    without = dict(record)
    del without["findings"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(without, verdict_schema())
