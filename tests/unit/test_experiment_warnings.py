"""Warnings about valid files (experiment/advice.py): too little load after the last heal to
judge recovery, and bare-number timeouts of a minute or more. Exit 0, shown by validate and
run --dry-run, in text and in --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from resilience.cli import app
from resilience.experiment import load_experiment, parse_experiment

REPO = Path(__file__).resolve().parents[2]

SHORT_WATCH = """\
name: short-watch
load:
  stages: [{duration: 1m, users: 2, spawn_rate: 2}]
  workload:
    requests: [{path: /catalog/items}]
faults: [{at: 30s, duration: 20s, proxy: postgres, type: hang}]
slo:
  recovery: {within: 30s}
"""
NUMBERS = "last heal at 50s, load ends at 60s, recovery needs 35s"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A machine with no stack: a dry run only reads."""
    monkeypatch.chdir(tmp_path)
    return {
        "RESILIENCE_STATE_DIR": str(tmp_path / "state"),
        "RESILIENCE_HOME": str(tmp_path / "home"),
        "RESILIENCE_PORT_OFFSET": "4700",
        "COLUMNS": "400",
    }


def invoke(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_validate_warns_when_recovery_cannot_be_judged(env: dict[str, str], tmp_path: Path) -> None:
    """A fault healing at 50 s, 1 min of load, within 30s: exit 0 with the numbers, at the
    fault's line, in text and in --json."""
    path = tmp_path / "short.yaml"
    path.write_text(SHORT_WATCH)
    result = invoke(env, "validate", str(path))
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert text.startswith("ok: short-watch")
    assert (
        "warning: short.yaml:6, at faults[0].duration: too little load after the last heal" in text
    )
    assert NUMBERS in text and "slow_recovery can only be inconclusive" in text
    result = invoke(env, "validate", str(path), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["valid"] is True
    (warning,) = doc["warnings"]
    assert warning["line"] == 6 and warning["path"] == "faults[0].duration"
    assert NUMBERS in warning["message"] and warning["got"] == "10s"


def test_dry_run_shows_the_same_warning(env: dict[str, str], tmp_path: Path) -> None:
    """run --dry-run (text and --json) carries the warning; the exit code stays 0."""
    path = tmp_path / "short.yaml"
    path.write_text(SHORT_WATCH)
    result = invoke(env, "run", str(path), "--dry-run", "--json")
    doc = json.loads(result.stdout)
    assert [w["path"] for w in doc["warnings"]] == ["faults[0].duration"]
    assert NUMBERS in doc["warnings"][0]["message"]
    result = invoke(env, "run", str(path), "--dry-run")
    assert NUMBERS in " ".join(result.output.split())


def test_enough_load_after_the_heal_warns_nothing() -> None:
    """35 s of load after the heal is enough for within 30s + 5 stable seconds."""
    ok = parse_experiment(
        SHORT_WATCH.replace("at: 30s, duration: 20s", "at: 10s, duration: 15s"), file="x.yaml"
    )
    assert ok.warnings == ()


@pytest.mark.parametrize(
    ("written", "warns"),
    [("500", True), ("60", True), ("'90'", True), ("500ms", False), ("30", False),
     ("2m", False), ("59.5", False)],
)  # fmt: skip
def test_a_bare_timeout_of_a_minute_or_more_warns(written: str, warns: bool) -> None:
    """Bare numbers are seconds in every duration field; in a timeout 500 means 500 s,
    accepted, with a warning that says so and how to write milliseconds."""
    text = SHORT_WATCH.replace("at: 30s, duration: 20s", "at: 10s, duration: 15s").replace(
        "  workload:", f"  client_timeout: {written}\n  workload:"
    )
    experiment = parse_experiment(text, file="x.yaml")
    found = [w for w in experiment.warnings if w.path == "load.client_timeout"]
    assert bool(found) is warns
    if warns and written == "500":
        (warning,) = found
        assert warning.line == 4
        assert "500 = 500 s" in warning.message
        assert "write 500ms if you meant milliseconds" in (warning.expected or "")
        assert experiment.load.client_timeout == 500.0


def test_a_timeout_from_the_environment_is_never_shown() -> None:
    """Values from ${env:...} are secrets: they are not warned about (nor echoed)."""
    text = SHORT_WATCH.replace("at: 30s, duration: 20s", "at: 10s, duration: 15s").replace(
        "  workload:", "  client_timeout: ${env:T}\n  workload:"
    )
    experiment = parse_experiment(text, file="x.yaml", environ={"T": "500"})
    assert experiment.warnings == ()


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=str)
def test_the_catalogue_has_no_warnings(path: Path) -> None:
    """No catalogue experiment (nor any of its profiles) warns."""
    base = load_experiment(path)
    for name in [None, *base.profiles]:
        assert load_experiment(path, profile=name).warnings == (), name


def test_a_real_run_prints_the_warning_before_it_starts(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`run` itself (not only validate and --dry-run) says it on stderr before anything
    starts: here it then stops at the missing stack (--no-stack, exit 3)."""
    path = tmp_path / "short.yaml"
    path.write_text(SHORT_WATCH)
    result = invoke(env, "run", str(path), "--no-stack")
    assert result.exit_code == 3
    text = " ".join(result.output.split())
    assert "warning: short.yaml:6, at faults[0].duration" in text
    assert NUMBERS in text
    assert text.index("warning:") < text.index("stack")
