"""The rig's own faults on the real stack: a dead target is not a cascade, lost evidence is
said aloud (console, summary.md, checks not evaluated with the time)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration._runs import RESILIENCE, cli_env, read_journal, wait_for
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration


def _start(handle: StackHandle, out: Path, *extra: str) -> subprocess.Popen[str]:
    command = [RESILIENCE, "run", "db-hang", "--profile", "smoke", "--out", str(out)]
    command += ["--shop-mode", "hardened", *extra]
    return subprocess.Popen(
        command,
        env=cli_env(handle),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _fault_applied(out: Path) -> bool:
    journal = read_journal(out)
    return bool(journal and journal["faults"] and journal["faults"][0]["applied_at"] is not None)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, output


def _kill(handle: StackHandle, name: str) -> None:
    record = handle.stack.records()[name]
    os.kill(record.pid, signal.SIGKILL)


def test_gateway_killed_mid_fault_is_an_outage_not_a_cascade(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """The gateway SIGKILLed during the fault: no cascading_failure; a target_unreachable
    finding with its seconds; the console and summary.md say "unreachable from ... to the end"."""
    out = tmp_path / "run"
    process = _start(hardened_shop, out)
    try:
        wait_for(lambda: _fault_applied(out), timeout=90)
        time.sleep(1.0)  # a second into the fault, as the trial did
        _kill(hardened_shop, "gateway")
        code, output = _finish(process)
    finally:
        hardened_shop.stack.up(shop_mode="hardened")
    journal = read_journal(out)
    assert journal is not None
    kinds = {f["kind"]: f for f in journal["findings"] if f["status"] == "found"}
    assert "cascading_failure" not in kinds, kinds.get("cascading_failure")
    outage = kinds["target_unreachable"]
    assert outage["evidence"]["seconds"]
    assert "unreachable from" in outage["summary"] and "to the end" in outage["summary"]
    assert code == 1
    assert "the target unreachable from" in output
    assert "gateway (pid" in output
    summary = (out / "summary.md").read_text()
    assert "the target unreachable from" in summary


def test_prometheus_killed_mid_run_is_said_aloud(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """Prometheus SIGKILLed in the baseline: a console line when it happens, a summary.md
    line, and the checks not evaluated with the time it was lost."""
    out = tmp_path / "run"
    process = _start(hardened_shop, out, "--set", "faults.0.at=8s")
    try:
        wait_for(lambda: (read_journal(out) or {}).get("status") == "running", timeout=90)
        time.sleep(3.0)  # into the baseline
        _kill(hardened_shop, "prometheus")
        code, output = _finish(process)
    finally:
        hardened_shop.stack.up(shop_mode="hardened")
    assert "Prometheus stopped answering at" in output
    journal = read_journal(out)
    assert journal is not None
    checks = journal["checks"]
    assert checks and all(c["status"] == "not_evaluated" for c in checks)
    assert all("Prometheus unreachable from" in (c["reason"] or "") for c in checks)
    summary = (out / "summary.md").read_text()
    assert "Prometheus unreachable from" in summary
    assert code in (0, 1, 3)
    rig = [json.loads(line) for line in (out / "rig.jsonl").read_text().splitlines()]
    assert any(s["sources"].get("prometheus") == "down" for s in rig)
