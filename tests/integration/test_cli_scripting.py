"""The CLI for scripts, on the real stack: `run --json` prints one verdict record that
matches the shipped schema, and `run --dry-run` starts nothing, writes nothing and leaves
Toxiproxy's proxies as they were."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from resilience.cli.verdict import verdict_schema
from resilience.stack._process import all_processes
from tests.integration._runs import cli, read_journal, toxiproxy_state
from tests.integration.conftest import StackHandle

pytestmark = [pytest.mark.integration]

CATALOGUE = Path(__file__).resolve().parents[2] / "resilience" / "experiment" / "catalogue"


def _descendants_of_this_process() -> set[tuple[int, int]]:
    """(pid, start time) of every live process below this test process."""
    processes = all_processes()
    children: dict[int, list[int]] = {}
    for info in processes:
        children.setdefault(info.ppid, []).append(info.pid)
    start = {info.pid: info.start_ticks for info in processes}
    found: set[tuple[int, int]] = set()
    todo = [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add((child, start[child]))
            todo.append(child)
    return found


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content (the record of what a dry run may not change)."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix not in (".log",) and "pgdata" not in path.parts
        and "prometheus" not in path.parts and "jaeger" not in path.parts
    }  # fmt: skip


@pytest.mark.slow
def test_run_json_prints_one_verdict_record_that_matches_the_schema(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """A real smoke run with --json: stdout is one record (schema-valid), progress on stderr."""
    out = tmp_path / "run"
    done = cli(
        hardened_shop, "run", "db-hang", "--profile", "smoke", "--shop-mode", "hardened",
        "--json", "--out", str(out), "--junit", str(tmp_path / "junit.xml"), timeout=240,
    )  # fmt: skip
    record = json.loads(done.stdout)  # exactly one document: anything else fails to parse
    jsonschema.validate(record, verdict_schema())
    journal = read_journal(out)
    assert journal is not None
    assert done.returncode == record["exit_code"] == journal["exit_code"], done.stderr[-2000:]
    assert record["status"] == journal["status"] and record["status"] in ("passed", "failed")
    assert record["run_dir"] == str(out)
    assert record["reports"]["junit_copy"] == str(tmp_path / "junit.xml")
    for kind in ("html", "junit", "markdown"):
        assert Path(record["reports"][kind]).is_file(), kind
    assert record["findings"] == journal["findings"]
    assert record["slo"] == journal["slo"] and record["recovery"] == journal["recovery"]
    assert [p["name"] for p in record["phases"]] == ["baseline", "fault", "recovery"]
    assert record["faults"][0]["applied_at"] is not None
    assert record["faults"][0]["healed_at"] is not None
    assert "fault applied" in done.stderr and "verdict" in done.stderr


def test_dry_run_starts_nothing_writes_nothing_and_leaves_the_proxies(
    fragile_shop: StackHandle, tmp_path: Path
) -> None:
    """--dry-run asking for a restart and a new proxy: it says so, and does neither."""
    experiment = tmp_path / "db-hang-extra.yaml"
    experiment.write_text(
        (CATALOGUE / "db-hang.yaml").read_text()
        + "proxies:\n  - {name: extra, listen: 127.0.0.1:27999, upstream: 127.0.0.1:27998}\n"
    )
    out = tmp_path / "run"
    stack_processes = {(p.pid, p.start_ticks) for p in fragile_shop.stack.processes()}
    proxies = toxiproxy_state(fragile_shop)
    state = _tree(fragile_shop.state)
    children = _descendants_of_this_process()

    done = cli(
        fragile_shop, "run", str(experiment), "--profile", "smoke", "--shop-mode", "hardened",
        "--set", "load.arrival_rate.0.rps=5", "--dry-run", "--json", "--out", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    actions = {c["name"]: c["action"] for c in plan["stack"]["components"]}
    assert actions == {
        "postgres": "keep", "toxiproxy": "keep", "jaeger": "keep", "prometheus": "keep",
        "catalog": "restart", "orders": "restart", "gateway": "restart",
    }  # fmt: skip
    assert all(c["state"] == "running" for c in plan["stack"]["components"])
    assert {p["name"]: p["action"] for p in plan["proxies"]} == {
        "postgres": "keep", "orders": "keep", "catalog": "keep", "extra": "create",
    }  # fmt: skip
    assert plan["load"]["arrival_rate"][0]["rps"] == 5
    assert plan["faults"][0]["proxy"] == "postgres" and plan["faults"][0]["at"] == 8.0
    assert plan["ready"] is True, plan["problems"]

    assert _descendants_of_this_process() == children  # no process left behind
    assert {(p.pid, p.start_ticks) for p in fragile_shop.stack.processes()} == stack_processes
    assert fragile_shop.stack.shop_mode() == "fragile"  # nothing was restarted
    assert toxiproxy_state(fragile_shop) == proxies  # no proxy created, no toxic added
    assert _tree(fragile_shop.state) == state  # the stack's record and configs untouched
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db-hang-extra.yaml"]
