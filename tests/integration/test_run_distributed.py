"""A distributed run against the shop with a fault: `resilience run --expect-workers 2` as the
master and two `resilience worker` processes, separate processes on loopback.

The merged per-second counts are the sum of what the workers recorded (``--record``), the
verdict is the local run's, and a worker killed mid-run is reported as missing load, not
as the target's failure.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration._runs import RESILIENCE, RunCache, cli_env, leftovers, read_journal
from tests.integration.conftest import StackHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HANG_FRAGILE = {"cascading_failure", "timeout", "pool_exhaustion"}
"""What the ground-truth matrix requires of fragile db-hang (smoke), whoever sends the load."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def per_second(records: list[Path]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for record in records:
        for line in record.read_text().splitlines():
            event = json.loads(line)
            if event["type"] == "second":
                for endpoint in event["endpoints"].values():
                    counts[event["second"]] += sum(endpoint["counts"].values())
    return counts


def merged(run_dir: Path) -> Counter[int]:
    counts: Counter[int] = Counter()
    for line in (run_dir / "load.jsonl").read_text().splitlines():
        body = json.loads(line)
        counts[body["second"]] += body["n"]
    return counts


def found(journal: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in journal["findings"] if f["status"] == "found"}


class Distributed:
    """`resilience run ... --expect-workers 2` and its two workers, all through the CLI."""

    def __init__(self, stack: StackHandle, tmp: Path) -> None:
        self.stack = stack
        self.tmp = tmp
        self.port = free_port()
        self.out = tmp / "run"
        self.records = [tmp / "worker-0.jsonl", tmp / "worker-1.jsonl"]
        self.workers: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str, kill_after: float | None = None) -> subprocess.CompletedProcess[str]:
        command = [
            RESILIENCE, "run", *args, "--expect-workers", "2",
            "--master-bind", f"127.0.0.1:{self.port}", "--out", str(self.out),
        ]  # fmt: skip
        master = subprocess.Popen(
            command, env=cli_env(self.stack), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i, record in enumerate(self.records):
            argv = [
                RESILIENCE, "worker", "--master", f"127.0.0.1:{self.port}", "--record", str(record),
            ]  # fmt: skip
            with (self.tmp / f"worker-{i}.log").open("ab") as log:
                worker = subprocess.Popen(
                    argv, env=cli_env(self.stack), stdout=subprocess.DEVNULL, stderr=log
                )
            self.workers.append(worker)
        if kill_after is not None:
            self._kill_one_after(kill_after)
        stdout, stderr = master.communicate(timeout=240)
        codes = [w.wait(timeout=30) for w in self.workers]
        self.codes = codes
        return subprocess.CompletedProcess(command, master.returncode, stdout, stderr)

    def _kill_one_after(self, seconds: float) -> None:
        """SIGKILL the first worker ``seconds`` into the load (t0 from the journal)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            journal = read_journal(self.out)
            if journal and journal.get("status") == "running":
                wait = journal["t0"] + seconds - time.time()
                time.sleep(max(0.0, wait))
                self.workers[0].send_signal(signal.SIGKILL)
                return
            time.sleep(0.05)
        raise AssertionError("the run never started")


def test_master_and_two_workers_give_the_local_verdict(
    stack: StackHandle, runs: RunCache, tmp_path: Path
) -> None:
    """Fragile db-hang (smoke) spread over two `resilience worker` processes: every second
    of the run is the sum of what the workers recorded, and the verdict and the findings the
    matrix requires are the local run's."""
    local = runs.run("db-hang", mode="fragile")
    assert local.journal is not None
    run = Distributed(stack, tmp_path)
    result = run.run("db-hang", "--profile", "smoke", "--shop-mode", "fragile")
    journal = read_journal(run.out)
    assert journal is not None, result.stderr
    assert run.codes == [0, 0], (run.codes, result.stderr[-2000:])
    assert merged(run.out) == per_second(run.records)
    assert sum(merged(run.out).values()) > 200
    assert (result.returncode, journal["status"]) == (local.exit_code, local.status), result.stderr[
        -3000:
    ]
    assert found(journal) >= HANG_FRAGILE, found(journal)
    assigned = [e["detail"] for e in journal["events"] if e["kind"] == "load_worker_assigned"]
    assert sorted(e["worker"] for e in assigned) == [0, 1]
    assert journal["distributed"]["address"] == f"127.0.0.1:{run.port}"
    assert "load_worker_lost" not in {e["kind"] for e in journal["events"]}
    assert leftovers(stack) == []


def test_a_worker_killed_mid_run_is_reported_as_missing_load(
    stack: StackHandle, tmp_path: Path
) -> None:
    """Hardened db-hang with one of two workers SIGKILLed 5 s in: the run still passes (the
    missing load is not the target's failure), the journal, load.json, the summary and the
    terminal say which worker was lost, when, and about how many requests are missing."""
    run = Distributed(stack, tmp_path)
    result = run.run("db-hang", "--profile", "smoke", "--shop-mode", "hardened", kill_after=5.5)
    journal = read_journal(run.out)
    assert journal is not None, result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [event] = [e for e in journal["events"] if e["kind"] == "load_worker_lost"]
    assert 4.0 < event["t"] < 7.0, event
    lost = event["detail"]
    # Open model (20 req/s, half each): the schedule's count from the second after the
    # worker's last one to the end of the 26 s run, exact.
    assert lost["estimated"] is False
    assert 10 * (25 - event["t"]) <= lost["missing_requests"] <= 10 * (28 - event["t"])
    meta = json.loads((run.out / "load.json").read_text())
    assert meta["missing_requests"] == lost["missing_requests"]
    assert [w["worker"] for w in meta["lost_workers"]] == [lost["worker"]]
    assert merged(run.out) == per_second(run.records)
    summary = (run.out / "summary.md").read_text()
    assert f"Load worker {lost['worker']} was lost" in summary
    assert "missing load, not the target's failure" in result.stdout
    assert run.codes[0] == -signal.SIGKILL and run.codes[1] == 0
    assert leftovers(stack) == []
