"""Game-day plan files: the example loads, mistakes are located, the schema is a schema."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from resilience.errors import ExperimentError
from resilience.gameday.plan import load_plan, parse_plan, plan_schema, resolve_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "gamedays" / "orders-db.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_plan_resolves() -> None:
    """The shipped runbook loads: db-hang's workload at 20 users, three steps with faults."""
    resolved = load_plan(EXAMPLE)
    assert resolved.level() == {"users": 20, "spawn_rate": 10.0}
    assert resolved.model == "closed"
    assert [s.name for s in resolved.steps] == ["database hang", "slow queries", "database outage"]
    assert [f.describe() for f in resolved.steps[0].faults] == ["hang on postgres"]
    assert resolved.steps[1].faults[0].attributes == {"latency": 300, "jitter": 50}
    assert {"db-hang", "db-outage", "slow-queries"} <= set(resolved.named_faults)
    stages = resolved.experiment.load.stages
    assert stages is not None and stages[0].duration == resolved.max_duration == 7200.0
    assert resolved.experiment.load.client_timeout == 5.0
    assert [g.name for g in resolved.plan.halt] == ["catalog collapses", "orders crawl"]


def test_an_unknown_key_is_located_with_line_path_expected_and_got(tmp_path: Path) -> None:
    """A misspelt key names the file, its line and key path, and suggests the right one."""
    path = write(tmp_path, "name: x\nexperiment: db-hang\nsteps:\n  - name: a\n    hypotesis: hi\n")
    with pytest.raises(ExperimentError) as info:
        load_plan(path)
    text = str(info.value)
    assert "plan.yaml:5" in text and "steps[0].hypotesis" in text
    assert "hypothesis" in text
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("load: {users: 5, rps: 3}\n", ["users (closed model) or rps", "not both"]),
        ("halt: [{load: error_rate}]\n", ["halt[0].expect"]),
        (
            "faults: {x: {proxy: nowhere, type: hang}}\n",
            ["unknown proxy 'nowhere'", "faults.x.proxy"],
        ),
        ("faults: {x: {proxy: postgres, type: latency}}\n", ["faults.x.attributes", "latency"]),
        ("max_duration: 48h\n", ["at most 24h"]),
        (
            "steps: [{name: s, faults: [no-such-fault]}]\n",
            ["unknown fault 'no-such-fault'", "steps[0].faults[0]"],
        ),
        (
            "halt: [{load: error_rate, endpoint: GET /nope, expect: '< 5%'}]\n",
            ["unknown endpoint", "halt[0].endpoint"],
        ),
    ],
)
def test_plan_mistakes_say_where_and_what(tmp_path: Path, body: str, fragments: list[str]) -> None:
    """Each mistake is an ExperimentError (exit 2) naming the key path and what was wrong."""
    path = write(tmp_path, "name: x\nexperiment: db-hang\n" + body)
    with pytest.raises(ExperimentError) as info:
        load_plan(path)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_plan_with_its_own_workload_needs_no_experiment() -> None:
    """load.workload and rps make an open-model session against the built-in shop."""
    plan = parse_plan(
        "name: own\nload:\n  rps: 40\n  workload:\n    requests: [{name: GET /catalog/items, path: /catalog/items}]\n"
    )
    resolved = resolve_plan(plan)
    assert resolved.model == "open" and resolved.level() == {"rps": 40}
    assert resolved.experiment.endpoints() == ["GET /catalog/items"]


def test_the_json_schema_is_valid_and_accepts_the_example() -> None:
    """`gameday schema` prints a Draft 2020-12 schema that the example plan satisfies."""
    schema = plan_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(example)
