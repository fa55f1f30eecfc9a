"""A stack started with RESILIENCE_PORT_OFFSET, used by a command without it: the record
(stack.json) says "running", the ports say 8474. The dry run and the run must agree, refuse
to use it, and say which stack and which offset. Fake state only: no stack is started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from resilience.cli import app
from resilience.errors import StackError
from resilience.stack import Ports, StackConfig, StackPaths
from resilience.stack._process import proc_info
from resilience.stack.state import ComponentRecord, StackState, save_state
from resilience.stack.supervisor import Stack

OFFSET = 2100
TOXIPROXY = Ports().toxiproxy + OFFSET  # 10574

OWN = """\
name: own
target: {url: "http://127.0.0.1:9000"}
proxies: [{name: db, listen: "127.0.0.1:26000", upstream: "127.0.0.1:5432"}]
load:
  stages: [{duration: 20s, users: 2, spawn_rate: 2}]
  workload: {requests: [{path: /items}]}
faults: [{at: 5s, duration: 5s, proxy: db, type: outage}]
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A stack record whose Toxiproxy is alive (this very process) on the offset port."""
    info = proc_info(os.getpid())
    assert info is not None
    record = ComponentRecord(
        name="toxiproxy",
        pid=os.getpid(),
        pgid=info.pgid,
        start_ticks=info.start_ticks,
        port=TOXIPROXY,
        ports={"toxiproxy": TOXIPROXY},
        log=str(tmp_path / "toxiproxy.log"),
        started_at="2026-01-01T00:00:00.000Z",
    )
    directory = tmp_path / "state"
    directory.mkdir()
    save_state(directory / "stack.json", StackState().with_record(record))
    return directory


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """No process is started; every connection is recorded and refused."""
    attempts: list[Any] = []

    def no_processes(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"started a process: {args!r}")

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr(subprocess, "Popen", no_processes)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def config(state: Path, offset: int) -> StackConfig:
    return StackConfig(
        paths=StackPaths(home=state.parent / "home", state=state),
        ports=Ports().shifted(offset),
    )


def test_the_stack_names_the_ports_it_was_started_on(state: Path) -> None:
    """Without the offset: which component, both ports, the offset to set; with it: fine."""
    moved = Stack(config(state, 0)).moved()
    assert moved is not None
    assert f"toxiproxy on {TOXIPROXY} (this command: {Ports().toxiproxy})" in moved
    assert f"RESILIENCE_PORT_OFFSET={OFFSET}" in moved and str(state / "stack.json") in moved
    assert Stack(config(state, OFFSET)).moved() is None


def test_up_refuses_before_starting_anything(state: Path, nothing_runs: list[Any]) -> None:
    """The run's `up` kept the record's Toxiproxy and then queried 8474: now exit 3 first."""
    with pytest.raises(StackError) as info:
        Stack(config(state, 0)).up(components=["toxiproxy"])
    assert f"RESILIENCE_PORT_OFFSET={OFFSET}" in str(info.value)
    assert info.value.exit_code == 3
    assert nothing_runs == []


def dry_run(env: dict[str, str], path: Path) -> dict[str, Any]:
    args = ["run", str(path), "--dry-run", "--json"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_the_dry_run_agrees_with_the_run(
    state: Path, tmp_path: Path, nothing_runs: list[Any]
) -> None:
    """The dry run said "toxiproxy running, keep, port 10574" and then "does not answer"
    from 8474; now it shows the component running elsewhere and the run's refusal, asks
    nothing of port 8474, and names the stack it would use."""
    path = tmp_path / "own.yaml"
    path.write_text(OWN)
    env = {
        "RESILIENCE_STATE_DIR": str(state),
        "RESILIENCE_HOME": str(tmp_path / "home"),
        "RESILIENCE_PORT_OFFSET": "",
    }
    doc = dry_run(env, path)
    (toxiproxy,) = [c for c in doc["stack"]["components"] if c["name"] == "toxiproxy"]
    assert toxiproxy["state"] == "running elsewhere" and toxiproxy["port"] == TOXIPROXY
    assert doc["ready"] is False
    assert any(f"RESILIENCE_PORT_OFFSET={OFFSET}" in p for p in doc["problems"])
    assert not any("does not answer" in p for p in doc["problems"])
    assert str(state) in doc["stack"]["uses"] and ":8474" in doc["stack"]["uses"]
    assert nothing_runs == []
    env["RESILIENCE_PORT_OFFSET"] = str(OFFSET)
    doc = dry_run(env, path)
    (toxiproxy,) = [c for c in doc["stack"]["components"] if c["name"] == "toxiproxy"]
    assert toxiproxy["state"] == "running"
    assert not any("RESILIENCE_PORT_OFFSET=" in p for p in doc["problems"])
    assert f":{TOXIPROXY}" in doc["stack"]["uses"]
