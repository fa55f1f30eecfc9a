"""The run's signal handling (runner/signals.py) and the load workers' parent-death signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from resilience.errors import Interrupted
from resilience.load.pool import PARENT_ENV
from resilience.runner.signals import InterruptGate


def test_a_signal_before_arming_is_remembered_and_raised_when_armed() -> None:
    """SIGTERM before the run directory exists raises nothing; arming then raises it."""
    gate = InterruptGate().install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert gate.stop.is_set()
        assert gate.signal_name == "SIGTERM"
        with pytest.raises(Interrupted) as caught:
            gate.arm()
        assert caught.value.signal_name == "SIGTERM"
    finally:
        gate.restore()


def test_a_second_signal_only_hurries() -> None:
    """Armed: the first SIGINT raises Interrupted, the second sets hurry and raises nothing;
    restore gives the handler back."""
    before = signal.getsignal(signal.SIGINT)
    gate = InterruptGate().install()
    try:
        gate.arm()
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
        assert not gate.hurry.is_set()
        os.kill(os.getpid(), signal.SIGINT)  # must not raise
        assert gate.hurry.is_set()
        assert gate.received == ["SIGINT", "SIGINT"]
    finally:
        gate.restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_disarmed_gate_never_raises() -> None:
    """While the run finishes (disarmed), even a first signal only hurries."""
    gate = InterruptGate().install()
    try:
        gate.arm()
        gate.disarm()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert gate.hurry.is_set()
    finally:
        gate.restore()


def test_a_later_gate_takes_over_what_an_early_one_caught() -> None:
    """The console script's early gate hands its signals to the run's gate; restoring the
    run's gate gives back the handlers from before the early one."""
    before = signal.getsignal(signal.SIGTERM)
    early = InterruptGate().install()
    gate = InterruptGate()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        gate.install()
        assert gate.signal_name == "SIGTERM"
        assert gate.stop.is_set() and not gate.hurry.is_set()
        with pytest.raises(Interrupted):
            gate.arm()
    finally:
        gate.restore()
        early.restore()  # a no-op: the run's gate took its handlers over
    assert signal.getsignal(signal.SIGTERM) is before


_SIGNAL_WHILE_IMPORTING = textwrap.dedent(
    """
    import os, signal, sys
    from resilience.cli import main

    class SignalOnImport:
        def find_spec(self, name, path=None, target=None):
            if name == "resilience.cli._app":
                os.kill(os.getpid(), signal.SIGTERM)
            return None

    sys.meta_path.insert(0, SignalOnImport())
    sys.argv = ["resilience", "run", "db-outage", "--profile", "smoke", "--no-stack",
                "--out", sys.argv[1]]
    main()
    """
)


def test_a_signal_while_the_commands_load_ends_the_run_with_a_journal(tmp_path: Path) -> None:
    """SIGTERM while the console script imports the app (before `run` starts): exit 130
    and an aborted journal, not the default handler's exit without a run directory."""
    out = tmp_path / "run"
    env = {
        **os.environ,
        "RESILIENCE_STATE_DIR": str(tmp_path / "state"),
        "RESILIENCE_PORT_OFFSET": "3900",
    }
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_WHILE_IMPORTING, str(out)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 130, done.stderr[-2000:]
    journal = json.loads((out / "journal.json").read_text())
    assert (journal["status"], journal["exit_code"]) == ("aborted", 130)
    assert journal["reason"] == "interrupted by SIGTERM"


_PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    env = dict(os.environ, {env}=str(os.getpid()))
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from resilience.load.worker import die_with_parent; "
         "print(die_with_parent(), flush=True); time.sleep(60)"],
        env=env, stdout=subprocess.PIPE, start_new_session=True)
    print(child.pid, child.stdout.readline().decode().strip(), flush=True)
    time.sleep(60)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_a_worker_dies_with_its_sigkilled_parent(tmp_path: Path) -> None:
    """A process that armed die_with_parent is gone within 0.5 s of its parent's SIGKILL."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(env=PARENT_ENV)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    with parent.stdout:
        pid_text, armed = parent.stdout.readline().split()
        child = int(pid_text)
        assert armed == "True"
        parent.kill()
        parent.wait(timeout=5)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.01)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
