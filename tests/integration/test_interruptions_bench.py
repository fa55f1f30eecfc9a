"""The interruption benchmark in small: one SIGINT and one SIGKILL trial on its own stack.

benchmarks/interruptions.py runs 56 trials of eight kinds (benchmarks/RESULTS.md,
"Interruptions"); this keeps the script itself working (its stack, its checks, its records)
in about a minute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.conftest import port_offset

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OFFSET_STEP = 20
"""The benchmark's stack sits this far above the session's: no two of the stack's default
ports are 20, 30 (the private stack's +50) or 20 plus or minus a multiple of 100 apart (other
stacks on this machine sit at whole hundreds)."""


def test_sigint_and_sigkill_trials_leave_nothing_behind(tmp_path: Path) -> None:
    """A SIGINT trial ends aborted with exit 130 and its reports; a SIGKILL trial is swept
    to aborted by `stack status`; neither leaves a fault, an invalid journal or an orphan."""
    records = tmp_path / "records.jsonl"
    # PostgreSQL's user must reach the state directory: not under pytest's 0700 tmp_path.
    state = Path(tempfile.mkdtemp(prefix="resilience-bench-interrupt-"))
    state.chmod(0o755)
    try:
        done = _bench(state, records)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    _check(done, records)


def _bench(state: Path, records: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "interruptions.py"),
         "--kinds", "sigint,sigkill", "--trials", "2", "--no-results",
         "--offset", str(port_offset() + OFFSET_STEP), "--state", str(state),
         "--records", str(records), "--hard-timeout", "60"],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip


def _check(done: subprocess.CompletedProcess[str], records: Path) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    trials = [json.loads(line) for line in records.read_text().splitlines()]
    trials = [t for t in trials if t.get("record") != "chunk"]
    assert [t["kind"] for t in trials] == ["sigint", "sigkill"]
    for trial in trials:
        assert trial["at"] is not None, trial
        assert trial["faults_left"] == [], trial
        assert trial["journal_problem"] is None, trial
        assert trial["reports_missing"] == [], trial
        assert trial["orphans"] == [], trial
        assert trial["exit_problem"] is None, trial
        assert trial["status"] == "aborted", trial
    assert [t["exit_code"] for t in trials] == [130, -9]
