"""Interrupting a run heals its faults: SIGINT/SIGTERM within a second, SIGKILL at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration._runs import (
    RESILIENCE,
    cli,
    cli_env,
    leftovers,
    read_journal,
    wait_for,
)
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

HEAL_DEADLINE = 1.0


def _start_run(handle: StackHandle, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [RESILIENCE, "run", "db-outage", "--profile", "smoke", "--out", str(out)]
    command += ["--set", "faults.0.at=3s", *extra]
    with (out.parent / f"{out.name}.out").open("wb") as output:  # the child keeps its copy
        return subprocess.Popen(
            command,
            env=cli_env(handle),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _fault_applied(out: Path) -> bool:
    journal = read_journal(out)
    return bool(journal and journal["faults"] and journal["faults"][0]["applied_at"] is not None)


def _load_workers_of(parent: int) -> list[int]:
    listing = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(parent)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [
        int(line.split()[0]) for line in listing.splitlines() if "resilience.load.worker" in line
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_the_fault_heals_within_a_second(
    hardened_shop: StackHandle, tmp_path: Path, sig: signal.Signals
) -> None:
    """A signal in the fault phase: proxy re-enabled within 1 s, journal aborted, exit 130."""
    out = tmp_path / "run"
    process = _start_run(hardened_shop, out, "--shop-mode", "hardened")
    try:
        wait_for(lambda: _fault_applied(out), timeout=90)
        assert leftovers(hardened_shop) == ["postgres disabled"]
        process.send_signal(sig)
        sent = time.monotonic()
        wait_for(lambda: not leftovers(hardened_shop), timeout=5, every=0.01)
        healed_after = time.monotonic() - sent
        assert healed_after < HEAL_DEADLINE, f"healed {healed_after:.3f}s after {sig.name}"
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    journal = read_journal(out)
    assert journal is not None
    assert journal["status"] == "aborted"
    assert journal["exit_code"] == 130
    assert journal["faults"][0]["healed_at"] is not None
    assert any(e["kind"] == "interrupted" for e in journal["events"])


def test_sigkill_leaves_leftovers_that_the_next_start_sweeps(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """After SIGKILL the fault stays; `stack status` sweeps it, says so, and marks the run aborted."""
    out = tmp_path / "run"
    process = _start_run(hardened_shop, out, "--shop-mode", "hardened")
    try:
        wait_for(lambda: _fault_applied(out), timeout=90)
        workers = _load_workers_of(process.pid)
        assert workers
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert leftovers(hardened_shop) == ["postgres disabled"]
    killed = time.monotonic()
    journal = read_journal(out)
    assert journal is not None and journal["status"] == "running"
    # The load workers die with their parent (the kernel's parent-death signal).
    wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=5, every=0.01)
    gone_after = time.monotonic() - killed
    assert gone_after < 0.5, f"load workers outlived their parent by {gone_after:.2f} s"

    status = cli(hardened_shop, "stack", "status", timeout=60)
    assert "re-enabled proxies: postgres" in status.stderr
    assert "aborted" in status.stderr
    assert leftovers(hardened_shop) == []
    journal = read_journal(out)
    assert journal is not None and journal["status"] == "aborted"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_double_sigint_still_finishes_the_journal_and_reports(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """Two SIGINTs 0.1 s apart during the fault: healed, journal aborted, reports, exit 130."""
    out = tmp_path / "run"
    process = _start_run(hardened_shop, out, "--shop-mode", "hardened")
    try:
        wait_for(lambda: _fault_applied(out), timeout=90)
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)  # the second Ctrl-C of an impatient user, 0.1 s after the first
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert leftovers(hardened_shop) == []
    journal = read_journal(out)
    assert journal is not None
    assert (journal["status"], journal["exit_code"]) == ("aborted", 130)
    for name in ("report.html", "summary.md", "junit.xml"):
        assert (out / name).is_file(), f"{name} missing"


def test_sigterm_in_the_first_second_leaves_a_journal(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """SIGTERM 0.5 s after the command starts: exit 130 and an aborted journal, not 143."""
    out = tmp_path / "run"
    process = _start_run(hardened_shop, out, "--shop-mode", "hardened")
    try:
        time.sleep(0.5)  # the point of the test: a signal at a fixed early moment
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    journal = read_journal(out)
    assert journal is not None
    assert (journal["status"], journal["exit_code"]) == ("aborted", 130)
    assert "SIGTERM" in journal["reason"]
