"""run --dry-run: the resolved plan and what would be started, with nothing started or written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from resilience.cli import app

OPEN_MODEL = """\
name: own-service
target: {url: http://127.0.0.1:9000}
proxies:
  - {name: cache, listen: 127.0.0.1:26379, upstream: 127.0.0.1:16379}
load:
  arrival_rate: [{duration: 20s, rps: 50}, {duration: 40s, rps: 200}]
  workload:
    requests: [{path: /things, weight: 3}, {method: POST, path: /things, weight: 1}]
faults:
  - {at: 20s, duration: 10s, proxy: cache, type: latency, attributes: {latency: 300ms}}
slo:
  baseline: {p95: 300ms, error_rate: 0.5%}
  recovery: {within: 15s}
checks:
  - {name: no 5xx, promql: 'sum(rate(http_5xx[10s]))', phase: fault, expect: '< 1'}
guards:
  - {load: error_rate, expect: '< 50%', for: 5s}
profiles:
  smoke: {load: {arrival_rate: [{duration: 10s, rps: 20}]}, faults: [{at: 3s, duration: 4s}]}
"""


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An empty machine: no stack record, no programs, ports nobody uses; cwd in tmp_path."""
    monkeypatch.chdir(tmp_path)

    def no_processes(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a dry run started a process: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_processes)
    return {
        "RESILIENCE_STATE_DIR": str(tmp_path / "state"),
        "RESILIENCE_HOME": str(tmp_path / "home"),
        "RESILIENCE_PORT_OFFSET": "4600",
        "COLUMNS": "200",
    }


def dry_run(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["run", *args, "--dry-run", "--json"], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, data


def test_builtin_shop_plan_with_profile_and_set(sandbox: dict[str, str], tmp_path: Path) -> None:
    """db-hang smoke: arrival rate, fault timeline, SLOs per phase, every component to
    start; exit 0."""
    code, plan = dry_run(
        sandbox, "db-hang", "--profile", "smoke", "--set", "load.arrival_rate.0.rps=7",
        "--shop-mode", "fragile",
    )  # fmt: skip
    assert code == 0
    assert plan["profile"] == "smoke" and plan["overrides"] == ["load.arrival_rate.0.rps=7"]
    assert plan["load"]["model"] == "open" and plan["load"]["stages"] == []
    assert plan["load"]["arrival_rate"] == [{"start": 0.0, "duration": 26.0, "rps": 7.0}]
    (fault,) = plan["faults"]
    assert (fault["at"], fault["duration"], fault["end"], fault["proxy"], fault["type"]) == (
        8.0, 8.0, 16.0, "postgres", "hang",
    )  # fmt: skip
    assert [p["name"] for p in plan["phases"]] == ["baseline", "fault", "recovery"]
    assert plan["slo"]["baseline"]["all"]["p95"] == 0.5
    assert plan["slo"]["recovery"]["within"] == 6.0
    assert plan["target"] == {
        "url": "http://127.0.0.1:12600", "builtin": True, "shop_mode": "fragile",
        "shop_options": {},
    }  # fmt: skip
    components = {c["name"]: c for c in plan["stack"]["components"]}
    assert set(components) == {
        "postgres", "toxiproxy", "jaeger", "prometheus", "catalog", "orders", "gateway",
    }  # fmt: skip
    assert all(c["state"] == "stopped" and c["action"] == "start" for c in components.values())
    assert "not installed" in (components["toxiproxy"]["blocker"] or "")
    assert not plan["ready"]
    assert any("toxiproxy cannot start" in p for p in plan["problems"])
    assert {p["name"]: p["action"] for p in plan["proxies"]} == {
        "postgres": "create", "orders": "create", "catalog": "create",
    }  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no state dir, no runs/


def test_open_model_plan_against_another_service(sandbox: dict[str, str], tmp_path: Path) -> None:
    """An arrival-rate experiment with its own target: open stages, its proxy, checks, guards."""
    path = tmp_path / "own.yaml"
    path.write_text(OPEN_MODEL)
    code, plan = dry_run(sandbox, str(path), "--workers", "3")
    assert code == 0
    load = plan["load"]
    assert load["model"] == "open" and load["stages"] == []
    assert load["arrival_rate"] == [
        {"start": 0.0, "duration": 20.0, "rps": 50.0},
        {"start": 20.0, "duration": 40.0, "rps": 200.0},
    ]
    assert load["workers"] == 3
    assert plan["faults"][0]["attributes"] == {"latency": 300}
    assert plan["checks"] == [
        {"name": "no 5xx", "phase": "fault", "promql": "sum(rate(http_5xx[10s]))",
         "expect": "< 1", "severity": "critical"}
    ]  # fmt: skip
    (guard,) = plan["guards"]
    assert guard["load"] == "error_rate" and guard["for"] == 5.0
    assert plan["target"]["url"] == "http://127.0.0.1:9000" and not plan["target"]["builtin"]
    assert {c["name"] for c in plan["stack"]["components"]} == {"toxiproxy", "jaeger", "prometheus"}
    assert plan["proxies"] == [
        {"name": "cache", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:16379",
         "action": "create"}
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["own.yaml"]


def test_no_stack_dry_run_names_what_is_not_running(sandbox: dict[str, str]) -> None:
    """--no-stack --dry-run: nothing would start, and the plan says the run would stop."""
    code, plan = dry_run(sandbox, "db-hang", "--profile", "smoke", "--no-stack")
    assert code == 0
    assert plan["stack"]["managed"] is False
    assert plan["stack"]["components"] == []
    assert any("--no-stack was given but postgres" in p for p in plan["problems"])


def test_text_dry_run_shows_the_plan_and_starts_nothing(sandbox: dict[str, str]) -> None:
    """The text view: the stage table, fault timeline, SLOs, stack and proxies; exit 0."""
    result = CliRunner().invoke(
        app, ["run", "db-hang", "--profile", "smoke", "--dry-run"], env=sandbox
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "dry run: db-hang with profile smoke" in out
    assert "nothing was started or changed" in out
    for part in ("fault timeline", "SLOs", "stack", "Toxiproxy proxies", "would stop the run"):
        assert part in out, part
    assert "postgres" in out and "hang" in out


def test_dry_run_still_refuses_invalid_input(sandbox: dict[str, str]) -> None:
    """A bad --set is exit 2 in a dry run too."""
    result = CliRunner().invoke(
        app, ["run", "db-hang", "--dry-run", "--set", "load.arrival_rate.0.rps=-3"], env=sandbox
    )
    assert result.exit_code == 2
    assert "load.arrival_rate[0].rps" in result.output


def test_dry_run_json_answers_invalid_input_with_a_document(sandbox: dict[str, str]) -> None:
    """--json keeps its promise of one document on stdout for a refused input too (as
    `run --json` and `validate --json` do): not ready, exit 2, the problems as data."""
    code, doc = dry_run(sandbox, "db-hang", "--set", "load.arrival_rate.0.rps=-3")
    assert code == 2
    assert doc["dry_run"] is True and doc["ready"] is False and doc["exit_code"] == 2
    assert doc["problems"][0]["path"] == "load.arrival_rate[0].rps"


def test_a_capacity_target_is_shown_and_a_flat_profile_has_none(sandbox: dict[str, str]) -> None:
    """stress states the guide's 500 req/s: the JSON and the text view say it; its smoke
    profile (a flat load, no breaking point) has no capacity target."""
    code, doc = dry_run(sandbox, "stress")
    assert code == 0 and doc["slo"]["capacity"] == {"rps": 500.0, "users": None}
    text = CliRunner().invoke(app, ["run", "stress", "--dry-run"], env=sandbox).stdout
    assert "breaking point at least 500 req/s" in text
    code, doc = dry_run(sandbox, "stress", "--profile", "smoke")
    assert code == 0 and "capacity" not in doc["slo"]
